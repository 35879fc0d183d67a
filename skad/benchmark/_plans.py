"""Plans: the jobs of one run, how they run, and their report.

Every suite goes through one pipeline: a plan (:class:`EvalPlan` for the
accuracy suites, :class:`SpeedPlan` for the speed suite) holds the jobs and
how they run; :meth:`Plan.execute` hands them to
:func:`skad.benchmark._runner.run_jobs` (child processes, timeouts, CSV,
resumption) and :meth:`Plan.report` writes the report files and returns the
text the command line prints. Nothing here prints.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import platform
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

from skad.benchmark._conclusion import conclusion_markdown
from skad.benchmark._protocol import SETTINGS, EvalJob, EvalRecord
from skad.benchmark._registry import detector_info, select
from skad.benchmark._report import overall_table, summarize, to_markdown, write_plots
from skad.benchmark._runner import resolve_threads, run_jobs
from skad.benchmark._speed import speed_jobs
from skad.benchmark._speed_report import speed_markdown
from skad.benchmark._suites import get_tasks

__all__ = ["EvalPlan", "Plan", "SpeedPlan"]

logger = logging.getLogger("skad.benchmark")

DEFAULT_SEEDS = {"adbench": (0, 1, 2)}

#: File of an output directory with the threads, device, versions and date of
#: the last invocation that ran jobs there (the header of ``summary.md``).
RUN_INFO = "run-info.json"


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
class Plan(ABC):
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
    n_ran: int = field(default=0, init=False, repr=False)

    def execute(self, output=None, *, resume=True, retry_failed=False, progress=True):
        """Run the jobs; returns one record per job, in the order of the jobs.

        ``output``'s CSV receives each record as its job finishes; with
        ``resume`` the jobs already in it are not run again (``retry_failed``
        re-runs the failed ones). :attr:`n_ran` counts the jobs that ran.
        """
        csv_path = Path(output) / self.csv_name if output is not None else None
        stats = {}
        records = run_jobs(
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
            stats=stats,
        )
        self.n_ran = stats["ran"]
        return records

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

    @abstractmethod
    def report(self, records, output=None, **options) -> str:
        """Write the report files under ``output``; return the terminal text."""


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

    def execute(self, output=None, **options):
        """:meth:`Plan.execute`, each record as the CSV stores it (floats
        rounded to their column's format), so that a report is the same
        whether its jobs just ran or were read back from the file."""
        records = super().execute(output, **options)
        return [EvalRecord.from_row(r.to_row()) for r in records]

    def summarize(self, records, baseline="IsolationForest") -> dict:
        """:func:`~skad.benchmark.summarize` in the plan's detector and dataset
        order, from the values as the CSV stores them."""
        return summarize(
            [EvalRecord.from_row(r.to_row()).as_dict() for r in records],
            baseline=baseline,
            detectors=[s.name for s in self.specs],
            datasets=[t.name for t in self.tasks],
            info=detector_info([s.name for s in self.specs], self.specs),
        )

    def run_info(self, output=None) -> dict:
        """Threads, device, versions and date of the last invocation that ran
        jobs into ``output`` (kept in its ``run-info.json``), so that a report
        re-written without new jobs stays byte for byte the same."""
        path = Path(output) / RUN_INFO if output is not None else None
        if path is not None and self.n_ran == 0 and path.exists():
            try:
                return json.loads(path.read_text())
            except (OSError, ValueError):
                logger.warning("%s is unreadable: written anew", path)
        info = {
            "threads": self.threads_text(),
            "device": _device_name(),
            "versions": _versions(),
            "jobs last run": _now(),
        }
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(info, indent=1) + "\n")
        return info

    def meta(self, records, summary, run_info=None) -> dict:
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
            **(run_info if run_info is not None else self.run_info()),
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
        files = []
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            info = self.run_info(out_dir)
            markdown = to_markdown(summary, self.meta(records, summary, info))
            (out_dir / "summary.md").write_text(markdown + "\n")
            files = [out_dir / self.csv_name, out_dir / "summary.md"]
            if plots:
                files += [Path(p) for p in write_plots(summary, out_dir)]
            files.append(out_dir / RUN_INFO)
        text = (
            f"\nskad benchmark - suite {self.suite}, setting {self.setting}, seeds "
            f"{' '.join(map(str, self.seeds))}, {len(self.tasks)} datasets; "
            f"{self.threads_text()}\n{overall_table(summary)}\n\n"
            f"{conclusion_markdown(summary, self.setting).rstrip()}"
        )
        if files:
            text += "\n\nFiles written:\n" + "\n".join(f"  {p}" for p in files)
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
