"""skad.export_onnx: onnxruntime scores equal skad's, for every detector."""

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.ensemble import IsolationForest
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

import skad
from tests._helpers import ConvTeacher, seeded

pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
pytest.importorskip("skl2onnx")
ort = pytest.importorskip("onnxruntime")

#: Parity bound of issue #19: 1e-5 relative (with an absolute floor of 1e-5
#: times the largest score, for scores that cross zero).
RTOL = 1e-5

SETTINGS = {
    "AnoMem": dict(max_iter=3),
    "DeepSAD": dict(max_iter=3),
    "DeepSVDD": dict(max_iter=3),
    "DiscriminatorGuidedGAN": dict(max_iter=3, n_transforms=4),
    "ESAD": dict(max_iter=3),
    "ReverseDistillation": dict(max_iter=3, pretrain_epochs=2),
    "SLA2P": dict(max_iter=3, n_transforms=8, projection_dim=8),
}
DETECTORS = sorted(SETTINGS)


def _session(model):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def assert_parity(onnx_scores, skad_scores, scale):
    np.testing.assert_allclose(onnx_scores, skad_scores, rtol=RTOL, atol=RTOL * scale)


@pytest.fixture(scope="module")
def rows():
    """Training rows and 10,000 held-out rows (5% scattered anomalies) with
    very different column scales."""
    rng = np.random.default_rng(0)
    d = 8
    basis = rng.normal(size=(3, d))
    scales = 10.0 ** rng.uniform(-1, 2, size=d)

    def make(n):
        return (rng.normal(size=(n, 3)) @ basis + 0.3 * rng.normal(size=(n, d))) * (
            scales
        )

    X_test = make(10_000)
    X_test[::20] = rng.uniform(-6, 6, size=(500, d)) * scales
    return make(600), X_test


@pytest.fixture(scope="module")
def exported(rows, tmp_path_factory):
    """(pipeline, session) per detector: StandardScaler + detector, exported
    once to a file and loaded from it by onnxruntime."""
    X_train, _ = rows
    cache = {}

    def get(name):
        if name not in cache:
            det = getattr(skad, name)(device="cpu", random_state=0, **SETTINGS[name])
            pipe = make_pipeline(StandardScaler(), det).fit(X_train)
            path = tmp_path_factory.mktemp("onnx") / f"{name}.onnx"
            skad.export_onnx(pipe, path)
            options = ort.SessionOptions()
            options.log_severity_level = 3
            session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
            cache[name] = pipe, session
        return cache[name]

    return get


@pytest.mark.parametrize("name", DETECTORS)
def test_pipeline_parity_batch_10000_and_1(name, rows, exported):
    _, X_test = rows
    pipe, session = exported(name)
    expected = pipe.score_samples(X_test)
    scale = np.abs(expected).max()
    scores, decision, predict = session.run(None, {"X": X_test})
    assert scores.dtype == np.float64 and scores.shape == (10_000,)
    assert_parity(scores, expected, scale)
    np.testing.assert_allclose(
        decision, pipe.decision_function(X_test), rtol=RTOL, atol=RTOL * scale
    )
    assert predict.dtype == np.int64
    # labels agree except (at most) for rows within the parity bound of offset_
    clear = np.abs(decision) > 2 * RTOL * scale
    np.testing.assert_array_equal(predict[clear], pipe.predict(X_test)[clear])
    for i in range(0, 10_000, 997):  # batch size 1, normal rows and anomalies
        (one,) = session.run(["score_samples"], {"X": X_test[i : i + 1]})
        assert one.shape == (1,)
        assert_parity(one, expected[i : i + 1], scale)


def test_detector_alone_and_graph_interface(rows, tmp_path):
    X_train, X_test = rows
    det = skad.DeepSVDD(device="cpu", random_state=0, max_iter=3).fit(X_train)
    path = tmp_path / "deep_svdd.onnx"
    model = skad.export_onnx(det, str(path))
    assert path.exists()
    graph = model.graph
    assert [i.name for i in graph.input] == ["X"]
    assert [o.name for o in graph.output] == [
        "score_samples",
        "decision_function",
        "predict",
    ]
    dims = graph.input[0].type.tensor_type.shape.dim
    assert not dims[0].HasField("dim_value") and dims[1].dim_value == 8
    session = _session(model)
    expected = det.score_samples(X_test)
    (scores,) = session.run(["score_samples"], {"X": X_test})
    assert_parity(scores, expected, np.abs(expected).max())
    (one,) = session.run(["score_samples"], {"X": X_test[:1]})
    assert_parity(one, expected[:1], np.abs(expected).max())


def test_unsupported_steps_and_estimators_raise(rows):
    X_train, _ = rows
    det = skad.DeepSVDD(device="cpu", random_state=0, max_iter=2)
    pipe = make_pipeline(FunctionTransformer(np.log1p), det).fit(np.abs(X_train))
    with pytest.raises(ValueError, match="skl2onnx could not convert"):
        skad.export_onnx(pipe)
    forest = make_pipeline(StandardScaler(), IsolationForest()).fit(X_train)
    with pytest.raises(TypeError, match="skad detector"):
        skad.export_onnx(forest)


# ----------------------------------------------------------- image modes
IMAGE_DETECTORS = {
    "ReverseDistillation": lambda: skad.ReverseDistillation(
        teacher=seeded(ConvTeacher()), latent_dim=8, max_iter=2
    ),
    "AnoMem": lambda: skad.AnoMem(
        n_prototypes=8, hidden_layer_sizes=(8, 16, 16), max_iter=2
    ),
    "DiscriminatorGuidedGAN": lambda: skad.DiscriminatorGuidedGAN(
        max_iter=2, n_transforms=2
    ),
}


@pytest.mark.parametrize("name", sorted(IMAGE_DETECTORS))
def test_image_mode_parity(name):
    X, y = load_digits(return_X_y=True)
    X = X.reshape(-1, 1, 8, 8) / 16.0
    det = IMAGE_DETECTORS[name]().set_params(device="cpu", random_state=0)
    det.fit(X[y == 0][:80])
    session = _session(skad.export_onnx(det))
    expected = det.score_samples(X)
    scale = np.abs(expected).max()
    (scores,) = session.run(["score_samples"], {"X": X})
    assert scores.shape == (len(X),)
    assert_parity(scores, expected, scale)
    (one,) = session.run(["score_samples"], {"X": X[-1:]})
    assert_parity(one, expected[-1:], scale)
