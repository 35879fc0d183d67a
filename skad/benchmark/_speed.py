"""``--suite speed``: throughput of skad's detectors against this machine's peak.

Two kinds of :class:`SpeedJob`, run by the same runner as the accuracy jobs
(each in a fresh child process with the configured threads):

* ``fit+score``: skad's :class:`~skad.DeepSVDD` and the registry's
  ``PyOD-DeepSVDD`` / ``DeepOD-DeepSVDD`` (through their adapters) with the
  same widths (``n_features -> hidden -> latent``), epochs, batch size and
  device: fit on ``fit_rows`` Gaussian rows, score ``score_rows`` rows.
* ``score``: every skad detector with its defaults, fitted on a small set for
  a few epochs, then scoring ``score_rows`` rows.

Every job also measures the float32 matrix-product rate (sgemm) of its
process and, for skad detectors, the forward-pass FLOPs per scored row
(:class:`torch.utils.flop_counter.FlopCounterMode` on one scoring chunk).
Their quotient is the rows/s the detector would reach if it ran at the matmul
peak; the record holds the measured fraction of that prediction. Rates are
per CPU second of the measuring process (:func:`time.process_time`), which a
busy shared machine disturbs less than wall time; wall times are recorded too.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
import traceback
import warnings
from dataclasses import dataclass

import numpy as np

from skad.benchmark._records import BaseRecord, column

__all__ = [
    "SpeedJob",
    "SpeedRecord",
    "forward_flops",
    "measure_sgemm",
    "speed_jobs",
]

logger = logging.getLogger("skad.benchmark")

#: skad.DeepSVDD / the faster peer, by CPU time (issue #15).
TARGETS = {"fit": 2.0, "score": 8.0}
#: A detector this many times below its predicted rows/s is flagged.
SLOW_FACTOR = 5.0
#: Training FLOPs per row as a multiple of the forward pass (forward +
#: backward, the usual estimate: the backward pass costs about two forwards).
FIT_FLOPS_FACTOR = 3.0
#: The DeepSVDD comparison: skad's detector and its peers in the registry.
COMPARED = ("DeepSVDD", "PyOD-DeepSVDD", "DeepOD-DeepSVDD")
#: Names of the comparison before the registry names were used.
_ALIASES = {
    "skad.DeepSVDD": "DeepSVDD",
    "PyOD.DeepSVDD": "PyOD-DeepSVDD",
    "DeepOD.DeepSVDD": "DeepOD-DeepSVDD",
}


@dataclass
class SpeedRecord(BaseRecord):
    """One row of ``speed.csv``: one detector's measurement.

    ``measurement`` is ``"fit+score"`` (DeepSVDD against its peers) or
    ``"score"`` (every skad detector). Rates: fit rows/s = ``fit_rows`` x
    epochs run / seconds, score rows/s = ``score_rows`` / seconds, each per
    wall second and per CPU second; the scoring times are the best (least
    CPU time) of ``score_repeats`` passes over the same rows
    (``score_first_rows_per_cpu_s``: the first pass, after a 1,000-row
    warm-up).
    ``flops_per_row`` is the forward pass of one scored row;
    ``predicted_rows_per_s`` = ``sgemm_gflops`` x 1e9 / ``flops_per_row``;
    ``fraction_of_prediction`` = score rows per CPU second / prediction (the
    ``fit_`` versions assume training costs
    :data:`FIT_FLOPS_FACTOR` forward passes per row).
    """

    KEY = (
        "detector",
        "measurement",
        "n_features",
        "fit_rows",
        "epochs",
        "batch_size",
        "score_rows",
        "score_repeats",
        "threads",
        "device",
    )

    suite: str | None = column(default="speed")
    detector: str | None = column()
    measurement: str | None = column()
    status: str | None = column()
    device: str | None = column()
    threads: int | None = column(int)
    n_features: int | None = column(int)
    fit_rows: int | None = column(int)
    epochs: int | None = column(int)
    epochs_run: int | None = column(int)
    batch_size: int | None = column(int)
    score_rows: int | None = column(int)
    score_repeats: int | None = column(int)
    fit_seconds: float | None = column(float)
    fit_cpu_seconds: float | None = column(float)
    score_seconds: float | None = column(float)
    score_cpu_seconds: float | None = column(float)
    fit_rows_per_s: float | None = column(float)
    fit_rows_per_cpu_s: float | None = column(float)
    score_rows_per_s: float | None = column(float)
    score_rows_per_cpu_s: float | None = column(float)
    score_first_rows_per_cpu_s: float | None = column(float)
    sgemm_gflops: float | None = column(float)
    flops_per_row: float | None = column(float)
    predicted_rows_per_s: float | None = column(float)
    fraction_of_prediction: float | None = column(float)
    fit_predicted_rows_per_s: float | None = column(float)
    fit_fraction_of_prediction: float | None = column(float)
    note: str | None = column()
    error: str | None = column()


# ------------------------------------------------------------ measurements
def measure_sgemm(device="cpu", sizes=(256, 512, 1024), repeats=3):
    """Best float32 matrix-product rate of this process, in GFLOP/s.

    Square products of each size, ``repeats`` timings of about 1 GFLOP each;
    on the CPU per CPU second of the process (:func:`time.process_time`,
    threads as configured), on a GPU per wall second.

    Parameters
    ----------
    device : str or torch.device, default="cpu"
    sizes : tuple of int, default=(256, 512, 1024)
    repeats : int, default=3

    Returns
    -------
    gflops : float
        The best rate over sizes and repeats.
    """
    import torch

    device = torch.device(device)
    gpu = device.type == "cuda"
    clock = time.perf_counter if gpu else time.process_time
    best = 0.0
    for n in sizes:
        a = torch.randn(n, n, device=device)
        b = torch.randn(n, n, device=device)
        out = torch.empty(n, n, device=device)
        flops = 2.0 * n**3
        iters = max(1, math.ceil(1e9 / flops))
        torch.mm(a, b, out=out)  # warm-up
        for _ in range(repeats):
            if gpu:
                torch.cuda.synchronize(device)
            t0 = clock()
            for _ in range(iters):
                torch.mm(a, b, out=out)
            if gpu:
                torch.cuda.synchronize(device)
            elapsed = clock() - t0
            if elapsed > 0:
                best = max(best, flops * iters / elapsed / 1e9)
    return best


def forward_flops(estimator, n_features):
    """Matmul FLOPs per row of one scoring chunk of a fitted skad detector.

    Counts with :class:`torch.utils.flop_counter.FlopCounterMode` what one
    call of the detector's scoring hook (``_score``, the base class's
    per-chunk forward pass, on ``_score_chunk_size`` zero rows under
    :func:`torch.no_grad`) computes, divided by the chunk's rows. The counter
    sees matrix products and convolutions only (not element-wise work).

    Returns
    -------
    flops : float
        Raises when the forward pass cannot run under ``no_grad`` (a score
        that takes gradients).
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    chunk = int(estimator._score_chunk_size)
    X = torch.zeros(chunk, n_features, device=estimator.device_)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        estimator._score(X)
    return counter.get_total_flops() / chunk


