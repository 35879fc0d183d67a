"""The accuracy protocol: splits, one job per (dataset, detector, seed), its record.

:func:`prepare_split` applies the protocol (subsample, stratified split,
setting) to one dataset; an :class:`EvalJob` fits one detector on it inside a
``StandardScaler`` pipeline and returns an :class:`EvalRecord`, whose fields
are the columns of ``results.csv``.
"""

from __future__ import annotations

import logging
import time
import traceback
import warnings
from dataclasses import dataclass

import numpy as np

from skad.benchmark._records import BaseRecord, column
from skad.benchmark._thresholds import threshold_metrics, training_scores

__all__ = ["EvalJob", "EvalRecord", "FIELDS", "SETTINGS", "SplitCache", "prepare_split"]

logger = logging.getLogger("skad.benchmark")

SETTINGS = ("unsupervised", "one-class", "semi-supervised")


@dataclass
class EvalRecord(BaseRecord):
    """One row of ``results.csv``: a (dataset, detector, seed, setting) job.

    ``status`` is ``"ok"``, ``"failed"`` or ``"timeout"``; the metrics and
    times are None unless it is ``"ok"``. ``n_labeled`` counts the labels the
    detector received (0 for a detector whose ``fit`` takes no labels).
    ``f1_auto``, ``f1_true`` and ``auto_flagged`` (the last columns, absent
    from files of earlier versions) are the F1 of ``predict`` at the
    label-free ``contamination="auto"`` threshold and at the true training
    contamination, and the share of test rows the former flags, from the same
    fitted model (:mod:`skad.benchmark._thresholds`); None when they could
    not be computed (``error`` then says why while ``status`` stays ``"ok"``).
    """

    KEY = ("dataset", "detector", "seed", "setting")

    suite: str | None = column()
    group: str | None = column()
    dataset: str | None = column()
    detector: str | None = column()
    seed: int | None = column(int)
    setting: str | None = column()
    status: str | None = column()
    roc_auc: float | None = column(float, ".6f")
    average_precision: float | None = column(float, ".6f")
    fit_seconds: float | None = column(float)
    score_seconds: float | None = column(float)
    n_samples: int | None = column(int)
    n_samples_original: int | None = column(int)
    n_features: int | None = column(int)
    n_train: int | None = column(int)
    n_train_anomalies: int | None = column(int)
    n_test: int | None = column(int)
    n_test_anomalies: int | None = column(int)
    n_labeled: int | None = column(int)
    label_fraction: float | None = column(float)
    threads: int | None = column(int)
    error: str | None = column()
    f1_auto: float | None = column(float, ".6f")
    f1_true: float | None = column(float, ".6f")
    auto_flagged: float | None = column(float, ".6f")


#: Columns of ``results.csv``, one row per (dataset, detector, seed, setting).
FIELDS = EvalRecord.columns()


def prepare_split(
    X,
    y,
    seed,
    setting="unsupervised",
    label_fraction=0.1,
    max_samples=10_000,
    test_size=0.3,
):
    """Apply the protocol's subsampling, split and setting to one dataset.

    Returns a dict with ``X_train``, ``X_test``, ``y_train`` (truth of the
    rows the detector is fitted on), ``y_test``, ``labels`` (semi-supervised
    labels in {0, -1} for the training rows, else None) and the sizes.

    * more than ``max_samples`` rows: stratified, seeded subsample;
    * stratified ``1 - test_size`` / ``test_size`` split with
      ``random_state=seed``;
    * ``one-class``: training rows restricted to the normal ones;
    * ``semi-supervised``: ``label_fraction`` of the training anomalies (at
      least one) labelled -1 via :func:`skad.utils.semi_supervised_labels`.
    """
    from sklearn.model_selection import train_test_split

    from skad.utils import semi_supervised_labels

    if setting not in SETTINGS:
        raise ValueError(f"setting must be one of {SETTINGS}, got {setting!r}.")
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y).astype(np.int64)
    n_original = X.shape[0]
    if max_samples and n_original > max_samples:
        X, _, y, _ = train_test_split(
            X, y, train_size=int(max_samples), stratify=y, random_state=seed
        )
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=test_size, stratify=y, random_state=seed
    )
    labels = None
    if setting == "one-class":
        keep = y_train == 0
        X_train, y_train = X_train[keep], y_train[keep]
    elif setting == "semi-supervised":
        labels = semi_supervised_labels(y_train, label_fraction, random_state=seed)
    return {
        "X_train": X_train,
        "X_test": X_test,
        "y_train": y_train,
        "y_test": y_test,
        "labels": labels,
        "n_samples": int(X.shape[0]),
        "n_samples_original": int(n_original),
        "n_features": int(X.shape[1]),
        "n_train": int(X_train.shape[0]),
        "n_train_anomalies": int(y_train.sum()),
        "n_test": int(X_test.shape[0]),
        "n_test_anomalies": int(y_test.sum()),
        "n_labeled": 0 if labels is None else int((labels == -1).sum()),
    }


