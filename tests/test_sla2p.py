"""Tests of skad.SLA2P (random-projection pseudo classes + perturbation)."""

import copy

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from skad._device import has_tensors
from skad._validation import InvalidParameterError
from skad.metrics import roc_auc
from skad.sla2p import SLA2P, gaussian_projections
from skad.sla2p import _projections as projections_module
from skad.sla2p._net import l2_normalize
from tests._helpers import make_planted

FAST = dict(device="cpu", random_state=0, n_transforms=16, projection_dim=16)


def _autograd_score(det, X):
    """Reference: SLA2P's scoring before issue #15 (autograd on the
    BatchNorm classifier), kept here to pin the analytic scoring to it."""
    net = det.classifier_
    net.eval()
    X = det._prepare(X)
    n = X.shape[0]
    total = X.new_zeros(n)
    for ts, z, target in det._pairs(X):
        if det.perturbation and det.epsilon > 0:
            z = z.detach().requires_grad_(True)
            with torch.enable_grad():
                logits = net(z)
                pred = logits.argmax(1)
                ce = F.cross_entropy(logits, pred, reduction="sum")
                (grad,) = torch.autograd.grad(ce, z)
            z = (z + det.epsilon * grad).detach()
        with torch.no_grad():
            p = torch.softmax(net(z), dim=1)
            err = ((p - F.one_hot(target, p.shape[1]).to(p.dtype)) ** 2).mean(dim=1)
        total += err.reshape(n, ts.shape[0]).sum(1)
    return total / det.n_transforms


def _reference_scores(det, X):
    """``score_samples`` through the reference, on the same padded chunks."""
    return -det._map_chunks(lambda c: _autograd_score(det, c), X, grad=True)


def _assert_same_scores(new, ref):
    """float32 agreement with the autograd scores.

    The two differ by rounding only: BatchNorm folded into the Linear
    layers, the projection folded into the first layer, a different order
    of float32 sums. Almost every row agrees to a few float32 ulps. A pair
    whose hidden pre-activation is within ~1e-6 of zero can take the other
    LeakyReLU slope in one of the two (the gradient is discontinuous
    there); that row then moves by up to ~1e-4 relative, as the autograd
    float32 scores themselves do against a float64 evaluation.
    """
    rel = np.abs(new - ref) / np.abs(ref)
    assert np.mean(rel <= 2e-6) >= 0.99, np.quantile(rel, [0.5, 0.99, 1.0])
    np.testing.assert_allclose(new, ref, rtol=1e-3, atol=0)


@pytest.fixture(scope="module")
def planted_data():
    return make_planted(n_normal=300, n_anomaly=15, n_features=8, seed=0)


@pytest.fixture(scope="module")
def fitted(planted_data):
    X, _ = planted_data
    return SLA2P(device="cpu", random_state=0).fit(X)


def test_learns_planted_anomalies(fitted, planted_data):
    X, y = planted_data
    assert roc_auc(y, fitted.score_samples(X)) >= 0.95
    assert fitted.train_accuracy_ > fitted.acc_threshold


def test_perturbation_off_is_the_sla_ablation(fitted, planted_data):
    X, y = planted_data
    with_step = fitted.score_samples(X)
    det = copy.deepcopy(fitted).set_params(perturbation=False)  # same classifier
    without = det.score_samples(X)
    assert roc_auc(y, without) >= 0.95
    assert not np.allclose(with_step, without)
    # epsilon=0 is the same as no perturbation
    det.set_params(perturbation=True, epsilon=0.0)
    np.testing.assert_allclose(det.score_samples(X), without, rtol=1e-12)
    # a perturbation can only move the softmax away from the prediction:
    # on average the error grows
    assert (-with_step).mean() >= (-without).mean()


def test_fit_without_perturbation(planted_data):
    X, y = planted_data
    det = SLA2P(perturbation=False, device="cpu", random_state=0).fit(X)
    assert roc_auc(y, det.score_samples(X)) >= 0.95


def test_stops_at_accuracy_threshold(planted_data):
    X, _ = planted_data
    low = SLA2P(acc_threshold=0.3, **FAST).fit(X)
    high = SLA2P(acc_threshold=0.9, max_iter=15, **FAST).fit(X)
    assert low.train_accuracy_ > 0.3
    assert np.mean(low.accuracy_curve_) == pytest.approx(low.train_accuracy_)
    assert low.n_iter_ < high.n_iter_
    assert len(low.loss_curve_) == low.n_iter_


