"""Command line: ``python -m skad.benchmark`` (``skad-benchmark``)."""

from __future__ import annotations

import argparse
import logging
import os
import sys


def _parser():
    p = argparse.ArgumentParser(
        prog="python -m skad.benchmark",
        description="Benchmark skad's detectors against scikit-learn baselines "
        "(and PyOD / DeepOD when installed) under one protocol: stratified "
        "70/30 split per seed, StandardScaler, default hyper-parameters, ROC AUC "
        "and average precision on the test rows.",
    )
    p.add_argument(
        "--suite",
        default="demo",
        choices=["demo", "adbench", "synthetic", "speed"],
        help="demo (embedded, default), adbench (.npz files under --data-dir), "
        "synthetic (tiny smoke test) or speed (DeepSVDD vs peers, and every "
        "detector's scoring rows/s against the matmul peak)",
    )
    p.add_argument(
        "--data-dir",
        help="ADBench directory with <group>/<name>.npz (default: $SKAD_ADBENCH_DIR "
        "or ../shared/data/adbench)",
    )
    p.add_argument("--groups", nargs="+", help="e.g. Classical CV_by_ResNet18")
    p.add_argument("--datasets", nargs="+", help="names, e.g. 4_breastw or breastw")
    p.add_argument(
        "--detectors",
        nargs="+",
        help="names (see --list) or keywords default/all/skad/baselines/peers/"
        "pyod/deepod/variants (default: default)",
    )
    p.add_argument(
        "--setting",
        default="unsupervised",
        choices=["unsupervised", "one-class", "semi-supervised"],
    )
    p.add_argument("--label-fraction", type=float, default=0.1)
    p.add_argument(
        "--seeds", nargs="+", type=int, help="default: 0 1 2 for adbench, 0 otherwise"
    )
    p.add_argument("--max-samples", type=int, default=10_000)
    p.add_argument(
        "--timeout", type=float, default=1800.0, help="seconds per job (default 1800)"
    )
    p.add_argument(
        "--threads",
        default=None,
        help="torch threads per job (default auto: all cores when idle, 1 on a "
        "busy shared machine; 1 for the speed suite)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="jobs at the same time, each in its own process (default 1)",
    )
    p.add_argument("--output", default="benchmark-results", help="output directory")
    p.add_argument(
        "--no-resume", action="store_true", help="start over instead of resuming"
    )
    p.add_argument(
        "--retry-failed", action="store_true", help="re-run failed/timed-out jobs"
    )
    p.add_argument(
        "--in-process", action="store_true", help="no child processes (no timeout)"
    )
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--baseline", default="IsolationForest")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--list", action="store_true", help="list detectors and datasets, then exit"
    )
    p.add_argument("-v", "--verbose", action="store_true")
    speed = p.add_argument_group(
        "speed suite",
        "DeepSVDD vs PyOD / DeepOD (same widths n-features -> hidden -> latent), "
        "and every skad detector's scoring throughput",
    )
    speed.add_argument("--fit-rows", type=int, default=100_000)
    speed.add_argument("--score-rows", type=int, default=1_000_000)
    speed.add_argument("--n-features", type=int, default=64)
    speed.add_argument("--epochs", type=int, default=10)
    speed.add_argument("--batch-size", type=int, default=256)
    speed.add_argument("--hidden", type=int, default=64)
    speed.add_argument("--latent", type=int, default=32)
    speed.add_argument(
        "--scoring-rows", type=int, default=20_000, help="rows each detector scores"
    )
    speed.add_argument(
        "--scoring-features", type=int, default=32, help="features of that data"
    )
    speed.add_argument(
        "--repeats", type=int, default=3, help="scoring passes (the fastest counts)"
    )
    return p


def _threads(value):
    if value is None or value == "auto":
        return value
    return int(value)


def main(argv=None):
    args = _parser().parse_args(argv)
    # OpenMP reads its wait policy when torch loads: job processes inherit it
    # from here; an in-process run restarts itself so that torch sees it.
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        if args.in_process and argv is None and "torch" in sys.modules:
            cmd = [sys.executable, "-m", "skad.benchmark", *sys.argv[1:]]
            os.execv(sys.executable, cmd)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from skad import benchmark

    if args.list:
        from skad.benchmark._registry import describe

        print("Detectors:")
        for name, spec in benchmark.get_registry().items():
            print(f"  {name:24s} [{spec.kind}] {describe(spec)}")
        if args.suite in ("demo", "synthetic", "adbench"):
            tasks = benchmark.get_tasks(
                args.suite,
                data_dir=args.data_dir,
                groups=args.groups,
                names=args.datasets,
            )
            print(f"Datasets of suite {args.suite}:")
            for t in tasks:
                size = f" {t.n_samples} x {t.n_features}" if t.n_samples else ""
                print(f"  {t.name} [{t.group}]{size}")
        return 0
    threads = _threads(args.threads)
    common = dict(timeout=args.timeout, threads=threads, isolate=not args.in_process)
    if args.suite == "speed":
        plan = benchmark.SpeedPlan.build(
            detectors=args.detectors,
            fit_rows=args.fit_rows,
            score_rows=args.score_rows,
            n_features=args.n_features,
            epochs=args.epochs,
            batch_size=args.batch_size,
            hidden=args.hidden,
            latent=args.latent,
            scoring_rows=args.scoring_rows,
            scoring_features=args.scoring_features,
            score_repeats=args.repeats,
            **common,
        )
    else:
        plan = benchmark.EvalPlan.build(
            args.suite,
            detectors=args.detectors,
            data_dir=args.data_dir,
            groups=args.groups,
            datasets=args.datasets,
            setting=args.setting,
            label_fraction=args.label_fraction,
            seeds=args.seeds,
            max_samples=args.max_samples,
            n_jobs=args.jobs,
            **common,
        )
    records = plan.execute(
        args.output,
        resume=not args.no_resume,
        retry_failed=args.retry_failed,
        progress=not args.quiet,
    )
    print(
        plan.report(
            records, args.output, baseline=args.baseline, plots=not args.no_plots
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
