"""What a benchmark ran on, and the machine's own matmul speed, so results can be compared across machines.

- `machine_info()` (from `rlhfkit.core.machine`): cores (all, usable by this process, and the cgroup CPU quota),
  CPU model, load average at the time (other work on the machine slows a benchmark down), torch / transformers /
  Python versions, GPU if any.
- `busy_cpus()`, `CpuMonitor`: CPUs that other work keeps busy, now or during a timed block.
- `matmul_flops()`: FLOP/s of a large fp32 matrix product in this process, with torch's current thread count: the
  practical ceiling ("roofline") that model FLOP rates are divided by.
- `write_result(name, data)`: benchmarks/results/NAME.json, atomically, with `machine` added.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from rlhfkit.core.machine import machine_info

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _cpu_seconds() -> tuple[float, float] | None:
    """(busy CPU-seconds of the whole machine since boot, of which idle/iowait excluded), from /proc/stat."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / ticks, sum(fields[:8]) / ticks


def busy_cpus(seconds: float = 1.0) -> float | None:
    """How many CPUs were busy over the next `seconds` (this process sleeps meanwhile); None if unknown.

    Sampled before a benchmark starts, it tells whether other work shares the machine: unlike the load average, it
    does not lag behind by minutes.
    """
    with CpuMonitor() as monitor:
        time.sleep(seconds)
    return monitor.other_cpus


class CpuMonitor:
    """`with CpuMonitor() as m: ...` then `m.other_cpus`: the average number of CPUs that work other than this
    process kept busy during the block (None where /proc/stat is missing). Timings taken while it is well above 0
    measure the neighbours as much as the code: with one torch thread per core, a thread that loses its core stalls
    every parallel operation of the others."""

    other_cpus: float | None = None

    def __enter__(self) -> CpuMonitor:
        self._start = (_cpu_seconds(), time.process_time(), time.perf_counter())
        return self

    def __exit__(self, *exc: object) -> None:
        machine, own, wall = _cpu_seconds(), time.process_time(), time.perf_counter()
        machine0, own0, wall0 = self._start
        if machine is None or machine0 is None or wall <= wall0:
            return
        other = (machine[0] - machine0[0]) - (own - own0)
        self.other_cpus = max(0.0, other / (wall - wall0))


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity, e.g. under `taskset -c 1`): one torch thread each. More threads
    than cores makes OpenMP threads wait on each other, which slows a run far more than it helps."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def matmul_flops(size: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of one `size` x `size` fp32 matmul (2 * size**3 FLOPs), best of `repeats` after a warm-up."""
    import torch

    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator)
    b = torch.randn(size, size, generator=generator)
    out = torch.empty(size, size)
    torch.mm(a, b, out=out)  # warm-up: thread pool start, kernel selection
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def write_result(name: str, data: dict[str, Any]) -> Path:
    """Write benchmarks/results/NAME.json atomically, with `machine` (machine_info()) added."""
    from rlhfkit.core.atomic import atomic_write_text

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    path = RESULTS / f"{name}.json"
    atomic_write_text(path, json.dumps({**data, "machine": machine_info()}, indent=1) + "\n")
    return path


if __name__ == "__main__":
    print(json.dumps({**machine_info(), "matmul_gflops": round(matmul_flops() / 1e9, 1)}, indent=1))