def test_deterministic_and_row_independent(planted_data):
    X, _ = planted_data
    a = SLA2P(max_iter=3, **FAST).fit(X)
    b = SLA2P(max_iter=3, **FAST).fit(X)
    s = a.score_samples(X)
    np.testing.assert_array_equal(s, b.score_samples(X))
    # a row's score does not depend on the other rows in its chunk
    np.testing.assert_allclose(a.score_samples(X[:7]), s[:7], rtol=0, atol=1e-10)
    np.testing.assert_allclose(a.score_samples(X[::-1])[::-1], s, rtol=0, atol=1e-10)
    c = SLA2P(max_iter=3, **{**FAST, "random_state": 1}).fit(X)
    assert a.projection_seed_ != c.projection_seed_


def test_batchnorm_in_eval_mode_when_scoring(planted_data):
    X, _ = planted_data
    det = SLA2P(max_iter=2, **FAST).fit(X)
    det.classifier_.train()  # even if a user left it in train mode
    s = det.score_samples(X[:5])
    assert not any(m.training for m in det.classifier_.modules())
    np.testing.assert_array_equal(s, det.score_samples(X[:5]))


def test_projections_are_seeded_blockwise_and_gaussian():
    W = gaussian_projections(7, range(4), 30, 12)
    assert W.shape == (4, 30, 12)
    part = gaussian_projections(7, [1, 3], 30, 12, features=(5, 17))
    torch.testing.assert_close(part, W[[1, 3], 5:17], rtol=0, atol=0)
    odd = gaussian_projections(7, [2], 30, 12, features=(3, 4))  # odd offsets
    torch.testing.assert_close(odd, W[[2], 3:4], rtol=0, atol=0)
    big = gaussian_projections(0, range(8), 200, 64).reshape(-1)
    assert abs(float(big.mean())) < 0.01
    assert abs(float(big.std()) - 1.0) < 0.01
    assert not torch.equal(gaussian_projections(8, [0], 30, 12), W[:1])
    # float64 generation agrees with float32 to float32 precision
    W64 = gaussian_projections(7, range(4), 30, 12, dtype=torch.float64)
    torch.testing.assert_close(W64.float(), W)


def test_memory_bound_for_large_k(monkeypatch, planted_data):
    """With K * n_features * d above the budget no tensor of all projections
    is ever generated, and the regenerated blocks are the cached matrices."""
    X = planted_data[0][:60]
    sizes = []
    real = projections_module.gaussian_projections

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        sizes.append(out.numel())
        return out

    monkeypatch.setattr(projections_module, "gaussian_projections", spy)
    for budget in (
        2 * 8 * 16,
        3 * 16,
    ):  # whole (9 x 16) matrices; 3 rows of one
        sizes.clear()
        monkeypatch.setattr(projections_module, "_PROJECTION_BUDGET", budget)
        det = SLA2P(max_iter=1, **FAST).fit(X)
        streamed = det.score_samples(X)
        assert sizes and max(sizes) <= budget
        assert det not in projections_module._PROJECTION_CACHE
        # the same model scored through the cache of all projections
        monkeypatch.setattr(projections_module, "_PROJECTION_BUDGET", 2**24)
        # blockwise and whole-matrix float32 products round differently
        np.testing.assert_allclose(det.score_samples(X), streamed, rtol=1e-6)


def test_large_k_full_tensor_never_allocated(monkeypatch):
    """K=1024 projections of 32 features to 32 dims (1 M entries) with a
    64 k budget: every generated block stays within the budget."""
    sizes = []
    real = projections_module.gaussian_projections

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        sizes.append(out.numel())
        return out

    monkeypatch.setattr(projections_module, "_PROJECTION_BUDGET", 2**16)
    monkeypatch.setattr(projections_module, "gaussian_projections", spy)
    X = np.random.default_rng(0).normal(size=(20, 32))
    det = SLA2P(
        n_transforms=1024,
        projection_dim=32,
        hidden_layer_sizes=(32,),
        max_iter=1,
        batch_size=16,
        device="cpu",
        random_state=0,
    ).fit(X)
    assert np.isfinite(det.offset_)
    assert max(sizes) <= 2**16 < 1024 * 32 * 32


def test_persistence_never_stores_projections(planted_data, tmp_path):
    import pickle

    import skad

    X, _ = planted_data
    det = SLA2P(max_iter=2, **FAST).fit(X)
    s = det.score_samples(X[:10])
    assert det in projections_module._PROJECTION_CACHE
    # the classifier is the only fitted attribute that holds tensors
    assert [k for k, v in vars(det).items() if has_tensors(v)] == ["classifier_"]
    again = pickle.loads(pickle.dumps(det))
    np.testing.assert_array_equal(again.score_samples(X[:10]), s)
    skad.save(det, tmp_path / "m.skad")
    np.testing.assert_array_equal(
        skad.load(tmp_path / "m.skad").score_samples(X[:10]), s
    )


