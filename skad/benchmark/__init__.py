"""The skad benchmark: which detector wins on which data, at what cost.

Run it as ``python -m skad.benchmark`` (or ``skad-benchmark``), or from
Python with :func:`run`. The protocol (splits, settings, seeds, scaling,
metrics, timeouts, threads) is described in the README and implemented in
:mod:`skad.benchmark._runner`.

Examples
--------
>>> from skad.benchmark import run
>>> rows = run("synthetic", detectors=["IsolationForest", "KNN"],
...            isolate=False, progress=False, as_frame=False)
>>> sorted({(r["detector"], r["status"]) for r in rows})
[('IsolationForest', 'ok'), ('KNN', 'ok')]
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import platform
from pathlib import Path

from skad.benchmark._adapters import DeepODAdapter, PyODAdapter
from skad.benchmark._baselines import KNN
from skad.benchmark._registry import VARIANTS, DetectorSpec, get_registry, select
from skad.benchmark._report import overall_table, summarize, to_markdown, write_plots
from skad.benchmark._runner import (
    FIELDS,
    SETTINGS,
    prepare_split,
    read_csv,
    resolve_threads,
    run_jobs,
    set_thread_env,
)
from skad.benchmark._suites import Task, get_tasks

__all__ = [
    "FIELDS",
    "KNN",
    "DeepODAdapter",
    "DetectorSpec",
    "PyODAdapter",
    "Task",
    "VARIANTS",
    "get_registry",
    "get_tasks",
    "prepare_split",
    "read_csv",
    "run",
    "select",
    "summarize",
    "to_markdown",
]

logger = logging.getLogger("skad.benchmark")

DEFAULT_SEEDS = {"adbench": (0, 1, 2)}


def _environment(threads, reason, isolate, n_jobs=1):
    import sklearn
    import torch

    import skad

    device = (
        "cuda (" + torch.cuda.get_device_name(0) + ")"
        if torch.cuda.is_available()
        else "cpu"
    )
    return {
        "threads": f"{threads} torch thread(s) per job ({reason}); "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}; "
        + (
            f"each job in a child process, {n_jobs} at a time"
            if isolate
            else "jobs in this process"
        ),
        "device": device,
        "versions": f"skad {skad.__version__}, torch {torch.__version__}, "
        f"scikit-learn {sklearn.__version__}, Python {platform.python_version()}",
    }


def run(
    suite="demo",
    *,
    detectors=None,
    data_dir=None,
    groups=None,
    datasets=None,
    setting="unsupervised",
    label_fraction=0.1,
    seeds=None,
    max_samples=10_000,
    test_size=0.3,
    timeout=1800.0,
    threads=None,
    output=None,
    resume=True,
    retry_failed=False,
    isolate=True,
    n_jobs=1,
    progress=True,
    plots=True,
    baseline="IsolationForest",
    as_frame="auto",
    print_table=False,
):
    """Run the benchmark and return one record per (dataset, detector, seed).

    Parameters
    ----------
    suite : {"demo", "adbench", "synthetic"}, list of Task or dict, default="demo"
        ``"demo"``: embedded tasks (:func:`skad.datasets.demo_tasks`);
        ``"adbench"``: the ``.npz`` files under ``data_dir``; a dict maps
        names to ``(X, y)`` (y = 1 for anomalies) or to loaders.
    detectors : list of str or DetectorSpec, default=None
        Names from :func:`get_registry`, keywords (``default``, ``all``,
        ``skad``, ``baselines``, ``peers``, ``variants``) or dotted class
        paths; None = ``default``.
    data_dir : str, default=None
        ADBench directory (else ``$SKAD_ADBENCH_DIR`` or
        ``../shared/data/adbench``).
    groups, datasets : list of str, default=None
        Filters on the tasks' group and name.
    setting : {"unsupervised", "one-class", "semi-supervised"}
    label_fraction : float, default=0.1
        Share of training anomalies labelled in the semi-supervised setting.
    seeds : list of int, default=None
        ``(0, 1, 2)`` for adbench, ``(0,)`` otherwise. Each seed drives the
        subsample, the split, the labels and the detector's random_state.
    max_samples : int, default=10000
        Larger datasets are subsampled (stratified) to this many rows.
    test_size : float, default=0.3
    timeout : float or None, default=1800
        Seconds per job (fit + score) before it is killed and recorded as
        ``timeout``; needs ``isolate=True``.
    threads : int or "auto", default=None
        Torch threads per job; None/"auto" = all cores when idle, fewer on a
        busy machine (see :func:`skad.benchmark._runner.resolve_threads`).
    output : str or path, default=None
        Directory for ``results.csv``, ``summary.md`` and the plots; None
        writes nothing. Rows already in its CSV are not re-run.
    resume : bool, default=True
        Skip jobs already recorded in ``output``'s CSV (False starts over).
    retry_failed : bool, default=False
        With ``resume``, re-run the jobs recorded as failed or timed out.
    isolate : bool, default=True
        Run each job in a child process (needed for timeouts).
    n_jobs : int, default=1
        Jobs run at the same time (each in its own child process); the
        threads per job default to the free cores divided by ``n_jobs``.
    progress : bool, default=True
        tqdm progress bar over datasets x detectors x seeds.
    plots : bool, default=True
        Write ``rank.png`` and ``heatmap.png`` when matplotlib is installed.
    baseline : str, default="IsolationForest"
        Reference of the wins / ties / losses column.
    as_frame : bool or "auto", default="auto"
        Return a pandas DataFrame ("auto": when pandas is installed).
    print_table : bool, default=False
        Print the summary table.

    Returns
    -------
    records : list of dict or pandas.DataFrame
        Columns as in :data:`FIELDS`.

    Notes
    -----
    With ``isolate=True`` jobs run in processes started with the ``spawn``
    method, which re-imports the calling script: call :func:`run` from under
    ``if __name__ == "__main__":`` in a script (notebooks need nothing).
    Detectors and loaders given as objects must then be picklable
    (module-level classes and functions).
    """
    if setting not in SETTINGS:
        raise ValueError(f"setting must be one of {SETTINGS}, got {setting!r}.")
    if timeout is not None and not isolate:
        logger.info("timeout ignored: jobs run in this process (isolate=False)")
    suite_name = suite if isinstance(suite, str) else "custom"
    tasks = get_tasks(suite, data_dir=data_dir, groups=groups, names=datasets)
    specs = select(detectors, setting=setting, suite=suite_name)
    if not specs:
        raise ValueError("No detector selected.")
    if seeds is None:
        seeds = DEFAULT_SEEDS.get(suite_name, (0,))
    seeds = [int(s) for s in seeds]
    n_threads, reason = resolve_threads(threads, n_jobs)

    jobs = [
        {
            "suite": suite_name,
            "task": task,
            "spec": spec,
            "seed": seed,
            "setting": setting,
            "label_fraction": float(label_fraction),
            "max_samples": max_samples,
            "test_size": test_size,
            "threads": n_threads,
        }
        for task in tasks
        for seed in seeds
        for spec in specs
    ]
    out_dir = Path(output) if output is not None else None
    csv_path = out_dir / "results.csv" if out_dir is not None else None

    saved_env = dict(os.environ)
    import torch

    saved_threads = torch.get_num_threads()
    try:
        set_thread_env(n_threads)
        env = _environment(n_threads, reason, isolate, n_jobs)
        records = run_jobs(
            jobs,
            csv_path=csv_path,
            timeout=timeout if isolate else None,
            threads=n_threads,
            isolate=isolate,
            progress=progress,
            resume=resume,
            retry_failed=retry_failed,
            n_jobs=n_jobs,
        )
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        torch.set_num_threads(saved_threads)

    summary = summarize(
        records,
        baseline=baseline,
        detectors=[s.name for s in specs],
        datasets=[t.name for t in tasks],
    )
    subsampled = sorted(
        {
            f"{r['dataset']} ({r['n_samples_original']} -> {r['n_samples']})"
            for r in records
            if r.get("n_samples_original")
            and r.get("n_samples")
            and r["n_samples_original"] > r["n_samples"]
        }
    )
    meta = {
        "suite": suite_name,
        "setting": setting
        + (
            f" (label fraction {label_fraction})"
            if setting == "semi-supervised"
            else ""
        ),
        "datasets": f"{len(tasks)}"
        + (f" in groups {', '.join(summary['groups'])}" if summary["groups"] else ""),
        "detectors": ", ".join(s.name for s in specs),
        "seeds": " ".join(map(str, seeds)),
        "subsampled": f"to {max_samples} rows (stratified): " + "; ".join(subsampled)
        if subsampled
        else "none",
        "split": f"stratified {1 - test_size:.0%}/{test_size:.0%}, StandardScaler on "
        "the training rows, hyper-parameters = defaults",
        "timeout": f"{timeout:g} s per job" if timeout and isolate else "none",
        **env,
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    failures = [
        [
            r["dataset"],
            r["detector"],
            r["seed"],
            r["status"],
            (r.get("error") or "")[:160],
        ]
        for r in records
        if r["status"] != "ok"
    ]
    if failures:
        meta["_failures"] = failures
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        markdown = to_markdown(summary, dict(meta))
        (out_dir / "summary.md").write_text(markdown + "\n")
        if plots:
            write_plots(summary, out_dir)
    if print_table:
        print(
            f"\nskad benchmark - suite {suite_name}, setting {setting}, seeds "
            f"{' '.join(map(str, seeds))}, {len(tasks)} datasets; {env['threads']}"
        )
        print(overall_table(summary))
        if out_dir is not None:
            print(f"\nResults: {out_dir / 'results.csv'}, {out_dir / 'summary.md'}")
    if as_frame:
        try:
            import pandas as pd
        except ImportError:
            if as_frame is True:
                raise
        else:
            return pd.DataFrame.from_records(records, columns=FIELDS)
    return records
