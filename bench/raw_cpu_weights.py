"""The control for CPU weights, without Jogger: can this kernel (or VM) measure them at all?

    python bench/raw_cpu_weights.py [SECONDS]      # root, on a cgroup v2 host or in the VM
    make bench-cgroup2 ... (or: tests/vm/run_in_vm.py --script bench/raw_cpu_weights.py)

Makes /sys/fs/cgroup/raw-weights-<pid>/{h1,h2,l1,l2} with cpu.weight 200, 200, 100, 100, runs
one busy Python loop in each for SECONDS (default 10), and prints each group's loops and
usage_usec. On a working scheduler heavy/light is 2.0 by either measure, and the groups'
CPU time adds up to at most SECONDS times the CPUs. Removes its groups on the way out.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
LOOP = """
import sys, time
end = time.monotonic() + float(sys.argv[1])
n = 0
while time.monotonic() < end:
    for _ in range(10000):
        pass
    n += 1
print(n)
"""
WEIGHTS = {"h1": 200, "h2": 200, "l1": 100, "l2": 100}


def main(seconds: float) -> None:
    clock = Path("/sys/devices/system/clocksource/clocksource0/current_clocksource")
    print(f"# {os.cpu_count()} CPUs, clocksource {clock.read_text().strip()}, {seconds:g} s")
    top = ROOT / f"raw-weights-{os.getpid()}"
    (ROOT / "cgroup.subtree_control").write_text("+cpu")
    top.mkdir()
    try:
        (top / "cgroup.subtree_control").write_text("+cpu")
        for name, weight in WEIGHTS.items():
            (top / name).mkdir()
            (top / name / "cpu.weight").write_text(str(weight))
        started = time.monotonic()
        procs = {name: run_in(top / name, seconds) for name in WEIGHTS}
        loops = {name: int(p.communicate()[0]) for name, p in procs.items()}
        wall = time.monotonic() - started
        usage = {name: usage_seconds(top / name) for name in WEIGHTS}
    finally:
        for name in WEIGHTS:
            if (top / name).exists():
                (top / name).rmdir()
        top.rmdir()
    for name, weight in WEIGHTS.items():
        print(f"- {name} (weight {weight}): {loops[name]} loops, {usage[name]:.2f} s CPU")

    def ratio(by: dict[str, float]) -> float:
        return (by["h1"] + by["h2"]) / max(by["l1"] + by["l2"], 1e-9)

    print(
        f"heavy/light: {ratio({k: float(v) for k, v in loops.items()}):.2f} by loops, "
        f"{ratio(usage):.2f} by CPU time (2.00 is exact); CPU time {sum(usage.values()):.1f} s "
        f"in {wall:.1f} s on {os.cpu_count()} CPUs"
    )


def run_in(group: Path, seconds: float) -> "subprocess.Popen[bytes]":
    def enter() -> None:
        (group / "cgroup.procs").write_text("0")

    return subprocess.Popen(
        [sys.executable, "-c", LOOP, str(seconds)],
        stdout=subprocess.PIPE,
        preexec_fn=enter,  # noqa: PLW1509 - this script has no threads
    )


def usage_seconds(group: Path) -> float:
    for line in (group / "cpu.stat").read_text().splitlines():
        key, value = line.split()
        if key == "usage_usec":
            return int(value) / 1e6
    return 0.0


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 10.0)
