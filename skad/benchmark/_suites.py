"""Benchmark suites: named lists of tasks, each loading ``(X, y)`` lazily."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from skad import datasets

__all__ = ["Task", "adbench_suite", "demo_suite", "get_tasks", "synthetic_suite"]

#: Where ``--suite adbench`` looks when ``--data-dir`` and $SKAD_ADBENCH_DIR are
#: both unset (relative to the working directory).
DEFAULT_ADBENCH_DIRS = ("../shared/data/adbench", "data/adbench")


@dataclass
class Task:
    """One dataset of a suite.

    ``loader(**kwargs)`` returns ``(X, y)`` with y = 1 for anomalies; it must
    be picklable (a module-level function or a :func:`functools.partial` of
    one) because jobs run in a child process.
    """

    name: str
    group: str
    loader: object
    kwargs: dict = field(default_factory=dict)
    n_samples: int | None = None
    n_features: int | None = None

    def load(self):
        X, y = self.loader(**self.kwargs)
        return np.asarray(X, dtype=np.float64), np.asarray(y).astype(np.int64)


def _arrays(X, y):
    return X, y


def demo_suite():
    """The embedded ``demo`` suite (scikit-learn bundled data + synthetic)."""
    groups = {"dependency": "synthetic", "local": "synthetic"}
    return [
        Task(name, groups.get(name, "sklearn"), fn, dict(kwargs))
        for name, (fn, kwargs) in datasets.demo_tasks().items()
    ]


def synthetic_suite(n_samples=300, n_features=6):
    """A tiny synthetic suite (seconds), used by the tests and smoke runs."""
    return [
        Task(
            "blobs_tiny",
            "synthetic",
            datasets.make_blobs_task,
            {"n_samples": n_samples, "n_features": n_features, "contamination": 0.1},
        ),
        Task(
            "local_tiny",
            "synthetic",
            datasets.make_local_task,
            {"n_samples": n_samples, "n_features": n_features, "contamination": 0.1},
        ),
    ]


def resolve_data_dir(data_dir=None) -> str:
    """``data_dir``, else $SKAD_ADBENCH_DIR, else ``../shared/data/adbench``."""
    if data_dir:
        return str(data_dir)
    env = os.environ.get(datasets.ADBENCH_ENV)
    if env:
        return env
    for candidate in DEFAULT_ADBENCH_DIRS:
        if Path(candidate).is_dir():
            return candidate
    raise ValueError(
        "The adbench suite needs --data-dir (e.g. ../shared/data/adbench) or "
        f"${datasets.ADBENCH_ENV}."
    )


def adbench_suite(data_dir=None, groups=None, names=None):
    """Every ADBench ``.npz`` under ``data_dir``, filtered by group and name.

    ``names`` entries match a dataset's ``group/stem``, its stem
    (``4_breastw``) or its stem without the number prefix (``breastw``).
    """
    data_dir = resolve_data_dir(data_dir)
    entries = datasets.list_adbench(data_dir, groups)
    if names:
        wanted = set(names)

        def match(e):
            short = e["dataset"].split("_", 1)[-1] if e["dataset"][0].isdigit() else ""
            return bool({e["name"], e["dataset"], short} & wanted)

        unknown = [
            n
            for n in wanted
            if not any(
                n in (e["name"], e["dataset"])
                or (e["dataset"][0].isdigit() and n == e["dataset"].split("_", 1)[-1])
                for e in entries
            )
        ]
        if unknown:
            raise ValueError(
                f"Unknown ADBench dataset(s) {sorted(unknown)} under {data_dir!r}; "
                "see skad.datasets.list_adbench()."
            )
        entries = [e for e in entries if match(e)]
    if not entries:
        raise ValueError(f"No ADBench .npz files found under {data_dir!r}.")
    return [
        Task(
            e["name"],
            e["group"] or "ADBench",
            partial(datasets.load_adbench, e["path"]),
            {},
            e["n_samples"],
            e["n_features"],
        )
        for e in entries
    ]


def get_tasks(suite="demo", *, data_dir=None, groups=None, names=None):
    """Tasks of a suite given by name, or user data.

    ``suite`` is ``"demo"``, ``"adbench"``, ``"synthetic"``, a list of
    :class:`Task`, or a dict ``name -> (X, y)`` / ``name -> callable``.
    """
    if isinstance(suite, str):
        if suite == "demo":
            tasks = demo_suite()
        elif suite == "synthetic":
            tasks = synthetic_suite()
        elif suite == "adbench":
            return adbench_suite(data_dir, groups, names)
        else:
            raise ValueError(
                f"Unknown suite {suite!r}; use 'demo', 'adbench' or 'synthetic' "
                "(the speed suite is skad.benchmark.run_speed)."
            )
    elif isinstance(suite, dict):
        tasks = []
        for name, value in suite.items():
            if callable(value):
                tasks.append(Task(str(name), "user", value, {}))
            else:
                X, y = value
                tasks.append(Task(str(name), "user", _arrays, {"X": X, "y": y}))
    else:
        tasks = list(suite)
    if groups:
        groups = [groups] if isinstance(groups, str) else list(groups)
        tasks = [t for t in tasks if t.group in groups]
    if names:
        tasks = [t for t in tasks if t.name in set(names)]
    if not tasks:
        raise ValueError("No task selected.")
    return tasks
