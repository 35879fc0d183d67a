"""skad.benchmark speed suite: jobs, records, report, and the shared runner."""

import os
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator, OutlierMixin

from skad.benchmark import DetectorSpec, SpeedJob, SpeedRecord, read_csv, run_speed
from skad.benchmark._records import BaseRecord, column
from skad.benchmark._runner import run_jobs
from skad.benchmark._speed import COMPARED, measure_sgemm, speed_jobs
from skad.benchmark._speed_report import speed_markdown

TINY = dict(
    fit_rows=256,
    score_rows=2048,
    n_features=8,
    epochs=1,
    batch_size=64,
    scoring_rows=2048,
    scoring_features=8,
    scoring_fit_rows=128,
    scoring_epochs=1,
)


def test_speed_records_have_the_new_fields(tmp_path):
    kwargs = dict(
        detectors=["DeepSVDD"],
        output=tmp_path,
        isolate=False,
        progress=False,
        as_frame=False,
        **TINY,
    )
    rows = run_speed(**kwargs)
    assert [(r["detector"], r["measurement"]) for r in rows] == [
        ("DeepSVDD", "fit+score"),
        ("DeepSVDD", "score"),
    ]
    # 8 -> 64 -> 32 without biases: 2 * (8 * 64 + 64 * 32) FLOPs per row
    expected_flops = 2 * (8 * 64 + 64 * 32)
    for r in rows:
        assert r["status"] == "ok", r["error"]
        assert r["threads"] == 1 and r["device"] == "cpu" and r["score_repeats"] == 3
        assert r["flops_per_row"] == expected_flops
        assert r["sgemm_gflops"] > 0
        assert r["predicted_rows_per_s"] == pytest.approx(
            r["sgemm_gflops"] * 1e9 / expected_flops
        )
        assert r["fraction_of_prediction"] == pytest.approx(
            r["score_rows_per_cpu_s"] / r["predicted_rows_per_s"]
        )
        assert r["score_rows_per_cpu_s"] == pytest.approx(2048 / r["score_cpu_seconds"])
    fit = rows[0]
    assert fit["epochs_run"] == 1 and fit["fit_fraction_of_prediction"] > 0
    assert fit["score_first_rows_per_cpu_s"] <= fit["score_rows_per_cpu_s"]
    assert rows[1]["fit_fraction_of_prediction"] is None
    csv_rows = read_csv(tmp_path / "speed.csv", SpeedRecord)
    assert list(csv_rows[0]) == SpeedRecord.columns() and len(csv_rows) == 2
    text = (tmp_path / "speed.md").read_text()
    assert "## DeepSVDD against PyOD and DeepOD" in text
    assert "## Scoring throughput of every skad detector" in text
    assert "sgemm" in text and "% of prediction" in text
    # same runner: a second run resumes from speed.csv instead of measuring
    again = run_speed(**kwargs)
    assert [r["score_cpu_seconds"] for r in again] == pytest.approx(
        [r["score_cpu_seconds"] for r in rows], rel=1e-5
    )


class _GradScore(OutlierMixin, BaseEstimator):
    """A detector whose per-chunk score takes a gradient (like SLA2P)."""

    _score_chunk_size = 16

    def fit(self, X, y=None):
        self.device_ = torch.device("cpu")
        self.weight_ = torch.ones(np.shape(X)[1])
        return self

    def _score(self, X):
        w = self.weight_.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad((X @ w).square().sum(), w)
        return X @ grad

    def score_samples(self, X):
        with torch.enable_grad():
            X = torch.as_tensor(np.asarray(X), dtype=torch.float32)
            return -self._score(X).detach().numpy()


def test_flops_unavailable_is_a_note_not_a_failure():
    job = SpeedJob(DetectorSpec("GradScore", _GradScore), "score", 4, 64, 512, 1,
                   None, 1, "cpu")  # fmt: skip
    record = job.execute()
    assert record.status == "ok" and record.score_rows_per_cpu_s > 0
    assert record.flops_per_row is None and record.predicted_rows_per_s is None
    assert record.note.startswith("FLOPs unavailable: RuntimeError")
    assert "FLOPs unavailable" in speed_markdown([record])


def _record(detector, measurement="fit+score", fit=None, score=None, **extra):
    return SpeedRecord(
        detector=detector,
        measurement=measurement,
        status="ok",
        fit_rows=100,
        epochs=10,
        batch_size=256,
        score_rows=1000,
        n_features=64,
        fit_cpu_seconds=1.0,
        score_cpu_seconds=1.0,
        fit_rows_per_cpu_s=fit,
        score_rows_per_cpu_s=score,
        **extra,
    )