def test_early_stopping_records_validation(planted_data):
    X, _ = planted_data
    det = SLA2P(early_stopping=True, max_iter=3, acc_threshold=1.0, **FAST).fit(X)
    assert len(det.validation_scores_) == det.n_iter_
    assert np.all(np.isfinite(det.validation_scores_))


def test_sphere_normalisation_keeps_the_norm(planted_data):
    X, _ = planted_data
    sphere = SLA2P(max_iter=2, **FAST).fit(X)
    assert sphere.normalize == "sphere"
    assert sphere.norm_scale_ == pytest.approx(np.median(np.linalg.norm(X, axis=1)))
    l2 = SLA2P(normalize=True, max_iter=2, **FAST).fit(X)
    assert not hasattr(l2, "norm_scale_")
    # plain L2 normalisation cannot tell x from 5 x; the sphere lift can
    np.testing.assert_allclose(l2.score_samples(X[:5]), l2.score_samples(5 * X[:5]))
    assert np.all(sphere.score_samples(X[:5]) > sphere.score_samples(5 * X[:5]))


def test_huge_rows_score_finite_and_are_outliers(planted_data):
    """A row scaled by 1e30 (finite in float32, its float32 norm is not)
    keeps its direction through the normalisation: a finite score from the
    network itself, and an outlier under the default sphere lift."""
    X, _ = planted_data
    huge = np.vstack([X[:3] * 1e30, -X[3:6] * 1e30])
    sphere = SLA2P(max_iter=2, **FAST).fit(X)
    anomaly = sphere._map_chunks(sphere._score, huge)
    assert np.all(np.isfinite(anomaly))
    np.testing.assert_array_equal(sphere.predict(huge), [-1] * 6)
    # plain L2 normalisation is scale-free, even at 1e30
    l2 = SLA2P(normalize=True, max_iter=2, **FAST).fit(X)
    np.testing.assert_allclose(
        l2.score_samples(huge[:3]), l2.score_samples(X[:3]), rtol=1e-5
    )
    raw = SLA2P(normalize=False, max_iter=2, **FAST).fit(X)
    assert np.all(np.isfinite(raw._map_chunks(raw._score, huge)))


def test_l2_normalize_keeps_the_direction_of_huge_rows():
    X = torch.tensor([[3.0, -4.0, 0.0], [0.0, 0.0, 0.0], [1e-3, 2e-3, 2e-3]])
    expected = torch.tensor([[0.6, -0.8, 0.0], [0.0, 0.0, 0.0], [1 / 3, 2 / 3, 2 / 3]])
    torch.testing.assert_close(l2_normalize(X), expected)
    torch.testing.assert_close(l2_normalize(X * 1e30), expected)  # norm: inf
    # rows whose norm is finite take the plain division, bit for bit
    torch.testing.assert_close(
        l2_normalize(X),
        X / X.norm(dim=1, keepdim=True).clamp_min(1e-12),
        rtol=0,
        atol=0,
    )