def _data(n, d, seed):
    return np.random.default_rng(seed).standard_normal((n, d))


def _short_error(exc) -> str:
    return f"{type(exc).__name__}: {exc}".replace("\n", " ").strip()[:300]


# -------------------------------------------------------------------- jobs
@dataclass
class SpeedJob:
    """Time one detector's fit and scoring (see the module docstring).

    Parameters
    ----------
    spec : DetectorSpec
        The detector, with the parameters of the measurement.
    measurement : {"fit+score", "score"}
    n_features, fit_rows, score_rows : int
    epochs : int
        Epochs the spec trains for (recorded; the spec sets them).
    batch_size : int or None
        Training batch size the spec sets (None: the detector's default).
    threads : int
    device : str
    seed : int, default=0
    score_repeats : int, default=3
        Scoring passes; the least CPU time counts (as :mod:`timeit` does:
        the least disturbed pass on a shared machine).
    """

    record_type = SpeedRecord

    spec: object
    measurement: str
    n_features: int
    fit_rows: int
    score_rows: int
    epochs: int
    batch_size: int | None
    threads: int
    device: str
    seed: int = 0
    score_repeats: int = 3

    @property
    def label(self) -> str:
        """Progress-bar text."""
        return f"{self.measurement} | {self.spec.name}"

    def key(self) -> tuple:
        return SpeedRecord.key_of(self.record(status=None))

    def record(self, **values) -> SpeedRecord:
        """A record of this job with its identifying columns filled in."""
        return SpeedRecord(
            detector=self.spec.name,
            measurement=self.measurement,
            device=self.device,
            threads=self.threads,
            n_features=self.n_features,
            fit_rows=self.fit_rows,
            epochs=self.epochs,
            batch_size=self.batch_size,
            score_rows=self.score_rows,
            score_repeats=self.score_repeats,
            **values,
        )

    def execute(self, cache=None) -> SpeedRecord:
        """Measure; never raises (a failure is a ``"failed"`` record)."""
        record = self.record()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._measure(record)
            record.status = "ok"
        except Exception as exc:  # noqa: BLE001 - reported as a failed row
            logger.debug("speed job failed:\n%s", traceback.format_exc())
            record.status, record.error = "failed", _short_error(exc)
        return record

    def _measure(self, record):
        X_fit = _data(self.fit_rows, self.n_features, 0)
        X_score = _data(self.score_rows, self.n_features, 1)
        est = self.spec(self.seed)
        t0, c0 = time.perf_counter(), time.process_time()
        est.fit(X_fit)
        record.fit_seconds = time.perf_counter() - t0
        record.fit_cpu_seconds = time.process_time() - c0
        record.epochs_run = int(getattr(est, "n_iter_", self.epochs))
        est.score_samples(X_score[:1000])  # warm-up (allocations, lazy set-up)
        for i in range(max(1, self.score_repeats)):
            t0, c0 = time.perf_counter(), time.process_time()
            scores = est.score_samples(X_score)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            if i == 0:
                record.score_first_rows_per_cpu_s = self.score_rows / cpu
            if record.score_cpu_seconds is None or cpu < record.score_cpu_seconds:
                record.score_seconds, record.score_cpu_seconds = wall, cpu
            if np.shape(scores) != (self.score_rows,):
                raise ValueError(f"score_samples returned shape {np.shape(scores)}.")
            del scores
        fit_rows = self.fit_rows * record.epochs_run
        record.fit_rows_per_s = fit_rows / record.fit_seconds
        record.fit_rows_per_cpu_s = fit_rows / record.fit_cpu_seconds
        record.score_rows_per_s = self.score_rows / record.score_seconds
        record.score_rows_per_cpu_s = self.score_rows / record.score_cpu_seconds
        record.sgemm_gflops = measure_sgemm(self.device)
        if hasattr(est, "_score") and hasattr(est, "_score_chunk_size"):
            try:
                record.flops_per_row = forward_flops(est, self.n_features)
            except Exception as exc:  # noqa: BLE001 - e.g. a score with gradients
                record.note = "FLOPs unavailable: " + _short_error(exc)[:200]
        _predict(record)


