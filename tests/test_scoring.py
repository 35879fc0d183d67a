"""The one scoring path: a row's score is the same bits however it is scored.

Every forward pass runs on a chunk of one fixed shape (the last chunk is
zero-padded), so the score of a row cannot depend on the rows it is scored
with, on its position, on the number of rows, on the torch thread count or on
the input dtype. These tests compare with ``np.array_equal`` (no tolerance):
equality is what the design guarantees, on any CPU. They use more rows than
one chunk, so that rows are scored at different positions of different
chunks.
"""

from __future__ import annotations

import inspect
import logging

import numpy as np
import pytest
import torch
from sklearn.base import clone

from skad import AnoMem, DiscriminatorGuidedGAN, ReverseDistillation, _engine
from tests._helpers import ConvTeacher, data, fast_instances, fitted, seeded

INSTANCES = fast_instances()
#: Smaller chunks than the default so that 150 rows span several chunks.
CHUNK = 64
N_ROWS = 150


def _name(est) -> str:
    return type(est).__name__


def _fitted_vector(est):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N_ROWS, 12)) @ rng.normal(size=(12, 12))
    est = clone(est).fit(X)
    est._score_chunk_size = CHUNK
    return est, rng.normal(size=(N_ROWS, 12)) @ rng.normal(size=(12, 12))


def _image_instances():
    fast = dict(device="cpu", random_state=0)
    return [
        ReverseDistillation(teacher=seeded(ConvTeacher()), max_iter=2, **fast),
        AnoMem(max_iter=2, **fast),
        DiscriminatorGuidedGAN(max_iter=2, **fast),
    ]


def _fitted_image(est):
    rng = np.random.default_rng(1)
    images = rng.normal(size=(N_ROWS, 1, 8, 8))
    est = clone(est).fit(images)
    est._score_chunk_size = CHUNK
    return est, rng.normal(size=(N_ROWS, 1, 8, 8))


def _check_invariance(est, X):
    full = est.score_samples(X)
    rng = np.random.default_rng(2)
    # (a) each row alone (a sample of rows from every chunk position)
    for i in rng.choice(len(X), size=25, replace=False):
        assert np.array_equal(est.score_samples(X[i : i + 1]), full[i : i + 1]), i
    # (b) random subsets
    for size in (2, 37, 100):
        idx = np.sort(rng.choice(len(X), size=size, replace=False))
        assert np.array_equal(est.score_samples(X[idx]), full[idx]), size
    # (c) a shuffled order
    perm = rng.permutation(len(X))
    assert np.array_equal(est.score_samples(X[perm]), full[perm])
    # (d) one torch thread against two
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = est.score_samples(X)
        torch.set_num_threads(2)
        two = est.score_samples(X)
    finally:
        torch.set_num_threads(before)
    assert np.array_equal(one, full) and np.array_equal(two, full)
    # (e) float32 against float64 input
    X32 = X.astype(np.float32)
    assert np.array_equal(
        est.score_samples(X32), est.score_samples(X32.astype(np.float64))
    )
    # decision_function and predict go through the same path
    assert np.array_equal(est.decision_function(X[perm]), (full - est.offset_)[perm])


@pytest.mark.parametrize("estimator", INSTANCES, ids=_name)
def test_scores_are_batch_invariant(estimator):
    _check_invariance(*_fitted_vector(estimator))


@pytest.mark.parametrize("estimator", _image_instances(), ids=_name)
def test_image_scores_are_batch_invariant(estimator):
    _check_invariance(*_fitted_image(estimator))


def test_reverse_distillation_anomaly_map_is_batch_invariant():
    est, X = _fitted_image(_image_instances()[0])
    full = est.anomaly_map(X)
    assert full.shape == (N_ROWS, 8, 8)
    assert np.array_equal(est.anomaly_map(X[7:8]), full[7:8])
    perm = np.random.default_rng(3).permutation(N_ROWS)
    assert np.array_equal(est.anomaly_map(X[perm]), full[perm])


@pytest.mark.parametrize("estimator", INSTANCES, ids=_name)
def test_fitted_modules_stay_float32_in_eval_mode(estimator):
    est, _ = _fitted_vector(estimator)
    for module in est._fitted_modules().values():
        assert not module.training
        for t in [*module.parameters(), *module.buffers()]:
            if t.is_floating_point():
                assert t.dtype == torch.float32


def test_narrow_dtypes_score_like_float64():
    """int8 and float16 input score like the same values in float64."""
    est, _ = _fitted_vector(INSTANCES[0])
    X = np.random.default_rng(4).integers(-3, 4, size=(N_ROWS, 12))
    expected = est.score_samples(X.astype(np.float64))
    assert np.array_equal(est.score_samples(X.astype(np.float16)), expected)


