"""skad.explain: planted anomalies, completeness, pipelines, image modes."""

import sys

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.ensemble import IsolationForest
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import (
    MinMaxScaler,
    QuantileTransformer,
    RobustScaler,
    StandardScaler,
)

import skad
from tests._helpers import ConvTeacher, seeded

pytest.importorskip("captum")
pd = pytest.importorskip("pandas")

#: Fast settings that still learn the planted data's structure.
SETTINGS = {
    "AnoMem": dict(max_iter=10),
    "DeepSAD": dict(max_iter=10),
    "DeepSVDD": dict(max_iter=10),
    "DiscriminatorGuidedGAN": dict(max_iter=10),
    "ESAD": dict(max_iter=10),
    "ReverseDistillation": dict(max_iter=10, pretrain_epochs=5),
    "SLA2P": dict(max_iter=10, n_transforms=16, projection_dim=16),
}
DETECTORS = sorted(SETTINGS)

#: SLA2P's default score perturbs each projected row along the gradient of
#: the cross-entropy at its *predicted* class: when the predicted class
#: changes along the integration path, the score jumps, and Integrated
#: Gradients (an integral of gradients) cannot account for jumps.
SLA2P_JUMPS = pytest.mark.xfail(
    strict=True,
    reason="SLA2P's score jumps where a predicted class changes; delta "
    "reports the jumps (tested without perturbation instead)",
)
COMPLETENESS = [
    pytest.param(n, marks=SLA2P_JUMPS) if n == "SLA2P" else n for n in DETECTORS
]

N_FEATURES = 8
SHIFT_SD = 6.0
#: Stated completeness tolerance (docs/explain.rst): |delta| <= 2% of
#: |score(x) - score(baseline)| with the default 64 steps (256 for
#: ReverseDistillation's max-of-map image score).
TOLERANCE = 2e-2


def planted_task(seed=0, n_train=800, n_shifted=40, d=N_FEATURES):
    """Correlated rows (3 latent factors + noise) with very different column
    scales and offsets; held-out rows get one chosen feature (cycling over
    the features) shifted by ``SHIFT_SD`` training standard deviations, up or
    down."""
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(3, d))
    scales = 10.0 ** rng.uniform(-1, 2, size=d)
    offsets = rng.normal(scale=5.0, size=d)

    def rows(n):
        z = rng.normal(size=(n, 3)) @ basis + 0.3 * rng.normal(size=(n, d))
        return z * scales + offsets

    columns = [f"sensor_{i}" for i in range(d)]
    X_train = pd.DataFrame(rows(n_train), columns=columns)
    shifted = rows(n_shifted)
    feature = np.arange(n_shifted) % d
    sign = rng.choice([-1.0, 1.0], size=n_shifted)
    sd = X_train.to_numpy().std(axis=0)
    shifted[np.arange(n_shifted), feature] += sign * SHIFT_SD * sd[feature]
    index = pd.RangeIndex(1000, 1000 + n_shifted)
    return X_train, pd.DataFrame(shifted, columns=columns, index=index), feature


@pytest.fixture(scope="module")
def task():
    return planted_task()


@pytest.fixture(scope="module")
def fitted(task):
    """One StandardScaler + detector pipeline per detector, fitted lazily."""
    X_train, _, _ = task
    cache = {}

    def get(name):
        if name not in cache:
            det = getattr(skad, name)(device="cpu", random_state=0, **SETTINGS[name])
            cache[name] = make_pipeline(StandardScaler(), det).fit(X_train)
        return cache[name]

    return get


# ----------------------------------------------------------- planted anomalies
@pytest.mark.parametrize("name", DETECTORS)
def test_shifted_feature_has_the_largest_attribution(name, task, fitted):
    """Done-when criterion of issue #19: on >= 80% of the rows whose feature j
    was shifted, feature j has the largest attribution."""
    _, X_shifted, feature = task
    attr = skad.explain(fitted(name), X_shifted)
    assert isinstance(attr, pd.DataFrame)
    assert list(attr.columns) == list(X_shifted.columns)
    assert attr.index.equals(X_shifted.index)
    values = attr.to_numpy()
    assert values.dtype == np.float64 and np.all(np.isfinite(values))
    rate = np.mean(values.argmax(axis=1) == feature)
    assert rate >= 0.8, f"{name}: shifted feature on top in {rate:.0%} of rows"