def test_normalize_false_and_hidden_sizes(planted_data):
    X, _ = planted_data
    det = SLA2P(normalize=False, hidden_layer_sizes=(32,), max_iter=2, **FAST)
    s = det.fit(X).score_samples(X)
    assert np.all(np.isfinite(s))
    linears = [m for m in det.classifier_.modules() if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [32, 16]


# ---------------------------------------------------------------------------
# Scoring without autograd (issue #15, item 6)
# ---------------------------------------------------------------------------

SCORING_CASES = {
    "sphere": dict(),
    "l2": dict(normalize=True),
    "raw": dict(normalize=False, epsilon=3.0),
    "no-perturbation": dict(perturbation=False),
    "epsilon-0": dict(epsilon=0.0),
    "large-epsilon": dict(epsilon=20.0),
    "one-hidden": dict(hidden_layer_sizes=(32,)),  # h = 2 d: g_z, then g_z A
    "gram": dict(hidden_layer_sizes=(24, 20, 12)),  # h < 2 d: g_a (A^T A)
    "no-hidden": dict(hidden_layer_sizes=()),  # logits = first layer
}


@pytest.mark.parametrize("params", SCORING_CASES.values(), ids=SCORING_CASES)
def test_scores_match_the_autograd_reference(planted_data, params):
    X, _ = planted_data
    det = SLA2P(max_iter=3, **{**FAST, **params}).fit(X)
    assert det._bank().fold(det.classifier_.mlp[0].weight) is not None
    X_new = np.vstack([X, np.random.default_rng(1).normal(size=(100, 8)) * 3])
    _assert_same_scores(det.score_samples(X_new), _reference_scores(det, X_new))


def test_default_scores_match_the_autograd_reference(fitted, planted_data):
    X, _ = planted_data
    _assert_same_scores(fitted.score_samples(X), _reference_scores(fitted, X))


def test_scores_match_without_the_folded_projections(monkeypatch):
    """Wide rows (no folding: D h >= D d + d h) and projections regenerated
    block by block (no cache) take ``x W_t`` first, as the reference."""
    X, _ = make_planted(n_normal=200, n_anomaly=10, n_features=40, seed=1)
    det = SLA2P(max_iter=3, **FAST).fit(X)  # D = 41, d = 16, h = 32
    assert det._bank().fold(det.classifier_.mlp[0].weight) is None
    _assert_same_scores(det.score_samples(X), _reference_scores(det, X))
    monkeypatch.setattr(projections_module, "_PROJECTION_BUDGET", 3 * 16)
    det = SLA2P(max_iter=2, **{**FAST, "normalize": False}).fit(X[:, :8])
    assert det._bank().all(torch.device("cpu"), torch.float32) is None
    _assert_same_scores(det.score_samples(X[:, :8]), _reference_scores(det, X[:, :8]))


def test_scoring_needs_no_autograd(fitted, planted_data, monkeypatch):
    X, _ = planted_data
    assert not SLA2P._score_needs_grad
    expected = fitted.score_samples(X[:50])

    def forbidden(*args, **kwargs):
        raise AssertionError("scoring called torch.autograd.grad")

    monkeypatch.setattr(torch.autograd, "grad", forbidden)
    projections_module._PROJECTION_CACHE.pop(fitted, None)
    with torch.inference_mode():
        np.testing.assert_array_equal(fitted.score_samples(X[:50]), expected)
    # projections cached under inference_mode still serve autograd through
    # the scores (input attributions such as Integrated Gradients)
    rows = torch.tensor(X[:4], dtype=torch.float32, requires_grad=True)
    pad = rows.new_zeros(fitted._score_chunk_size - 4, X.shape[1])
    with torch.enable_grad():
        fitted._score(torch.cat([rows, pad])).sum().backward()
    assert torch.isfinite(rows.grad).all() and rows.grad.abs().sum() > 0


def test_score_exports_as_one_static_graph(planted_data):
    """``_score`` traces without data-dependent Python control flow: the
    exported graph reproduces the scores of other inputs exactly."""
    X, _ = planted_data
    det = SLA2P(max_iter=2, **FAST).fit(X)

    class Scorer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.classifier = det.classifier_

        def forward(self, chunk):
            return det._score(chunk)

    chunk = torch.tensor(X[:64], dtype=torch.float32)
    graph = torch.export.export(Scorer(), (chunk,), strict=False).module()
    other = torch.tensor(X[64:128], dtype=torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(graph(other), det._score(other), rtol=0, atol=0)
    ops = {str(node.target) for node in graph.graph.nodes}
    assert not any("grad" in op for op in ops)


# ---------------------------------------------------------------------------
# Parameters (issue #17)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        dict(hidden_layer_sizes=(-4,)),
        dict(hidden_layer_sizes=(0,)),
        dict(hidden_layer_sizes=(float("nan"), 1, 1)),
        dict(hidden_layer_sizes=(16.5, 8)),
        dict(hidden_layer_sizes=(True,)),
        dict(hidden_layer_sizes=16),
        dict(n_transforms=1),
        dict(projection_dim=0),
    ],
)
def test_invalid_parameters_raise_before_any_network(params, monkeypatch):
    def fail(*args):
        raise AssertionError("a network was built")

    monkeypatch.setattr(SLA2P, "_build_networks", fail)
    X = np.random.default_rng(0).normal(size=(40, 3))
    with pytest.raises(InvalidParameterError, match=next(iter(params))):
        SLA2P(**{**FAST, **params}).fit(X)


def test_n_transforms_is_the_number_of_pseudo_classes(planted_data):
    X, _ = planted_data
    det = SLA2P(max_iter=1, **{**FAST, "n_transforms": 5}).fit(X)
    assert det.classifier_.mlp[-1].out_features == 5
    with pytest.raises(TypeError, match="n_projections"):
        SLA2P(n_projections=8)
    # the list form of the hidden widths is accepted as well
    SLA2P(max_iter=1, hidden_layer_sizes=[8], **FAST).fit(X[:40])


def test_every_batch_size_gives_batchnorm_two_pairs():
    """A step pairs at least one row with min(n_transforms, 8) >= 2
    projections, so even batch_size=1 trains the BatchNorm classifier: no
    configuration needs to be rejected."""
    X = np.random.default_rng(0).normal(size=(20, 3))
    det = SLA2P(max_iter=1, batch_size=1, **{**FAST, "n_transforms": 2}).fit(X)
    assert np.all(np.isfinite(det.score_samples(X)))
    assert np.isfinite(det.loss_curve_[0])
