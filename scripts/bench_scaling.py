"""Training time of one epoch against the number of rows (should be linear).

Fits a detector (DeepSVDD by default, the fastest) for one epoch on
``--rows`` rows (default 10k, 100k and 1M) of ``--features`` standard normal
features and times the epoch loop (:func:`skad._engine.train_epochs`) as well
as the whole ``fit`` (which also builds the network, copies X to the device,
and scores the training rows to set ``offset_``). Both wall-clock and process
CPU time are reported, because CPU time is less disturbed by other processes
on a shared machine. Ratios are relative to the smallest size.

Usage::

    OMP_NUM_THREADS=1 python scripts/bench_scaling.py --rows 10000 100000 1000000

This is a measurement script, not a test: it prints a small table (and
``--json`` writes the results to a file).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import skad
from skad import _engine


class _EpochTimer:
    """Wraps ``_engine.train_epochs`` to time the loop alone."""

    def __init__(self):
        self.wall = 0.0
        self.cpu = 0.0
        self._original = _engine.train_epochs

    def __enter__(self):
        def timed(*args, **kwargs):
            w, c = time.perf_counter(), time.process_time()
            try:
                return self._original(*args, **kwargs)
            finally:
                self.wall += time.perf_counter() - w
                self.cpu += time.process_time() - c

        _engine.train_epochs = timed
        return self

    def __exit__(self, *exc):
        _engine.train_epochs = self._original


def time_one_epoch(cls, X, device, repeats, seed=0):
    """Best-of-``repeats`` epoch and fit times (wall and CPU seconds)."""
    best = None
    for r in range(repeats):
        det = cls(max_iter=1, device=device, random_state=seed + r)
        with _EpochTimer() as timer:
            w, c = time.perf_counter(), time.process_time()
            det.fit(X)
            fit_wall, fit_cpu = time.perf_counter() - w, time.process_time() - c
        run = {
            "epoch_wall_s": timer.wall,
            "epoch_cpu_s": timer.cpu,
            "fit_wall_s": fit_wall,
            "fit_cpu_s": fit_cpu,
        }
        if best is None:
            best = run
        else:
            best = {k: min(best[k], v) for k, v in run.items()}
    return best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", default="DeepSVDD")
    parser.add_argument(
        "--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000]
    )
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--repeats", type=int, default=3, help="best of this many fits per size"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    cls = dict(skad.all_estimators())[args.detector]
    rng = np.random.default_rng(0)
    # warm-up (kernels, allocator) so the smallest size is not penalised
    time_one_epoch(cls, rng.standard_normal((2_000, args.features)), args.device, 1)

    results = []
    for n in args.rows:
        X = rng.standard_normal((n, args.features), dtype=np.float32)
        repeats = args.repeats if n <= 100_000 else max(1, args.repeats - 1)
        r = {"rows": n, **time_one_epoch(cls, X, args.device, repeats)}
        results.append(r)
        print(
            f"{args.detector} {n:>9,} x {args.features}: epoch "
            f"{r['epoch_wall_s']:.3f} s wall / {r['epoch_cpu_s']:.3f} s CPU; "
            f"fit {r['fit_wall_s']:.3f} s wall / {r['fit_cpu_s']:.3f} s CPU",
            flush=True,
        )
    base = results[0]
    print(f"\nratios to {base['rows']:,} rows (linear = rows ratio):")
    for r in results:
        rows_ratio = r["rows"] / base["rows"]
        r["ratios"] = {
            k: r[k] / base[k] for k in ("epoch_wall_s", "epoch_cpu_s", "fit_wall_s")
        }
        print(
            f"  {r['rows']:>9,}: rows x{rows_ratio:g}, epoch wall "
            f"x{r['ratios']['epoch_wall_s']:.1f}, epoch CPU "
            f"x{r['ratios']['epoch_cpu_s']:.1f}, fit wall "
            f"x{r['ratios']['fit_wall_s']:.1f}"
        )
    meta = {
        "detector": args.detector,
        "features": args.features,
        "device": args.device,
        "batch_size": cls().batch_size,
        "torch_threads": torch.get_num_threads(),
    }
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    return results


if __name__ == "__main__":
    main()