@pytest.mark.parametrize("name", COMPLETENESS)
def test_completeness(name, task, fitted):
    """Attributions sum to score(x) - score(baseline) within 2% (64 steps),
    checked against the public scores, with the median baseline mapped back
    to the user's units."""
    X_train, X_shifted, _ = task
    pipe = fitted(name)
    attr, delta = skad.explain(pipe, X_shifted, return_delta=True)
    scaler, det = pipe[0], pipe[-1]
    baseline = scaler.inverse_transform(det.training_median_[None, :])
    np.testing.assert_allclose(
        baseline[0], np.median(X_train.to_numpy(), axis=0), rtol=1e-9
    )
    baseline = pd.DataFrame(baseline, columns=X_train.columns)
    gap = pipe.score_samples(baseline)[0] - pipe.score_samples(X_shifted)
    total = attr.to_numpy().sum(axis=1)
    np.testing.assert_allclose(delta, total - gap, rtol=1e-9, atol=1e-12)
    assert np.all(np.abs(delta) <= TOLERANCE * np.abs(gap) + 1e-6)


def test_completeness_of_sla2p_without_perturbation(task):
    X_train, X_shifted, feature = task
    det = skad.SLA2P(device="cpu", random_state=0, perturbation=False)
    pipe = make_pipeline(StandardScaler(), det.set_params(**SETTINGS["SLA2P"]))
    pipe.fit(X_train)
    attr, delta = skad.explain(pipe, X_shifted, return_delta=True)
    assert np.mean(attr.to_numpy().argmax(axis=1) == feature) >= 0.8
    gap = attr.to_numpy().sum(axis=1) - delta
    assert np.all(np.abs(delta) <= TOLERANCE * np.abs(gap) + 1e-6)


def test_rows_do_not_depend_on_each_other(task, fitted):
    _, X_shifted, _ = task
    pipe = fitted("DeepSVDD")
    full = skad.explain(pipe, X_shifted).to_numpy()
    alone = np.vstack([skad.explain(pipe, X_shifted.iloc[[i]]) for i in (0, 17, 39)])
    reversed_ = skad.explain(pipe, X_shifted.iloc[::-1]).to_numpy()[::-1]
    np.testing.assert_allclose(alone, full[[0, 17, 39]], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(reversed_, full, rtol=1e-5, atol=1e-6)
    # a negatively strided (and read-only) array of scaled rows
    Z = pipe[0].transform(X_shifted)[::-1]
    Z.flags.writeable = False
    np.testing.assert_allclose(
        skad.explain(pipe[-1], Z)[::-1], full, rtol=1e-5, atol=1e-6
    )


def test_pipeline_equals_detector_on_scaled_rows(task, fitted):
    """Per-feature scaling leaves Integrated Gradients unchanged: explaining
    the pipeline on raw rows equals explaining its detector on scaled rows."""
    _, X_shifted, _ = task
    pipe = fitted("ESAD")
    a = skad.explain(pipe, X_shifted).to_numpy()
    b = skad.explain(pipe[-1], pipe[0].transform(X_shifted))
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("scaler", [MinMaxScaler(), RobustScaler()])
def test_other_per_feature_scalers(scaler, task):
    X_train, X_shifted, feature = task
    det = skad.DeepSVDD(device="cpu", random_state=0, max_iter=10)
    pipe = make_pipeline(scaler, "passthrough", det).fit(X_train.to_numpy())
    attr, delta = skad.explain(pipe, X_shifted.to_numpy(), return_delta=True)
    assert isinstance(attr, np.ndarray) and attr.shape == X_shifted.shape
    assert np.mean(attr.argmax(axis=1) == feature) >= 0.8
    assert np.all(np.abs(delta) <= TOLERANCE * np.abs(attr.sum(axis=1)) + 1e-6)


# ----------------------------------------------------------- baselines
def test_baselines(task, fitted):
    X_train, X_shifted, _ = task
    pipe = fitted("DeepSVDD")
    x = X_shifted.iloc[:3]
    mean = X_train.to_numpy().mean(axis=0)
    # "zeros" is the origin of the detector's space: the mean after scaling
    a, d_a = skad.explain(pipe, x, baseline="zeros", return_delta=True)
    b, d_b = skad.explain(pipe, x, baseline=mean, return_delta=True)
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(d_a, d_b, atol=1e-4)
    # a row equal to its baseline gets zero attributions
    same = skad.explain(
        pipe, pd.DataFrame([mean], columns=X_train.columns), baseline=mean
    )
    np.testing.assert_array_equal(same.to_numpy(), 0.0)
    c = skad.explain(pipe[-1], np.zeros((2, N_FEATURES)), baseline=0.0)
    np.testing.assert_array_equal(c, 0.0)
    with pytest.raises(ValueError, match="one row of shape"):
        skad.explain(pipe, x, baseline=np.zeros(3))
    with pytest.raises(ValueError, match="baseline must be"):
        skad.explain(pipe, x, baseline="mean")
    with pytest.raises(ValueError, match="NaN"):
        skad.explain(pipe, x, baseline=np.full(N_FEATURES, np.nan))


def test_median_baseline_needs_the_fitted_median(task):
    X_train, X_shifted, _ = task
    det = skad.DeepSVDD(device="cpu", random_state=0, max_iter=2).fit(X_train)
    np.testing.assert_allclose(det.training_median_, X_train.median().to_numpy())
    del det.training_median_  # as a model fitted before skad stored it
    with pytest.raises(ValueError, match="baseline="):
        skad.explain(det, X_shifted)
    assert skad.explain(det, X_shifted, baseline=0.0).shape == X_shifted.shape


# ----------------------------------------------------------- errors
def test_rejects_non_linear_steps_and_non_skad_estimators(task):
    X_train, X_shifted, _ = task
    det = skad.DeepSVDD(device="cpu", random_state=0, max_iter=2)
    pipe = make_pipeline(QuantileTransformer(n_quantiles=50), det).fit(X_train)
    with pytest.raises(ValueError, match="QuantileTransformer"):
        skad.explain(pipe, X_shifted)
    pipe = make_pipeline(MinMaxScaler(clip=True), det).fit(X_train)
    with pytest.raises(ValueError, match="clip=True"):
        skad.explain(pipe, X_shifted)
    forest = make_pipeline(StandardScaler(), IsolationForest()).fit(X_train)
    with pytest.raises(TypeError, match="skad detector"):
        skad.explain(forest, X_shifted)
    det.fit(X_train.to_numpy())
    with pytest.raises(ValueError, match="n_steps"):
        skad.explain(det, X_shifted.to_numpy(), n_steps=0)
    with pytest.raises(ValueError, match="features"):
        skad.explain(det, X_shifted.to_numpy()[:, :3])


class _GradientAtScoring(skad.DeepSVDD):
    """A detector whose score takes an autograd step (SLA2P did)."""

    _score_needs_grad = True


def test_scores_that_take_gradients_are_refused(task):
    X_train, X_shifted, _ = task
    det = _GradientAtScoring(device="cpu", max_iter=1).fit(X_train)
    with pytest.raises(NotImplementedError, match="_GradientAtScoring"):
        skad.explain(det, X_shifted)
    with pytest.raises(NotImplementedError, match="autograd"):
        skad.export_onnx(det)


def test_unfitted_detector():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        skad.explain(skad.DeepSVDD(), np.zeros((2, 3)))


def test_missing_captum_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "captum.attr", None)
    with pytest.raises(ImportError, match=r"skad\[explain\]"):
        skad.explain(skad.DeepSVDD(), np.zeros((2, 3)))