# ---------------------------------------------------------------------------
# Chunks: fixed shape, bounded memory, out-of-memory retries
# ---------------------------------------------------------------------------


def _oom():
    return _engine._OOM_ERRORS[0]("CUDA out of memory (fake)")


def _use_chunks(monkeypatch, est, size):
    """Score in chunks of ``size`` rows (instead of SCORE_CHUNK_SIZE) so the
    chunking is exercised on small data by every detector."""
    monkeypatch.setattr(est, "_score_chunk_size", size, raising=False)


def test_default_scoring_chunk_is_bounded():
    default = inspect.signature(_engine.predict_in_chunks).parameters["chunk_size"]
    assert default.default == _engine.SCORE_CHUNK_SIZE <= 2**16


@pytest.mark.parametrize("estimator", INSTANCES, ids=_name)
def test_scoring_is_chunked_in_one_fixed_shape(estimator, monkeypatch):
    est = fitted(estimator)
    X = data(2 * 32 + 5, 4, seed=7)
    _use_chunks(monkeypatch, est, 32)
    expected = est.score_samples(X)
    seen = []
    score = est._score

    def spy(Xb):
        seen.append((tuple(Xb.shape), Xb.dtype))
        return score(Xb)

    monkeypatch.setitem(vars(est), "_score", spy)
    s = est.score_samples(X)
    # every forward pass has the same shape: the last chunk is zero-padded
    assert seen == [((32, 4), torch.float32)] * 3
    np.testing.assert_array_equal(s, expected)


@pytest.mark.parametrize("estimator", INSTANCES, ids=_name)
def test_out_of_memory_while_scoring_retries_smaller_chunks(
    estimator, monkeypatch, caplog
):
    est = fitted(estimator)
    X = data(100, 4, seed=8)
    expected = est.score_samples(X)
    score = est._score

    def flaky(Xb):
        if Xb.shape[0] > 20:
            raise _oom()
        return score(Xb)

    monkeypatch.setitem(vars(est), "_score", flaky)
    _use_chunks(monkeypatch, est, 64)
    with caplog.at_level(logging.WARNING, logger="skad"):
        got = est.score_samples(X)
    # a halved chunk is another shape: equal up to float32 rounding only
    # (documented in predict_in_chunks)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert "retrying with chunks of 16 rows" in caplog.text


def test_predict_in_chunks_retry_keeps_fixed_shapes():
    """Every chunk is padded to the current chunk size, and an out-of-memory
    error halves it until the chunk fits."""
    shapes = []

    def fn(Xb):
        shapes.append(Xb.shape[0])
        if Xb.shape[0] > 100:
            raise _oom()
        return Xb.sum(dim=1)

    X = data(1000, 3, seed=9)
    out = _engine.predict_in_chunks(fn, X, torch.device("cpu"), chunk_size=1024)
    np.testing.assert_allclose(out, X.sum(axis=1), rtol=1e-5)
    assert shapes[:5] == [1024, 512, 256, 128, 64]
    assert set(shapes[4:]) == {64}  # fixed shape: the last chunk is padded
    assert out.dtype == np.float64 and out.shape == (1000,)


def test_predict_in_chunks_gives_up_at_one_row():
    def fn(Xb):
        raise _oom()

    with pytest.raises(_engine._OOM_ERRORS[0]):
        _engine.predict_in_chunks(
            fn, data(10, 2), torch.device("cpu"), chunk_size=8
        )


def test_predict_in_chunks_other_errors_are_not_retried():
    calls = []

    def fn(Xb):
        calls.append(Xb.shape[0])
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        _engine.predict_in_chunks(fn, data(10, 2), torch.device("cpu"))
    assert calls == [_engine.SCORE_CHUNK_SIZE]




def test_narrow_dtypes_are_not_copied_whole():
    """float16 / int8 input is converted chunk by chunk: scoring it needs far
    less memory than a float64 copy of the input (issue #20)."""
    import tracemalloc

    est, _ = _fitted_vector(INSTANCES[0])
    X = np.random.default_rng(5).normal(size=(200_000, 12)).astype(np.float16)
    full_copy = X.shape[0] * X.shape[1] * 8  # 19 MB as float64
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        scores = est.score_samples(X)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert scores.shape == (X.shape[0],)
    # the scores themselves (float64, twice: anomaly and its negation) plus
    # one chunk; a whole-input copy would need full_copy bytes
    assert peak < full_copy / 2, (peak, full_copy)
