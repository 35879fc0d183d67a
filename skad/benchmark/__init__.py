"""The skad benchmark: which detector wins on which data, at what cost.

Run it as ``python -m skad.benchmark`` (or ``skad-benchmark``), or from
Python with :func:`run` (accuracy suites) and :func:`run_speed` (the speed
suite). The protocol (splits, settings, seeds, scaling, metrics, timeouts,
threads) is described in the README.

Modules: ``_protocol`` (splits, :class:`EvalJob`, :class:`EvalRecord`),
``_thresholds`` (F1 at the ``contamination="auto"`` and true-contamination
thresholds), ``_speed`` (:class:`SpeedJob`, :class:`SpeedRecord`, sgemm and
FLOPs), ``_records`` (columns and CSV of typed records), ``_runner`` (child
processes, timeouts, resumption), ``_plans`` (:class:`EvalPlan`,
:class:`SpeedPlan`: jobs, execution, report), ``_run`` (:func:`run`,
:func:`run_speed`), ``_registry`` and ``_adapters`` (detectors by name),
``_suites`` (tasks), ``_summary`` (aggregation, repeated detectors),
``_conclusion`` (best skad detector against the best baseline), ``_report``
(Markdown tables), ``_plots`` (PNG plots), ``choose`` (the "Which
detector?" page), ``__main__`` (the command line, the only place that
prints besides ``choose``).

Examples
--------
>>> from skad.benchmark import run
>>> rows = run("synthetic", detectors=["IsolationForest", "KNN"],
...            isolate=False, progress=False, as_frame=False)
>>> sorted({(r["detector"], r["status"]) for r in rows})
[('IsolationForest', 'ok'), ('KNN', 'ok')]
"""

from __future__ import annotations

from skad.benchmark._adapters import (
    DeepODAdapter,
    DeepODSemiSupervisedAdapter,
    PyODAdapter,
)
from skad.benchmark._baselines import KNN
from skad.benchmark._plans import EvalPlan, SpeedPlan
from skad.benchmark._protocol import FIELDS, EvalJob, EvalRecord, prepare_split
from skad.benchmark._records import read_csv
from skad.benchmark._registry import VARIANTS, DetectorSpec, get_registry, select
from skad.benchmark._report import summarize, to_markdown
from skad.benchmark._run import run, run_speed
from skad.benchmark._speed import SpeedJob, SpeedRecord
from skad.benchmark._suites import Task, get_tasks

__all__ = [
    "FIELDS",
    "KNN",
    "DeepODAdapter",
    "DeepODSemiSupervisedAdapter",
    "DetectorSpec",
    "EvalJob",
    "EvalPlan",
    "EvalRecord",
    "PyODAdapter",
    "SpeedJob",
    "SpeedPlan",
    "SpeedRecord",
    "Task",
    "VARIANTS",
    "get_registry",
    "get_tasks",
    "prepare_split",
    "read_csv",
    "run",
    "run_speed",
    "select",
    "summarize",
    "to_markdown",
]