@pytest.mark.parametrize(
    "skad_rates, verdicts", [((25, 90), ("met", "met")), ((15, 70), ("NOT", "NOT"))]
)
def test_report_states_targets_against_the_faster_peer(skad_rates, verdicts):
    records = [
        _record("DeepSVDD", fit=skad_rates[0], score=skad_rates[1]),
        _record("PyOD-DeepSVDD", fit=10, score=10),
        _record("DeepOD-DeepSVDD", fit=5, score=5),
    ]
    text = speed_markdown(records)
    fit, score = skad_rates[0] / 10, skad_rates[1] / 10
    assert f"fit {fit:.2f}x (target 2x: {verdicts[0]}" in text
    assert f"scoring {score:.2f}x (target 8x: {verdicts[1]}" in text
    (verdict,) = [x for x in text.splitlines() if x.startswith("skad.DeepSVDD vs")]
    assert "first pass" not in verdict  # not measured in these records
    for r in records:
        r.score_first_rows_per_cpu_s = r.score_rows_per_cpu_s / 2
    assert f"on the first pass {score:.2f}x." in speed_markdown(records)


def test_report_flags_detectors_far_below_their_prediction():
    slow = _record("Slow", "score", score=1e4, flops_per_row=1e3,
                   predicted_rows_per_s=1e5, fraction_of_prediction=0.1)  # fmt: skip
    fast = _record("Fast", "score", score=5e4, flops_per_row=1e3,
                   predicted_rows_per_s=1e5, fraction_of_prediction=0.5)  # fmt: skip
    lines = speed_markdown([slow, fast]).splitlines()
    (slow_line,) = [line for line in lines if line.startswith("| Slow")]
    (fast_line,) = [line for line in lines if line.startswith("| Fast")]
    assert "10x below prediction" in slow_line and "10.0%" in slow_line
    assert "below" not in fast_line and "50.0%" in fast_line
    # fastest first
    assert lines.index(fast_line) < lines.index(slow_line)


def test_speed_jobs_come_from_the_registry():
    from skad import all_estimators

    jobs = speed_jobs(**TINY)
    scored = [j.spec.name for j in jobs if j.measurement == "score"]
    assert scored == [name for name, _ in all_estimators()]
    compared = {j.spec.name: j.spec for j in jobs if j.measurement == "fit+score"}
    assert "DeepSVDD" in compared and set(compared) <= set(COMPARED)
    skad_est = compared["DeepSVDD"](0)
    assert skad_est.hidden_layer_sizes == (64,) and skad_est.latent_dim == 32
    assert skad_est.max_iter == 1 and skad_est.batch_size == 64
    if "PyOD-DeepSVDD" in compared:
        peer = compared["PyOD-DeepSVDD"](0)
        assert peer.params == {"hidden_neurons": [64, 32], "epochs": 1,
                               "batch_size": 64}  # fmt: skip
        assert peer.random_state == 0
    # old names of the comparison still select it
    old = speed_jobs(detectors=["skad.DeepSVDD"], **TINY)
    assert [(j.spec.name, j.measurement) for j in old] == [
        ("DeepSVDD", "fit+score"),
        ("DeepSVDD", "score"),
    ]
    with pytest.raises(ValueError, match="Unknown detector"):
        speed_jobs(detectors=["NoSuchDetector"])


def test_sgemm_rate_is_positive():
    assert measure_sgemm("cpu", sizes=(64,), repeats=1) > 0


def test_cli_speed_suite_prints_the_report(tmp_path, monkeypatch, capsys):
    from skad.benchmark.__main__ import main

    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    argv = ["--suite", "speed", "--in-process", "--quiet", "--detectors", "ESAD"]
    argv += ["--scoring-rows", "1024", "--scoring-features", "4"]
    assert main([*argv, "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "# skad speed suite" in out and "| ESAD |" in out
    assert (tmp_path / "speed.csv").exists() and (tmp_path / "speed.md").exists()


# -------------------------------------------------- the runner is generic
@dataclass
class _PidRecord(BaseRecord):
    KEY = ("name",)

    name: str | None = column()
    status: str | None = column()
    pid: int | None = column(int)
    error: str | None = column()


@dataclass
class _PidJob:
    record_type = _PidRecord

    name: str

    label = "pid"

    def key(self):
        return (self.name,)

    def record(self, **values):
        return _PidRecord(name=self.name, **values)

    def execute(self, cache=None):
        return self.record(status="ok", pid=os.getpid())


def test_runner_runs_any_job_type_in_child_processes():
    """Speed jobs replace their process after each job: ``jobs_per_process``."""
    records = run_jobs(
        [_PidJob("a"), _PidJob("b"), _PidJob("c")],
        threads=1,
        progress=False,
        jobs_per_process=2,
    )
    assert [r.name for r in records] == ["a", "b", "c"]
    a, b, c = (r.pid for r in records)
    assert a == b != c and os.getpid() not in (a, c)
