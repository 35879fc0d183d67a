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

import numpy as np
import pytest
import torch
from sklearn.base import clone

from skad import AnoMem, DiscriminatorGuidedGAN, ReverseDistillation
from tests._helpers import ConvTeacher, seeded
from tests._instances import fast_instances

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
