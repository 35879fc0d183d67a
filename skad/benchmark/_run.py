""":func:`run` and :func:`run_speed`: build a plan, execute it, write its report.

The command line (``__main__``) does the same three steps and prints the
report; these functions print nothing and return the records.
"""

from __future__ import annotations

import dataclasses

from skad.benchmark._plans import EvalPlan, SpeedPlan

__all__ = ["run", "run_speed"]


def _as_table(records, columns, as_frame):
    rows = [dataclasses.asdict(r) for r in records]
    if as_frame:
        try:
            import pandas as pd
        except ImportError:
            if as_frame is True:
                raise
        else:
            return pd.DataFrame.from_records(rows, columns=columns)
    return rows


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
):
    """Run the benchmark and return one record per (dataset, detector, seed).

    Parameters
    ----------
    suite : {"demo", "adbench", "synthetic"}, list of Task or dict, default="demo"
        ``"demo"``: embedded tasks (:func:`skad.datasets.demo_tasks`);
        ``"adbench"``: the ``.npz`` files under ``data_dir``; a dict maps
        names to ``(X, y)`` (y = 1 for anomalies) or to loaders. The speed
        suite is :func:`run_speed`.
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
        Share of training anomalies labelled in the semi-supervised setting;
        the labels reach the detectors whose ``fit`` takes ``labels``
        (:func:`skad.utils.accepts_labels`).
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
        Directory for ``results.csv``, ``summary.md``, the plots and
        ``run-info.json``; None writes nothing. Rows already in its CSV are
        not re-run, and without new jobs ``summary.md`` is rewritten byte for
        byte.
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

    Returns
    -------
    records : list of dict or pandas.DataFrame
        One per job in the order datasets x seeds x detectors, columns as in
        :data:`FIELDS` (the fields of :class:`EvalRecord`), values as
        ``results.csv`` stores them.

    Notes
    -----
    With ``isolate=True`` jobs run in processes started with the ``spawn``
    method, which re-imports the calling script: call :func:`run` from under
    ``if __name__ == "__main__":`` in a script (notebooks need nothing).
    Detectors and loaders given as objects must then be picklable
    (module-level classes and functions).
    """
    plan = EvalPlan.build(
        suite,
        detectors=detectors,
        data_dir=data_dir,
        groups=groups,
        datasets=datasets,
        setting=setting,
        label_fraction=label_fraction,
        seeds=seeds,
        max_samples=max_samples,
        test_size=test_size,
        timeout=timeout,
        threads=threads,
        isolate=isolate,
        n_jobs=n_jobs,
    )
    records = plan.execute(
        output, resume=resume, retry_failed=retry_failed, progress=progress
    )
    plan.report(records, output, baseline=baseline, plots=plots)
    return _as_table(records, plan.jobs[0].record_type.columns(), as_frame)


def run_speed(
    *,
    detectors=None,
    fit_rows=100_000,
    score_rows=1_000_000,
    n_features=64,
    epochs=10,
    batch_size=256,
    hidden=64,
    latent=32,
    scoring_rows=20_000,
    scoring_features=32,
    scoring_fit_rows=2_048,
    scoring_epochs=2,
    score_repeats=3,
    threads=None,
    device=None,
    timeout=1800.0,
    output=None,
    resume=True,
    retry_failed=False,
    isolate=True,
    progress=True,
    as_frame="auto",
):
    """Measure fit and scoring throughput; return one record per measurement.

    Two measurements, each in a fresh child process (see
    :mod:`skad.benchmark._speed`): skad's DeepSVDD against PyOD's and
    DeepOD's (when installed) with the same widths ``n_features -> hidden ->
    latent``, ``epochs`` and ``batch_size``, fitted on ``fit_rows`` and
    scoring ``score_rows`` Gaussian rows; and every skad detector's scoring
    throughput with its defaults (``scoring_features`` features, fitted on
    ``scoring_fit_rows`` rows for ``scoring_epochs`` epochs, ``scoring_rows``
    rows scored), next to what its forward-pass FLOPs predict at this
    process's measured matmul (sgemm) rate.

    Parameters
    ----------
    detectors : list of str, default=None
        ``DeepSVDD``, ``PyOD-DeepSVDD``, ``DeepOD-DeepSVDD`` (the
        comparison) and skad detector names (scoring); None = all of them.
    fit_rows, score_rows, n_features, epochs, batch_size, hidden, latent : int
        The DeepSVDD comparison.
    scoring_rows, scoring_features, scoring_fit_rows, scoring_epochs : int
        The per-detector scoring measurement.
    score_repeats : int, default=3
        Scoring passes per measurement; the least CPU time counts.
    threads : int or "auto", default=None
        Torch threads per measurement; None = 1 (CPU times per thread).
    device : str, default=None
        ``"cuda"`` when torch sees a GPU, else ``"cpu"``.
    timeout : float or None, default=1800
        Seconds per measurement.
    output : str or path, default=None
        Directory for ``speed.csv`` and ``speed.md``; with ``resume`` the
        measurements already in ``speed.csv`` are not repeated.
    resume, retry_failed, isolate, progress, as_frame
        As in :func:`run`.

    Returns
    -------
    records : list of dict or pandas.DataFrame
        Columns of :class:`~skad.benchmark.SpeedRecord`.
    """
    plan = SpeedPlan.build(
        detectors=detectors,
        threads=threads,
        device=device,
        timeout=timeout,
        isolate=isolate,
        fit_rows=fit_rows,
        score_rows=score_rows,
        n_features=n_features,
        epochs=epochs,
        batch_size=batch_size,
        hidden=hidden,
        latent=latent,
        scoring_rows=scoring_rows,
        scoring_features=scoring_features,
        scoring_fit_rows=scoring_fit_rows,
        scoring_epochs=scoring_epochs,
        score_repeats=score_repeats,
    )
    records = plan.execute(
        output, resume=resume, retry_failed=retry_failed, progress=progress
    )
    plan.report(records, output)
    return _as_table(records, plan.jobs[0].record_type.columns(), as_frame)
