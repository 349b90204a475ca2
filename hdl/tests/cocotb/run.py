#!/usr/bin/env python3
"""Build a generated Verilog file with Icarus Verilog and run one cocotb test
module against it; exit non-zero if the build fails, the simulator dies, or
any test fails (results.xml is parsed, not trusted to exist).

Usage: run.py VERILOG TOPLEVEL TEST_MODULE BUILD_DIR

Called by hdl/tests/cocotb.rs (cargo test -p hitless-hdl --features rtl
--release --test cocotb); needs iverilog on PATH and cocotb + cocotbext-axi
in the Python running it (cargo xtask setup puts them in target/venv).
"""

import os
import sys
from pathlib import Path


def main() -> int:
    if len(sys.argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    verilog, toplevel, module, build_dir = sys.argv[1:]
    from cocotb_tools.runner import get_runner
    from cocotb_tools.check_results import get_results

    here = Path(__file__).resolve().parent
    build = Path(build_dir).resolve()
    runner = get_runner("icarus")
    runner.build(
        sources=[Path(verilog).resolve()],
        hdl_toplevel=toplevel,
        build_dir=build,
        always=True,
        timescale=("1ns", "1ps"),
    )
    xml = "results.xml"
    # test() exits the process with the simulator's code if it fails.
    results = runner.test(
        hdl_toplevel=toplevel,
        test_module=module,
        test_dir=here,
        build_dir=build,
        results_xml=str(build / xml),
        seed=os.environ.get("COCOTB_RANDOM_SEED", "1"),
        extra_env={"PYTHONPATH": str(here)},
    )
    tests, failed = get_results(Path(results))
    print(f"cocotb {module}: {tests} tests, {failed} failed")
    if tests == 0:
        print("no tests ran", file=sys.stderr)
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