class SplitCache:
    """The split of the last dataset a process prepared.

    Jobs run dataset by dataset, so consecutive jobs share a split; one cache
    lives in each process that runs jobs (never at module level).
    """

    def __init__(self):
        self._key = None
        self._split = None

    def get(self, job: EvalJob) -> dict:
        """:func:`prepare_split` of ``job``'s dataset, seed and setting."""
        key = (
            job.task.name,
            job.seed,
            job.setting,
            job.label_fraction,
            job.max_samples,
            job.test_size,
        )
        if key != self._key:
            self._key = self._split = None
            X, y = job.task.load()
            self._split = prepare_split(
                X,
                y,
                job.seed,
                job.setting,
                job.label_fraction,
                job.max_samples,
                job.test_size,
            )
            self._key = key
        return self._split


def _error_text(exc) -> str:
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ").strip()
    return text[:400]


@dataclass
class EvalJob:
    """Fit one detector on one dataset's split for one seed; score the test rows.

    Parameters
    ----------
    suite : str
    task : Task
        The dataset (loaded lazily).
    spec : DetectorSpec
        The detector; ``spec(seed)`` builds it.
    seed : int
    setting : {"unsupervised", "one-class", "semi-supervised"}
    label_fraction : float
    max_samples : int
    test_size : float
    threads : int
        Torch threads of the process that runs it (recorded).
    """

    record_type = EvalRecord

    suite: str
    task: object
    spec: object
    seed: int
    setting: str = "unsupervised"
    label_fraction: float = 0.1
    max_samples: int = 10_000
    test_size: float = 0.3
    threads: int = 1

    @property
    def label(self) -> str:
        """Progress-bar text."""
        return f"{self.task.name} | {self.spec.name}"

    def key(self) -> tuple:
        return EvalRecord.key_of(self.record(status=None))

    def record(self, **values) -> EvalRecord:
        """A record of this job with its identifying columns filled in."""
        semi = self.setting == "semi-supervised"
        return EvalRecord(
            suite=self.suite,
            group=self.task.group,
            dataset=self.task.name,
            detector=self.spec.name,
            seed=self.seed,
            setting=self.setting,
            label_fraction=self.label_fraction if semi else None,
            threads=self.threads,
            **values,
        )

    def execute(self, cache: SplitCache | None = None) -> EvalRecord:
        """Run the job; never raises (a failure is a ``"failed"`` record)."""
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        from skad.metrics import average_precision, roc_auc
        from skad.utils import accepts_labels

        record = self.record()
        try:
            split = (cache or SplitCache()).get(self)
        except Exception as exc:  # noqa: BLE001 - reported as a failed row
            record.status, record.error = "failed", "data: " + _error_text(exc)
            return record
        for name, value in split.items():
            if name.startswith("n_") and name != "n_labeled":
                setattr(record, name, value)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                detector = self.spec(self.seed)
                pipe = Pipeline([("scaler", StandardScaler()), ("detector", detector)])
                fit_params = {}
                if split["labels"] is not None and accepts_labels(detector):
                    fit_params["detector__labels"] = split["labels"]
                    record.n_labeled = split["n_labeled"]
                else:
                    record.n_labeled = 0
                t0 = time.perf_counter()
                pipe.fit(split["X_train"], **fit_params)
                record.fit_seconds = time.perf_counter() - t0
                t0 = time.perf_counter()
                scores = np.asarray(
                    pipe.score_samples(split["X_test"]), dtype=np.float64
                )
                record.score_seconds = time.perf_counter() - t0
            if scores.shape != (split["n_test"],):
                raise ValueError(f"score_samples returned shape {scores.shape}.")
            if not np.isfinite(scores).all():
                raise ValueError(
                    f"score_samples returned {int((~np.isfinite(scores)).sum())} "
                    "non-finite scores."
                )
            record.roc_auc = roc_auc(split["y_test"], scores)
            record.average_precision = average_precision(split["y_test"], scores)
            record.status = "ok"
        except Exception as exc:  # noqa: BLE001 - reported as a failed row
            logger.debug("job failed:\n%s", traceback.format_exc())
            record.status, record.error = "failed", _error_text(exc)
            return record
        # after the ROC AUC, from the same fitted model: thresholds and F1
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                train_scores = training_scores(pipe, split["X_train"])
            rate = split["n_train_anomalies"] / split["n_train"]
            metrics = threshold_metrics(split["y_test"], scores, train_scores, rate)
            for name, value in metrics.items():
                setattr(record, name, value)
        except Exception as exc:  # noqa: BLE001 - the ROC AUC stands
            logger.debug("thresholds failed:\n%s", traceback.format_exc())
            record.error = "f1: " + _error_text(exc)
        return record
