"""Random back-pressure for cocotbext-axi's models, shared by the tests."""

import random


def pauses(rng, p_pause):
    """A pause generator: each cycle paused with probability `p_pause`."""
    while True:
        yield rng.random() < p_pause


def pause_channels(model, prng, p_pause):
    """Pause all five channels of an AxiMaster/AxiRam/AxiLiteMaster at
    random, each from its own generator seeded from `prng`."""
    for ch in (
        model.write_if.aw_channel,
        model.write_if.w_channel,
        model.write_if.b_channel,
        model.read_if.ar_channel,
        model.read_if.r_channel,
    ):
        ch.set_pause_generator(pauses(random.Random(prng.random()), p_pause))
