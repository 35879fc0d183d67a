"""Peak extra memory of scoring many rows: chunked scoring keeps it bounded.

Fits a detector (DeepSVDD by default, the fastest) on a small sample, then
scores ``--rows`` rows of ``--features`` features and reports the memory used
on top of the input array:

* ``tracemalloc`` peak: numpy allocations (the output, chunk copies);
* peak RSS growth: the process's resident-set high-water mark (``VmHWM``,
  reset just before scoring through ``/proc/self/clear_refs``) minus the RSS
  before scoring; it includes torch's CPU allocations, which tracemalloc
  does not see. Where the high-water mark cannot be reset, RSS is sampled
  every 10 ms by a thread instead.

Usage::

    OMP_NUM_THREADS=1 python scripts/bench_memory.py --rows 2000000 --features 64

This is a measurement script, not a test: it prints a small report (and
``--json`` writes it to a file).
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch

import skad

MiB = 2**20


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class _RssSampler(threading.Thread):
    """Fallback peak-RSS probe: sample VmRSS every ``interval`` seconds."""

    def __init__(self, interval=0.01):
        super().__init__(daemon=True)
        self.interval = interval
        self.peak = 0
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            self.peak = max(self.peak, _status_kib("VmRSS") or 0)
            time.sleep(self.interval)

    def stop(self):
        self._halt.set()
        self.join()
        self.peak = max(self.peak, _status_kib("VmRSS") or 0)


def measure(detector: str, rows: int, features: int, dtype: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    cls = dict(skad.all_estimators())[detector]
    det = cls(max_iter=1, device="cpu", random_state=seed)
    det.fit(rng.standard_normal((10_000, features)))

    X = rng.standard_normal((rows, features), dtype=np.float32).astype(
        dtype, copy=False
    )
    det.score_samples(X[:1000])  # warm up kernels and allocator
    gc.collect()

    rss_before = _status_kib("VmRSS")
    hwm_reset = _reset_peak_rss()
    sampler = None if hwm_reset else _RssSampler()
    if sampler is not None:
        sampler.start()
    tracemalloc.start()
    tracemalloc.reset_peak()
    t0 = time.perf_counter()
    scores = det.score_samples(X)
    seconds = time.perf_counter() - t0
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    if sampler is not None:
        sampler.stop()
        peak_rss = sampler.peak
    else:
        peak_rss = _status_kib("VmHWM")

    assert scores.shape == (rows,) and np.isfinite(scores).all()
    extra_rss = (peak_rss - rss_before) * 1024 if peak_rss and rss_before else None
    return {
        "detector": detector,
        "rows": rows,
        "features": features,
        "dtype": dtype,
        "input_MiB": X.nbytes / MiB,
        "output_MiB": scores.nbytes / MiB,
        "chunk_rows": skad._engine.SCORE_CHUNK_SIZE,
        "tracemalloc_peak_MiB": traced_peak / MiB,
        "peak_rss_growth_MiB": None if extra_rss is None else extra_rss / MiB,
        "peak_rss_method": "VmHWM reset" if hwm_reset else "VmRSS sampled/10ms",
        "process_max_rss_MiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        / 1024,
        "seconds": seconds,
        "rows_per_second": rows / seconds,
        "torch_threads": torch.get_num_threads(),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", default="DeepSVDD")
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument(
        "--dtype", nargs="+", default=["float32", "float64"], help="input dtypes"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    results = []
    for dtype in args.dtype:
        r = measure(args.detector, args.rows, args.features, dtype)
        results.append(r)
        print(
            f"{r['detector']}: scored {r['rows']:,} x {r['features']} {dtype} "
            f"(input {r['input_MiB']:.0f} MiB) in {r['seconds']:.1f} s; "
            f"peak extra memory: tracemalloc {r['tracemalloc_peak_MiB']:.1f} MiB, "
            f"RSS growth {r['peak_rss_growth_MiB']:.1f} MiB "
            f"({r['peak_rss_method']}); output {r['output_MiB']:.1f} MiB",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
