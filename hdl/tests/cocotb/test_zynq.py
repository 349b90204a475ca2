"""The Zynq top-level (ZynqTop) between cocotbext-axi's models of the PS.

GP0 side: an AxiMaster (AXI3 lengths: at most 16 beats) issues the CPU's
register accesses with IDs; a monitor checks that every B and R carries
the ID of its transaction, in order (the bridge serves one write and one
read at a time). Bursts are refused: every beat answers SLVERR and no
register changes.

HP0 side: an AxiRam is the PS DDR, pausing every channel at random; the
wrapper checks every burst against AXI3 (at most 16 beats), 8-byte beats
and the 4 KiB rule (`hp_bad`, sticky) and counts bursts and beats, so that
no Python samples the channels every cycle: the whole controller runs at a
few hundred cycles a second under Icarus.

The checkpoint comes from hdl/tests/cocotb.rs (HITLESS_COCOTB_PLAN): the
register writes that set up a protection window and the rings, the
descriptors and the image to load into host memory, the doorbell, and what
the reference model predicts: the completions and the read-back in host
memory, register values, interrupt messages.
"""

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge, with_timeout
from cocotb.utils import get_sim_time
from axi_pauses import pause_channels
from cocotbext.axi import AxiBus, AxiMaster, AxiRam
from cocotbext.axi.constants import AxiResp

MEM_SIZE = 1 << 17
GP_IDS = 1 << 12
# Cycles the boot scan and the checkpoint may take (a passing run needs
# about 2,600 for everything: the bounds keep a failing one short).
CLOCK_NS = 10
BOOT_CYCLES = 5000
RUN_CYCLES = 20000
# Longest wait for one GP access (a lost or misrouted response must fail
# the test, not hang it).
ACCESS_NS = 20000


async def bounded(aw):
    return await with_timeout(aw, ACCESS_NS, "ns")



def plan():
    with open(os.environ["HITLESS_COCOTB_PLAN"]) as f:
        return json.load(f)


class Ids:
    """Records the IDs of GP transactions as they are issued and answered."""

    def __init__(self, dut):
        self.aw, self.b, self.ar, self.r = [], [], [], []
        self.dut = dut

    async def run(self):
        d = self.dut
        while True:
            await RisingEdge(d.clk)
            if int(d.s_axi_awvalid.value) and int(d.s_axi_awready.value):
                self.aw.append(int(d.s_axi_awid.value))
            if int(d.s_axi_bvalid.value) and int(d.s_axi_bready.value):
                self.b.append(int(d.s_axi_bid.value))
            if int(d.s_axi_arvalid.value) and int(d.s_axi_arready.value):
                self.ar.append(int(d.s_axi_arid.value))
            if int(d.s_axi_rvalid.value) and int(d.s_axi_rready.value) and int(d.s_axi_rlast.value):
                self.r.append(int(d.s_axi_rid.value))

    def check(self):
        assert self.b == self.aw[: len(self.b)], f"B IDs {self.b} for AW IDs {self.aw}"
        assert self.r == self.ar[: len(self.r)], f"R IDs {self.r} for AR IDs {self.ar}"


async def setup(dut, seed):
    cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
    gp = AxiMaster(AxiBus.from_prefix(dut, "s_axi"), dut.clk, dut.rst, max_burst_len=16)
    ram = AxiRam(AxiBus.from_prefix(dut, "m_axi"), dut.clk, dut.rst, size=MEM_SIZE)
    prng = random.Random(seed)
    pause_channels(ram, prng, 0.4)
    pause_channels(gp, prng, 0.4)
    ids = Ids(dut)
    dut.rst.value = 1
    for _ in range(8):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    return gp, ram, ids