def _predict(record) -> None:
    """Fill in the predicted rates and the measured fractions."""
    if not record.flops_per_row or not record.sgemm_gflops:
        return
    peak = record.sgemm_gflops * 1e9
    record.predicted_rows_per_s = peak / record.flops_per_row
    record.fraction_of_prediction = (
        record.score_rows_per_cpu_s / record.predicted_rows_per_s
    )
    if record.measurement == "fit+score":
        record.fit_predicted_rows_per_s = peak / (
            FIT_FLOPS_FACTOR * record.flops_per_row
        )
        record.fit_fraction_of_prediction = (
            record.fit_rows_per_cpu_s / record.fit_predicted_rows_per_s
        )


def _comparison_spec(spec, *, hidden, latent, epochs, batch_size, device):
    """``spec`` with the comparison's widths, epochs, batch size and device."""
    if spec.kind == "skad":
        params = {
            "hidden_layer_sizes": (hidden,),
            "latent_dim": latent,
            "max_iter": epochs,
            "batch_size": batch_size,
            "device": device,
        }
    elif spec.kind == "pyod":  # PyOD picks its device itself
        peer = {"hidden_neurons": [hidden, latent], "epochs": epochs}
        params = {**spec.params, "params": {**peer, "batch_size": batch_size}}
    elif spec.kind == "deepod":
        peer = {"hidden_dims": str(hidden), "rep_dim": latent, "epochs": epochs}
        params = {
            **spec.params,
            "params": {**peer, "batch_size": batch_size},
            "device": device,
        }
    else:  # pragma: no cover - COMPARED lists only these kinds
        raise ValueError(f"No comparison settings for {spec.name!r}.")
    return dataclasses.replace(spec, params={**spec.params, **params})


def speed_jobs(
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
    threads=1,
    device="cpu",
):
    """The jobs of the speed suite.

    Parameters
    ----------
    detectors : list of str, default=None
        Registry names: those of :data:`COMPARED` get a ``fit+score`` job,
        skad detectors a ``score`` job. None = the three of the comparison
        and every skad detector.
    fit_rows, score_rows, n_features, epochs, batch_size, hidden, latent
        The DeepSVDD comparison.
    scoring_rows, scoring_features, scoring_fit_rows, scoring_epochs
        The per-detector scoring measurement (defaults otherwise).
    score_repeats : int, default=3
        Scoring passes per measurement; the least CPU time counts.
    threads : int, default=1
    device : str, default="cpu"

    Returns
    -------
    jobs : list of SpeedJob
    """
    from skad.benchmark._registry import get_registry

    reg = get_registry(variants=False)
    skad_names = [n for n, s in reg.items() if s.kind == "skad"]
    if detectors is None:
        compared = [n for n in COMPARED if n in reg]
        scored = skad_names
    else:
        names = [_ALIASES.get(n, n) for n in detectors]
        unknown = [n for n in names if n not in reg]
        if unknown:
            raise ValueError(
                f"Unknown detector(s) {unknown} for the speed suite; known: "
                f"{sorted(set(COMPARED) | set(skad_names))}."
            )
        compared = [n for n in names if n in COMPARED]
        scored = [n for n in names if n in skad_names]
    jobs = [
        SpeedJob(
            _comparison_spec(
                reg[name],
                hidden=hidden,
                latent=latent,
                epochs=epochs,
                batch_size=batch_size,
                device=device,
            ),
            "fit+score",
            n_features,
            fit_rows,
            score_rows,
            epochs,
            batch_size,
            threads,
            device,
            score_repeats=score_repeats,
        )
        for name in compared
    ]
    for name in scored:
        params = {"max_iter": scoring_epochs, "device": device}
        spec = dataclasses.replace(reg[name], params={**reg[name].params, **params})
        jobs.append(
            SpeedJob(
                spec,
                "score",
                scoring_features,
                scoring_fit_rows,
                scoring_rows,
                scoring_epochs,
                None,
                threads,
                device,
                score_repeats=score_repeats,
            )
        )
    if not jobs:
        raise ValueError("No detector selected for the speed suite.")
    return jobs