# ----------------------------------------------------------- image modes
@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X = X.reshape(-1, 1, 8, 8) / 16.0
    return X[y == 0][:100], X[y == 1][:4]  # train on zeros; explain ones


IMAGE_DETECTORS = {
    "ReverseDistillation": lambda: skad.ReverseDistillation(
        teacher=seeded(ConvTeacher()),
        latent_dim=8,
        sigma=1.0,
        max_iter=25,
        batch_size=32,
    ),
    "AnoMem": lambda: skad.AnoMem(
        n_prototypes=16, hidden_layer_sizes=(8, 16, 16), max_iter=3, batch_size=64
    ),
    "DiscriminatorGuidedGAN": lambda: skad.DiscriminatorGuidedGAN(
        max_iter=30, n_transforms=2
    ),
}


@pytest.mark.parametrize("name", sorted(IMAGE_DETECTORS))
def test_image_modes_return_one_map_per_image(name, digits):
    train, test = digits
    det = IMAGE_DETECTORS[name]().set_params(device="cpu", random_state=0)
    det.fit(train)
    assert det.training_median_.shape == (1, 8, 8)
    # a maximum over the anomaly map (ReverseDistillation) needs more steps
    n_steps = 256 if name == "ReverseDistillation" else 64
    maps, delta = skad.explain(det, test, n_steps=n_steps, return_delta=True)
    assert maps.shape == test.shape and maps.dtype == np.float64
    assert np.all(np.isfinite(maps))
    gap = det.score_samples(det.training_median_[None])[0] - det.score_samples(test)
    assert np.all(np.abs(delta) <= TOLERANCE * np.abs(gap) + 1e-6)


# ----------------------------------------------------------- plot helper
def test_plot_attributions(task, fitted):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _, X_shifted, feature = task
    attr = skad.explain(fitted("DeepSVDD"), X_shifted.iloc[:2])
    ax = skad.plot_attributions(attr, row=1, top=3)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert len(labels) == 3 and labels[-1] == X_shifted.columns[feature[1]]
    ax = skad.plot_attributions(attr.iloc[0], top=20)  # a Series is one row
    assert len(ax.get_yticklabels()) == N_FEATURES
    with pytest.raises(ValueError, match="imshow"):
        skad.plot_attributions(np.zeros((1, 1, 8, 8)))
    with pytest.raises(ValueError, match="feature_names"):
        skad.plot_attributions(np.zeros((1, 3)), feature_names=["a"])
    plt.close("all")


def test_plot_attributions_without_matplotlib(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match="matplotlib"):
        skad.plot_attributions(np.zeros((1, 3)))
