"""AxiLiteCsr (the CSR port's AXI4-Lite target) against cocotbext-axi's
AxiLiteMaster, with random pauses on all five channels.

The wrapper (axil_tb) hangs a 16-word register file on the CSR strobes,
read two cycles after the read strobe as the controller's file is; word i
starts as 0xC0DE0000 + i. Checked: writes then reads of every word;
partial strobes answer SLVERR and change nothing; many writes and reads in
flight at once (back to back on the bus, in any channel order).
"""

import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge
from axi_pauses import pause_channels
from cocotbext.axi import AxiLiteBus, AxiLiteMaster
from cocotbext.axi.constants import AxiResp

WORDS = 16



async def setup(dut, seed, p_pause):
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    master = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
    pause_channels(master, random.Random(seed), p_pause)
    dut.rst.value = 1
    for _ in range(4):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    return master


def word(v):
    return v.to_bytes(4, "little")


@cocotb.test()
async def writes_then_reads(dut):
    """Reset values, then every word written and read back, in random order."""
    master = await setup(dut, 1, 0.3)
    rng = random.Random(11)
    model = [0xC0DE0000 + i for i in range(WORDS)]
    for i in range(WORDS):
        r = await master.read(4 * i, 4)
        assert r.resp == AxiResp.OKAY
        assert int.from_bytes(r.data, "little") == model[i], f"reset value of word {i}"
    for _ in range(200):
        i = rng.randrange(WORDS)
        if rng.random() < 0.5:
            v = rng.getrandbits(32)
            w = await master.write(4 * i, word(v))
            assert w.resp == AxiResp.OKAY
            model[i] = v
        else:
            r = await master.read(4 * i, 4)
            assert r.resp == AxiResp.OKAY
            got = int.from_bytes(r.data, "little")
            assert got == model[i], f"word {i}: {got:#x}, want {model[i]:#x}"


@cocotb.test()
async def partial_strobes_refused(dut):
    """A write with fewer than four strobes answers SLVERR and writes nothing."""
    master = await setup(dut, 2, 0.3)
    await master.write(0x10, word(0x11223344))
    for offset, data in [(0, b"\xAA"), (1, b"\xBB"), (2, b"\xCC\xDD"), (1, b"\x01\x02\x03")]:
        w = await master.write(0x10 + offset, data)
        assert w.resp == AxiResp.SLVERR, f"offset {offset}, {len(data)} bytes: {w.resp}"
        r = await master.read(0x10, 4)
        assert int.from_bytes(r.data, "little") == 0x11223344


async def back_to_back(dut, p_pause, seed):
    """Many transactions in flight at once: all writes queued together, then
    all reads; then writes and reads of different words interleaved."""
    if True:
        master = await setup(dut, seed, p_pause)
        rng = random.Random(seed)
        vals = [rng.getrandbits(32) for _ in range(WORDS)]
        events = [master.init_write(4 * i, word(v)) for i, v in enumerate(vals)]
        for e in events:
            await e.wait()
            assert e.data.resp == AxiResp.OKAY
        events = [master.init_read(4 * i, 4) for i in range(WORDS)]
        for i, e in enumerate(events):
            await e.wait()
            assert int.from_bytes(e.data.data, "little") == vals[i], f"word {i}"
        # Writes to the upper half while reading the lower half.
        new = [rng.getrandbits(32) for _ in range(WORDS // 2)]
        wr = [master.init_write(4 * (WORDS // 2 + i), word(v)) for i, v in enumerate(new)]
        rd = [master.init_read(4 * i, 4) for i in range(WORDS // 2)]
        for i, e in enumerate(rd):
            await e.wait()
            assert int.from_bytes(e.data.data, "little") == vals[i]
        for e in wr:
            await e.wait()
            assert e.data.resp == AxiResp.OKAY
        for i, v in enumerate(new):
            r = await master.read(4 * (WORDS // 2 + i), 4)
            assert int.from_bytes(r.data, "little") == v


@cocotb.test()
async def back_to_back_no_pauses(dut):
    """Back to back, the master never pausing."""
    await back_to_back(dut, 0.0, 3)


@cocotb.test()
async def back_to_back_random_pauses(dut):
    """Back to back, the master pausing each channel half the time."""
    await back_to_back(dut, 0.5, 4)
