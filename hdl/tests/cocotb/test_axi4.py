"""PmpToAxi4 (the AXI4 master adapter) against cocotbext-axi's AxiRam.

The memory-port side is driven from a coroutine with seeded random traffic
(runs of sequential reads or writes, many across 4 KiB boundaries, random
strobes, random idle gaps); AxiRam answers on the AXI side with random
pauses on all five channels. AxiRam asserts on a burst that crosses 4 KiB
and on a wrong WLAST; page 5 of its memory fails every access (SLVERR).
A Python model of the memory port (a memory answering every command in
order) predicts every response; at the end AxiRam's memory must equal the
model's.
"""

import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge
from axi_pauses import pause_channels
from cocotbext.axi import AxiBus, AxiRam

PAGES = 16
MEM_SIZE = PAGES * 4096
ERR_PAGE = 5


def pattern(addr):
    return ((addr * 0x9E3779B97F4A7C15) ^ 0x0123456789ABCDEF) & (2**64 - 1)



class PortModel:
    """The memory port's meaning: in-order memory, one response per command."""

    def __init__(self):
        self.mem = {}

    def read(self, a):
        return self.mem.get(a, pattern(a))

    def write(self, a, data, strb):
        old = self.read(a).to_bytes(8, "little")
        new = data.to_bytes(8, "little")
        self.mem[a] = int.from_bytes(
            bytes(new[i] if strb >> i & 1 else old[i] for i in range(8)), "little"
        )


