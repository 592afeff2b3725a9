"""Benchmark (not a test): sweep throughput on this machine.

The same points (by default the degradation preset cut to depths 2-16 and 2 seeds:
16 points of 2000 steps) run three ways into fresh results files:

* serial: one after another in this process, kernels already loaded (the reference);
* a local process pool with 1 worker, and with 2 workers (``run_sweep``'s default
  executor; from this single-threaded script its workers are forked, inheriting the
  kernels loaded here), and the same with spawned workers (a fresh interpreter each,
  which imports the simulator and loads the numba kernels from the on-disk cache:
  what the window uses, since it has other threads).

Points per minute are wall-clock, from the call to ``run_sweep`` to its return, pool
start and shutdown included. The pool's overhead per point is
(pool with 1 worker - serial) / points. The cost of starting one worker is measured
apart: a fresh interpreter that imports the simulator and runs one tiny point
(kernels from the cache), against the same tiny point in a warm process.

CPU time (this process and its reaped workers, ``getrusage``) is printed beside the
wall time: on a machine shared with other jobs it is the steadier of the two, and
the CPU overhead per point is (CPU of the pool run - CPU of the serial run) / points.
The machine may be shared: the load average before and after each run is printed,
and the serial reference is measured in the same run, so the ratios are what to
compare. Run: ``OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/sweep.py [--repeat N]``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from simulator.sweep import Sweep, load_sweep_preset, run_point, run_sweep  # noqa: E402

TINY_POINT = """
import time, sys
t0 = time.perf_counter()
sys.path.insert(0, {root!r})
from simulator.sweep import load_sweep_preset, run_point
s = load_sweep_preset("degradation")
e = s.experiment_for(s.points()[0]).to_dict()
t1 = time.perf_counter()
run_point(e, 20, 0.1, 10)
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def _cpu() -> float:
    """CPU seconds of this process and its reaped children (pool workers are reaped
    when the pool shuts down). Less disturbed by other jobs than wall time."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _load() -> str:
    a, b, c = os.getloadavg()
    return f"{a:.2f} {b:.2f} {c:.2f}"


def bench_sweep(steps: int, repeat: int) -> None:
    base = load_sweep_preset("degradation")
    sweep = Sweep(base.experiment, axes=(("depth", (2, 4, 8, 16)), ("skips", ("none",
                  "residual"))), steps=steps, seeds=2, name="bench", check_every=50)
    n = sweep.n_points
    # warm this process's kernels (the serial reference runs warm, as a pool worker
    # is warm after its first point)
    run_point(sweep.experiment_for(sweep.points()[0]).to_dict(), 5, 0.1, 5)
    print(f"{n} points x {steps} steps (degradation preset, depths 2-16, 2 seeds), "
          f"{os.cpu_count()} cores, best of {repeat}")
    results, cpu = {}, {}
    for label, kw in (("serial, one process", dict(executor="serial")),
                      ("local pool, 1 worker", dict(executor="local", workers=1)),
                      ("local pool, 2 workers", dict(executor="local", workers=2)),
                      ("1 worker, spawn", dict(executor="local", workers=1,
                                               start_method="spawn")),
                      ("2 workers, spawn", dict(executor="local", workers=2,
                                                start_method="spawn"))):
        times = []
        cpus = []
        loads = []
        for _ in range(repeat):
            with tempfile.TemporaryDirectory() as tmp:
                before = _load()
                t, c = time.perf_counter(), _cpu()
                out = run_sweep(sweep, Path(tmp) / "r.jsonl", **kw)
                times.append(time.perf_counter() - t)
                cpus.append(_cpu() - c)
                loads.append(f"{before} -> {_load()}")
                assert out.ran == n
        best = min(times)
        results[label] = best
        cpu[label] = min(cpus)
        print(f"  {label:24s} {best:7.2f} s  {n / best * 60:7.1f} points/min   "
              f"CPU {min(cpus):6.2f} s   (wall of each run: "
              f"{', '.join(f'{x:.2f}' for x in times)}; load avg {loads[-1]})")
    serial = results["serial, one process"]
    print(f"  speed-up over serial: 1 worker x{serial / results['local pool, 1 worker']:.2f}, "
          f"2 workers x{serial / results['local pool, 2 workers']:.2f}")
    print(f"  spawn: 1 worker x{serial / results['1 worker, spawn']:.2f}, "
          f"2 workers x{serial / results['2 workers, spawn']:.2f}")
    for label in ("local pool, 1 worker", "1 worker, spawn"):
        print(f"  pool overhead per point ({label} - serial) / points: wall "
              f"{(results[label] - serial) / n * 1000:.0f} ms, CPU "
              f"{(cpu[label] - cpu['serial, one process']) / n * 1000:.0f} ms")


def bench_worker_start(repeat: int) -> None:
    cold, first = [], []
    for _ in range(repeat):
        t = time.perf_counter()
        res = subprocess.run([sys.executable, "-c", TINY_POINT.format(root=str(ROOT))],
                             capture_output=True, text=True, check=True)
        total = time.perf_counter() - t
        imp, point = (float(x) for x in res.stdout.split())
        cold.append(total)
        first.append((imp, point))
    s = load_sweep_preset("degradation")
    e = s.experiment_for(s.points()[0]).to_dict()
    run_point(e, 20, 0.1, 10)
    t = time.perf_counter()
    for _ in range(5):
        run_point(e, 20, 0.1, 10)
    warm = (time.perf_counter() - t) / 5
    i = min(range(repeat), key=lambda k: cold[k])
    print(f"worker start (fresh interpreter, best of {repeat}): {cold[i]:.2f} s in all = "
          f"imports {first[i][0]:.2f} s + first tiny point {first[i][1]:.2f} s (kernels "
          f"loaded from the numba cache) + interpreter start; the same point warm: "
          f"{warm * 1000:.0f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--steps", type=int, default=2000)
    args = ap.parse_args()
    print(f"load average at start: {_load()}")
    bench_worker_start(args.repeat)
    bench_sweep(args.steps, args.repeat)
    print(f"load average at end: {_load()}")


if __name__ == "__main__":
    main()
