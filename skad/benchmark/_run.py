""":func:`run` and :func:`run_speed`: plan the jobs, run them, write the report.

Both go through one pipeline: a plan (:class:`EvalPlan` or :class:`SpeedPlan`)
holds the jobs and how they run; :meth:`Plan.execute` hands them to
:func:`skad.benchmark._runner.run_jobs` (child processes, timeouts, CSV,
resumption) and :meth:`Plan.report` writes the files and returns the text the
command line prints. Nothing here prints.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

from skad.benchmark._protocol import SETTINGS, EvalJob
from skad.benchmark._registry import select
from skad.benchmark._report import overall_table, summarize, to_markdown, write_plots
from skad.benchmark._runner import resolve_threads, run_jobs
from skad.benchmark._speed import speed_jobs, speed_markdown
from skad.benchmark._suites import get_tasks

__all__ = ["EvalPlan", "Plan", "SpeedPlan", "run", "run_speed"]

logger = logging.getLogger("skad.benchmark")

DEFAULT_SEEDS = {"adbench": (0, 1, 2)}


def _versions() -> str:
    import sklearn
    import torch

    import skad

    return (
        f"skad {skad.__version__}, torch {torch.__version__}, "
        f"scikit-learn {sklearn.__version__}, Python {platform.python_version()}"
    )


def _device_name(device=None) -> str:
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda"):
        return f"cuda ({torch.cuda.get_device_name(torch.device(device))})"
    return str(device)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


@dataclass(kw_only=True)
class Plan:
    """The jobs of one benchmark run and how they run.

    Parameters
    ----------
    suite : str
    jobs : list
        :class:`~skad.benchmark._protocol.EvalJob` or
        :class:`~skad.benchmark._speed.SpeedJob` objects.
    threads : int
        Torch threads per job.
    threads_reason : str
        How ``threads`` was chosen (for the report).
    isolate : bool, default=True
        Each job in a child process.
    timeout : float or None, default=None
        Seconds per job (needs ``isolate``).
    n_jobs : int, default=1
        Jobs at the same time.
    """

    csv_name = "results.csv"
    jobs_per_process = None
    desc = "datasets x detectors"

    suite: str
    jobs: list
    threads: int
    threads_reason: str
    isolate: bool = True
    timeout: float | None = None
    n_jobs: int = 1

    def execute(self, output=None, *, resume=True, retry_failed=False, progress=True):
        """Run the jobs; returns one record per job, in the order of the jobs.

        ``output``'s CSV receives each record as its job finishes; with
        ``resume`` the jobs already in it are not run again (``retry_failed``
        re-runs the failed ones).
        """
        csv_path = Path(output) / self.csv_name if output is not None else None
        return run_jobs(
            self.jobs,
            csv_path=csv_path,
            timeout=self.timeout if self.isolate else None,
            threads=self.threads,
            isolate=self.isolate,
            progress=progress,
            resume=resume,
            retry_failed=retry_failed,
            n_jobs=self.n_jobs,
            jobs_per_process=self.jobs_per_process,
            desc=self.desc,
        )

    def threads_text(self) -> str:
        """Threads, wait policy and processes, as in the report."""
        policy = os.environ.get("OMP_WAIT_POLICY", "PASSIVE")
        where = (
            f"each job in a child process, {self.n_jobs} at a time"
            if self.isolate
            else "jobs in this process"
        )
        return (
            f"{self.threads} torch thread(s) per job ({self.threads_reason}); "
            f"OMP_WAIT_POLICY={policy}; {where}"
        )

    def report(self, records, output=None, **options) -> str:
        """Write the report files under ``output``; return the terminal text."""
        raise NotImplementedError


@dataclass(kw_only=True)
class EvalPlan(Plan):
    """Plan of an accuracy run: tasks x seeds x detectors (see :func:`run`)."""

    tasks: list = field(default_factory=list)
    specs: list = field(default_factory=list)
    seeds: list = field(default_factory=list)
    setting: str = "unsupervised"
    label_fraction: float = 0.1
    max_samples: int = 10_000
    test_size: float = 0.3

    @classmethod
    def build(
        cls,
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
        isolate=True,
        n_jobs=1,
    ):
        """Resolve suite, detectors, seeds and threads (arguments of :func:`run`)."""
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
        options = dict(
            setting=setting,
            label_fraction=float(label_fraction),
            max_samples=max_samples,
            test_size=test_size,
        )
        jobs = [
            EvalJob(suite_name, task, spec, seed, threads=n_threads, **options)
            for task in tasks
            for seed in seeds
            for spec in specs
        ]
        return cls(
            suite=suite_name,
            jobs=jobs,
            threads=n_threads,
            threads_reason=reason,
            isolate=isolate,
            timeout=timeout,
            n_jobs=n_jobs,
            tasks=tasks,
            specs=specs,
            seeds=seeds,
            **options,
        )

    def summarize(self, records, baseline="IsolationForest") -> dict:
        """:func:`~skad.benchmark.summarize` in the plan's detector and dataset
        order."""
        return summarize(
            [r.as_dict() for r in records],
            baseline=baseline,
            detectors=[s.name for s in self.specs],
            datasets=[t.name for t in self.tasks],
        )

    def meta(self, records, summary) -> dict:
        """The header lines of ``summary.md``."""
        subsampled = sorted(
            {
                f"{r.dataset} ({r.n_samples_original} -> {r.n_samples})"
                for r in records
                if r.n_samples_original
                and r.n_samples
                and r.n_samples_original > r.n_samples
            }
        )
        semi = self.setting == "semi-supervised"
        meta = {
            "suite": self.suite,
            "setting": self.setting
            + (f" (label fraction {self.label_fraction})" if semi else ""),
            "datasets": f"{len(self.tasks)}"
            + (
                f" in groups {', '.join(summary['groups'])}"
                if summary["groups"]
                else ""
            ),
            "detectors": ", ".join(s.name for s in self.specs),
            "seeds": " ".join(map(str, self.seeds)),
            "subsampled": f"to {self.max_samples} rows (stratified): "
            + "; ".join(subsampled)
            if subsampled
            else "none",
            "split": f"stratified {1 - self.test_size:.0%}/{self.test_size:.0%}, "
            "StandardScaler on the training rows, hyper-parameters = defaults",
            "timeout": f"{self.timeout:g} s per job"
            if self.timeout and self.isolate
            else "none",
            "threads": self.threads_text(),
            "device": _device_name(),
            "versions": _versions(),
            "date": _now(),
        }
        failures = [
            [r.dataset, r.detector, r.seed, r.status, (r.error or "")[:160]]
            for r in records
            if r.status != "ok"
        ]
        if failures:
            meta["_failures"] = failures
        return meta

    def report(
        self, records, output=None, *, baseline="IsolationForest", plots=True
    ) -> str:
        """Write ``summary.md`` (and the plots) under ``output``; return the
        overall table with a title line, as the command line prints it."""
        summary = self.summarize(records, baseline)
        out_dir = Path(output) if output is not None else None
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            markdown = to_markdown(summary, self.meta(records, summary))
            (out_dir / "summary.md").write_text(markdown + "\n")
            if plots:
                write_plots(summary, out_dir)
        text = (
            f"\nskad benchmark - suite {self.suite}, setting {self.setting}, seeds "
            f"{' '.join(map(str, self.seeds))}, {len(self.tasks)} datasets; "
            f"{self.threads_text()}\n{overall_table(summary)}"
        )
        if out_dir is not None:
            text += f"\n\nResults: {out_dir / 'results.csv'}, {out_dir / 'summary.md'}"
        return text


@dataclass(kw_only=True)
class SpeedPlan(Plan):
    """Plan of the speed suite (see :func:`run_speed`); every measurement
    runs in a fresh child process."""

    csv_name = "speed.csv"
    jobs_per_process = 1
    desc = "speed measurements"

    device: str = "cpu"

    @classmethod
    def build(
        cls,
        *,
        detectors=None,
        threads=None,
        device=None,
        timeout=1800.0,
        isolate=True,
        **sizes,
    ):
        """Resolve threads and device; ``sizes`` go to :func:`speed_jobs`."""
        import torch

        if threads is None:
            n_threads, reason = 1, "default of the speed suite"
        else:
            n_threads, reason = resolve_threads(threads)
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        jobs = speed_jobs(
            detectors=detectors, threads=n_threads, device=str(device), **sizes
        )
        return cls(
            suite="speed",
            jobs=jobs,
            threads=n_threads,
            threads_reason=reason,
            isolate=isolate,
            timeout=timeout,
            device=str(device),
        )

    def meta(self) -> dict:
        """The header lines of ``speed.md``."""
        return {
            "machine": f"{_cpu_name()}, {os.cpu_count()} logical CPUs; "
            f"device {_device_name(self.device)}",
            "threads": self.threads_text(),
            "versions": _versions(),
            "date": _now(),
        }

    def report(self, records, output=None, **options) -> str:
        """Write ``speed.md`` under ``output``; return it."""
        text = speed_markdown(records, self.meta())
        if output is not None:
            out = Path(output)
            out.mkdir(parents=True, exist_ok=True)
            (out / "speed.md").write_text(text)
        return text


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

    Returns
    -------
    records : list of dict or pandas.DataFrame
        One per job in the order datasets x seeds x detectors, columns as in
        :data:`FIELDS` (the fields of :class:`EvalRecord`).

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
    )
    records = plan.execute(
        output, resume=resume, retry_failed=retry_failed, progress=progress
    )
    plan.report(records, output)
    return _as_table(records, plan.jobs[0].record_type.columns(), as_frame)
