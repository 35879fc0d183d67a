"""Measure scoring throughput and one-row latency per scoring chunk size.

Every scoring forward pass runs on a chunk of one fixed shape (the last
chunk zero-padded), so the chunk size trades throughput (large matrix
products) against the cost of scoring a single row (one whole padded chunk).
For every detector (defaults, ``--features`` features, fitted for two epochs
on 2,048 rows) and chunk size, this script measures in a fresh process per
torch thread count:

* rows/s per CPU second (``time.process_time``) scoring ``--rows`` rows;
* the wall time of scoring one row (median of 20 calls).

Usage::

    python scripts/measure_chunk_size.py --output chunks.csv [--threads 1 2]
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import time

SIZES = (64, 128, 256, 512, 1024, 2048, 4096)


def measure(threads: int, features: int, rows: int, detectors=None):
    import warnings

    import numpy as np
    import torch

    import skad

    warnings.simplefilter("ignore")
    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    X_fit = rng.normal(size=(2048, features))
    X = rng.normal(size=(rows, features))
    out = []
    for name, cls in skad.all_estimators():
        if detectors and name not in detectors:
            continue
        est = cls(max_iter=2, device="cpu", random_state=0).fit(X_fit)
        for size in SIZES:
            est._score_chunk_size = size
            est.score_samples(X[:size])  # warm-up
            start = time.process_time()
            est.score_samples(X)
            cpu = time.process_time() - start
            lat = []
            for i in range(20):
                t0 = time.perf_counter()
                est.score_samples(X[i : i + 1])
                lat.append(time.perf_counter() - t0)
            out.append(
                {
                    "detector": name,
                    "threads": threads,
                    "chunk_size": size,
                    "rows_per_cpu_s": round(rows / cpu, 1),
                    "one_row_ms": round(1e3 * float(np.median(lat)), 3),
                }
            )
            print(out[-1], file=sys.stderr, flush=True)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--rows", type=int, default=16384)
    parser.add_argument("--detectors", nargs="+")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        import json

        rows = measure(args.child, args.features, args.rows, args.detectors)
        print(json.dumps(rows))
        return
    import json

    records = []
    for threads in args.threads:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        cmd = [sys.executable, __file__, "--output", args.output, "--child",
               str(threads), "--features", str(args.features), "--rows",
               str(args.rows)]
        if args.detectors:
            cmd += ["--detectors", *args.detectors]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        records += json.loads(done.stdout.strip().splitlines()[-1])
    with open(args.output, "w", newline="") as fh:
        writer = csv.DictWriter(fh, list(records[0]))
        writer.writeheader()
        writer.writerows(records)


if __name__ == "__main__":
    main()