def random_cmds(rng, n):
    cmds = []
    while len(cmds) < n:
        write = rng.random() < 0.5
        run = rng.randint(1, 40)
        if rng.random() < 0.3:
            start = rng.randint(1, PAGES - 1) * 4096 - 8 * rng.randint(1, 8)
        else:
            start = rng.randrange(0, MEM_SIZE // 8) * 8
        for i in range(run):
            addr = (start + 8 * i) % MEM_SIZE
            strb = 0xFF if rng.random() < 0.8 else rng.randrange(256)
            gap = 0 if rng.random() < 0.85 else rng.randint(1, 3)
            cmds.append((write, addr, rng.getrandbits(64), strb, gap))
    return cmds[:n]


async def setup(dut, seed, p_pause):
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    ram = AxiRam(AxiBus.from_prefix(dut, "m_axi"), dut.clk, dut.rst, size=MEM_SIZE)
    for a in range(0, MEM_SIZE, 8):
        ram.write(a, pattern(a).to_bytes(8, "little"))
    pause_channels(ram, random.Random(seed * 1000 + 7), p_pause)

    # Page ERR_PAGE fails: AxiSlave turns the exception into SLVERR.
    def failing(orig):
        async def access(address, *args):
            if address // 4096 == ERR_PAGE:
                raise IOError("error page")
            return await orig(address, *args)

        return access

    ram.write_if._write = failing(ram.write_if._write)
    ram.read_if._read = failing(ram.read_if._read)

    dut.cmd_valid.value = 0
    dut.cmd_write.value = 0
    dut.cmd_addr.value = 0
    dut.cmd_wdata.value = 0
    dut.cmd_wstrb.value = 0
    dut.err_clear.value = 0
    dut.rst.value = 1
    for _ in range(4):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    return ram


async def run_traffic(dut, ram, cmds):
    model = PortModel()
    want = []
    got = []
    done = {"n": 0}

    async def monitor():
        while True:
            await RisingEdge(dut.clk)
            if int(dut.rsp_valid.value):
                got.append(
                    (int(dut.rsp_write.value), int(dut.rsp_data.value), int(dut.rsp_err.value))
                )

    bursts = {"aw": [], "ar": []}

    async def burst_monitor():
        while True:
            await RisingEdge(dut.clk)
            for ch in ("aw", "ar"):
                if int(getattr(dut, f"m_axi_{ch}valid").value) and int(
                    getattr(dut, f"m_axi_{ch}ready").value
                ):
                    bursts[ch].append(
                        (
                            int(getattr(dut, f"m_axi_{ch}addr").value),
                            int(getattr(dut, f"m_axi_{ch}len").value) + 1,
                        )
                    )

    mon = cocotb.start_soon(monitor())
    bmon = cocotb.start_soon(burst_monitor())
    for write, addr, data, strb, gap in cmds:
        dut.cmd_valid.value = 0
        for _ in range(gap):
            await RisingEdge(dut.clk)
        dut.cmd_valid.value = 1
        dut.cmd_write.value = int(write)
        dut.cmd_addr.value = addr
        dut.cmd_wdata.value = data
        dut.cmd_wstrb.value = strb
        while True:
            await RisingEdge(dut.clk)
            if int(dut.cmd_ready.value):
                break
        err = addr // 4096 == ERR_PAGE
        if write:
            if not err:
                model.write(addr, data, strb)
            want.append((1, 0, int(err)))
        else:
            want.append((0, 0 if err else model.read(addr), int(err)))
    dut.cmd_valid.value = 0
    for _ in range(20000):
        if len(got) >= len(want):
            break
        await RisingEdge(dut.clk)
    for _ in range(50):
        await RisingEdge(dut.clk)
    mon.cancel()
    bmon.cancel()
    assert len(got) == len(want), f"{len(got)} responses for {len(want)} commands"
    for i, (g, w) in enumerate(zip(got, want)):
        # Read data of a failed beat is the slave's (zeros here).
        assert g == w, f"response {i}: got {g}, want {w} (command {cmds[i][:2]})"
    for a in range(0, MEM_SIZE, 8):
        have = int.from_bytes(ram.read(a, 8), "little")
        assert have == model.read(a), f"memory at {a:#x}: {have:#x}, want {model.read(a):#x}"
    return bursts


@cocotb.test()
async def random_traffic_no_pauses(dut):
    """Seeded random traffic, the AXI side never pausing."""
    ram = await setup(dut, 1, 0.0)
    await run_traffic(dut, ram, random_cmds(random.Random(101), 1500))


@cocotb.test()
async def random_traffic_random_pauses(dut):
    """Seeded random traffic, AxiRam pausing each channel 40% of cycles."""
    ram = await setup(dut, 2, 0.4)
    await run_traffic(dut, ram, random_cmds(random.Random(202), 3000))


@cocotb.test()
async def corners(dut):
    """4 KiB boundary, a max-length burst, write-then-read of one address,
    SLVERR on both channels and the sticky error flag."""
    ram = await setup(dut, 3, 0.3)
    cmds = []
    seq = lambda w, a, n: [(w, a + 8 * i, 0xA5A5_0000_0000_0000 | (a + 8 * i), 0xFF, 0) for i in range(n)]
    cmds += seq(True, 0x0FE0, 40)  # across the boundary at 0x1000
    cmds += seq(False, 0x0FE0, 40)
    cmds += seq(False, 0x2000, 40)  # 16 + 16 + 8 beats
    for i in range(16):  # write then read of the same address, back to back
        a = 0x3000 + 8 * (i % 4)
        cmds.append((True, a, 0x1111 * (i + 1), 0xFF, 0))
        cmds.append((False, a, 0, 0, 0))
    cmds += seq(True, ERR_PAGE * 4096, 3)
    cmds += seq(False, ERR_PAGE * 4096 + 64, 2)
    bursts = await run_traffic(dut, ram, cmds)
    split = [(0x0FE0, 4), (0x1000, 16), (0x1080, 16), (0x1100, 4)]
    assert bursts["aw"][:4] == split, bursts["aw"][:4]
    assert bursts["ar"][:7] == split + [(0x2000, 16), (0x2080, 16), (0x2100, 8)], bursts["ar"][:7]
    assert int(dut.err.value) == 1
    assert int(dut.err_resp.value) == 2
    assert int(dut.err_write.value) == 1
    dut.err_clear.value = 1
    await RisingEdge(dut.clk)
    dut.err_clear.value = 0
    await RisingEdge(dut.clk)
    await RisingEdge(dut.clk)
    assert int(dut.err.value) == 0