class Regs:
    """32-bit register access through the GP master, each with a new ID."""

    def __init__(self, dut, gp, rng):
        self.dut = dut
        self.gp = gp
        self.rng = rng

    async def read(self, off):
        r = await bounded(self.gp.read(off, 4, arid=self.rng.randrange(GP_IDS)))
        assert r.resp == AxiResp.OKAY, f"read {off:#x}: {r.resp}"
        return int.from_bytes(r.data, "little")

    async def write(self, off, value):
        w = await bounded(
            self.gp.write(off, value.to_bytes(4, "little"), awid=self.rng.randrange(GP_IDS))
        )
        assert w.resp == AxiResp.OKAY, f"write {off:#x}: {w.resp}"

    async def poll(self, off, done, cycles, what):
        deadline = get_sim_time("ns") + cycles * CLOCK_NS
        while True:
            v = await self.read(off)
            if done(v):
                return v
            # A broken HP burst stalls the DMA: say so at once.
            assert int(self.dut.hp_bad.value) == 0, "an HP burst broke AXI3's rules"
            if get_sim_time("ns") > deadline:
                raise AssertionError(f"{what}: register {off:#x} still {v:#x} after {cycles} cycles")


@cocotb.test()
async def checkpoint_through_gp_and_hp(dut):
    """IDs echoed, bursts refused, then WRITE + FLIP + READ through the
    descriptor ring in the AxiRam, checked against the reference model."""
    p = plan()
    gp, ram, ids = await setup(dut, 5)
    ids_task = cocotb.start_soon(ids.run())
    rng = random.Random(55)
    regs = Regs(dut, gp, rng)
    await regs.poll(p["status"], lambda v: v & p["boot_done"], BOOT_CYCLES, "boot")
    assert await regs.read(p["id_reg"]) == p["id_value"]

    # Many accesses in flight at once, each with its own ID.
    vals = [rng.getrandbits(32) for _ in range(12)]
    wr = [
        gp.init_write(p["scratch"], v.to_bytes(4, "little"), awid=rng.randrange(GP_IDS))
        for v in vals
    ]
    rd = [gp.init_read(p["id_reg"], 4, arid=rng.randrange(GP_IDS)) for _ in range(12)]
    for e in wr:
        await bounded(e.wait())
        assert e.data.resp == AxiResp.OKAY
    for e in rd:
        await bounded(e.wait())
        assert e.data.resp == AxiResp.OKAY
        assert int.from_bytes(e.data.data, "little") == p["id_value"]
    assert await regs.read(p["scratch"]) == vals[-1]

    # Bursts (two and sixteen beats) are refused and change nothing.
    for n in (8, 64):
        w = await bounded(gp.write(p["scratch"], bytes(range(n)), awid=rng.randrange(GP_IDS)))
        assert w.resp == AxiResp.SLVERR, f"{n}-byte write burst: {w.resp}"
        r = await bounded(gp.read(p["id_reg"], n, arid=rng.randrange(GP_IDS)))
        assert r.resp == AxiResp.SLVERR, f"{n}-byte read burst: {r.resp}"
    assert await regs.read(p["scratch"]) == vals[-1]
    ids.check()
    assert len(ids.b) >= 14 and len(ids.r) >= 15, "the ID monitor saw the traffic"
    # The checkpoint's accesses are one at a time; AxiMaster itself pairs
    # each response with its ID.
    ids_task.cancel()

    # The checkpoint.
    for addr, data in p["host"]:
        ram.write(addr, bytes.fromhex(data))
    for off, v in p["setup"]:
        await regs.write(off, v)
    await regs.write(p["dq_tail"], p["count"])
    await regs.poll(p["cq_head"], lambda v: v == p["count"], RUN_CYCLES, "completions")
    for addr, data in p["expect_host"]:
        want = bytes.fromhex(data)
        got = ram.read(addr, len(want))
        assert got == want, f"host memory at {addr:#x}: {got.hex()} want {data}"
    for off, want in p["expect_regs"]:
        got = await regs.read(off)
        assert got == want, f"register {off:#x}: {got:#x}, want {want:#x}"
    for _ in range(40):
        await RisingEdge(dut.clk)
    edges = int(dut.irq_edges.value)
    assert edges == p["irq_messages"], f"{edges} interrupts, want {p['irq_messages']}"
    assert int(dut.dma_error.value) == 0
    assert int(dut.hp_bad.value) == 0, "an HP burst broke AXI3's 16 beats, the beat size or 4 KiB"
    bursts = int(dut.hp_bursts.value)
    beats = int(dut.hp_beats.value)
    assert beats >= 2 * bursts, f"{beats} beats in {bursts} bursts: not gathered"
    assert int(dut.hp_max_beats.value) == 16, "no full AXI3 burst"
    dut._log.info("HP: %d bursts, %d beats", bursts, beats)
