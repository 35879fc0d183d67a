"""skad.save / skad.load (JSON + safetensors, no pickle) and joblib round trips."""

import builtins
import json
import pickle
import zipfile

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import skad
from skad.persistence import FORMAT_VERSION, InconsistentVersionWarning
from skad.utils import accepts_labels
from tests._helpers import fast_instances

INSTANCES = fast_instances()
IDS = [type(e).__name__ for e in INSTANCES]


def _data(n=80, d=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.normal(size=(30, d))


def _fit(estimator, X):
    est = clone(estimator)
    if accepts_labels(est):
        labels = np.zeros(X.shape[0], dtype=int)
        labels[:3] = -1
        labels[3:8] = 1
        return est.fit(X, labels=labels)
    return est.fit(X)


def _rewrite(path, edit_meta=None, edit_blob=None):
    """Rewrite a saved file with an edited JSON (and/or tensors) member."""
    with zipfile.ZipFile(path) as zf:
        meta = json.loads(zf.read("skad.json"))
        blob = zf.read("tensors.safetensors")
    if edit_meta is not None:
        edit_meta(meta)
    if edit_blob is not None:
        blob = edit_blob(blob)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("skad.json", json.dumps(meta))
        zf.writestr("tensors.safetensors", blob)


@pytest.fixture
def no_pickle(monkeypatch):
    """Fail if anything unpickles while the fixture is active."""

    def refuse(*args, **kwargs):
        raise AssertionError("pickle was used")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    real_import = builtins.__import__

    def guarded_import(name, *args, **kwargs):
        if name in {"dill", "cloudpickle"}:
            raise AssertionError(f"{name} was imported while loading")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", guarded_import)


@pytest.mark.parametrize("estimator", INSTANCES, ids=IDS)
def test_save_load_round_trip(estimator, tmp_path, no_pickle):
    X, X_new = _data()
    est = _fit(estimator, X)
    path = tmp_path / "model.skad"
    skad.save(est, path)
    loaded = skad.load(path)
    assert type(loaded) is type(est)
    assert loaded.get_params() == est.get_params()
    np.testing.assert_array_equal(loaded.score_samples(X_new), est.score_samples(X_new))
    np.testing.assert_array_equal(loaded.predict(X_new), est.predict(X_new))
    assert loaded.offset_ == est.offset_
    assert loaded.n_features_in_ == est.n_features_in_
    assert loaded.loss_curve_ == est.loss_curve_
    assert loaded.device_ == est.device_


@pytest.mark.parametrize("estimator", INSTANCES, ids=IDS)
def test_joblib_round_trip(estimator, tmp_path):
    X, X_new = _data()
    est = _fit(estimator, X)
    joblib.dump(est, tmp_path / "model.joblib")
    loaded = joblib.load(tmp_path / "model.joblib")
    np.testing.assert_array_equal(loaded.score_samples(X_new), est.score_samples(X_new))


@pytest.mark.parametrize("estimator", INSTANCES, ids=IDS)
def test_trained_on_gpu_loads_on_cpu(estimator, tmp_path):
    """Simulate a GPU-trained file: the recorded device is cuda:7."""
    X, X_new = _data()
    est = _fit(estimator, X)
    path = tmp_path / "model.skad"
    skad.save(est, path)

    def to_cuda7(meta):
        meta["attributes"]["device_"] = {"__device__": "cuda:7"}

    _rewrite(path, edit_meta=to_cuda7)
    with pytest.warns(UserWarning, match="cuda:7.*loaded on the CPU"):
        loaded = skad.load(path)
    assert loaded.device_ == torch.device("cpu")
    np.testing.assert_array_equal(loaded.score_samples(X_new), est.score_samples(X_new))


def test_float64_weights_load_as_float32(tmp_path):
    """Modules always score in float32; weights stored in float64 (files
    written by skad 0.1 on a CPU) are converted on loading."""
    X, X_new = _data()
    est = skad.DeepSVDD(max_iter=2, device="cpu", random_state=0).fit(X)
    est64 = clone(est).fit(X)
    est64.network_.to(torch.float64)
    skad.save(est64, tmp_path / "m.skad")
    loaded = skad.load(tmp_path / "m.skad")
    assert next(loaded.network_.parameters()).dtype == torch.float32
    np.testing.assert_array_equal(
        loaded.score_samples(X_new), est.score_samples(X_new)
    )


def test_unfitted_round_trip_and_parameters(tmp_path):
    est = skad.DeepSVDD(hidden_layer_sizes=(7, 5), latent_dim=3, device="cpu")
    skad.save(est, tmp_path / "m.skad")
    loaded = skad.load(tmp_path / "m.skad")
    assert loaded.get_params() == est.get_params()
    assert loaded.hidden_layer_sizes == (7, 5)
    assert not hasattr(loaded, "offset_")


def test_random_state_instance_and_feature_names(tmp_path):
    pd = pytest.importorskip("pandas")
    X, _ = _data()
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    rs = np.random.RandomState(3)
    est = skad.DeepSVDD(max_iter=2, device="cpu", random_state=rs).fit(df)
    skad.save(est, tmp_path / "m.skad")
    loaded = skad.load(tmp_path / "m.skad")
    np.testing.assert_array_equal(loaded.feature_names_in_, est.feature_names_in_)
    assert loaded.random_state.get_state()[1].tolist() == (
        est.random_state.get_state()[1].tolist()
    )
    np.testing.assert_array_equal(loaded.score_samples(df), est.score_samples(df))


def test_saved_file_is_zip_of_json_and_safetensors(tmp_path):
    X, _ = _data()
    est = skad.DeepSVDD(max_iter=2, device="cpu", random_state=0).fit(X)
    skad.save(est, tmp_path / "m.skad")
    with zipfile.ZipFile(tmp_path / "m.skad") as zf:
        assert sorted(zf.namelist()) == ["skad.json", "tensors.safetensors"]
        meta = json.loads(zf.read("skad.json"))
    assert meta["format_version"] == FORMAT_VERSION
    assert meta["skad_version"] == skad.__version__
    assert meta["class"] == "skad.deep_svdd.DeepSVDD"
    assert meta["attributes"]["network_"]["__module__"] == "network_"


def test_truncated_file(tmp_path):
    X, _ = _data()
    est = skad.DeepSVDD(max_iter=2, device="cpu", random_state=0).fit(X)
    path = tmp_path / "m.skad"
    skad.save(est, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupted"):
        skad.load(path)


def test_tampered_tensors(tmp_path):
    X, _ = _data()
    est = skad.DeepSVDD(max_iter=2, device="cpu", random_state=0).fit(X)
    path = tmp_path / "m.skad"
    skad.save(est, path)

    def flip(blob):
        b = bytearray(blob)
        b[-5] ^= 0xFF
        return bytes(b)

    _rewrite(path, edit_blob=flip)  # valid zip, recomputed CRC, bad checksum
    with pytest.raises(ValueError, match="checksum"):
        skad.load(path)


def test_corrupted_bytes_in_place(tmp_path):
    X, _ = _data()
    est = skad.DeepSVDD(max_iter=2, device="cpu", random_state=0).fit(X)
    path = tmp_path / "m.skad"
    skad.save(est, path)
    b = bytearray(path.read_bytes())
    b[len(b) // 2] ^= 0xFF
    path.write_bytes(bytes(b))
    with pytest.raises(ValueError):
        skad.load(path)


def test_not_a_model_file(tmp_path):
    (tmp_path / "x.skad").write_text("hello")
    with pytest.raises(ValueError, match="not a readable skad model file"):
        skad.load(tmp_path / "x.skad")
    with zipfile.ZipFile(tmp_path / "y.skad", "w") as zf:
        zf.writestr("other.txt", "x")
    with pytest.raises(ValueError, match="not a skad model file"):
        skad.load(tmp_path / "y.skad")


def test_class_outside_skad_is_refused(tmp_path):
    X, _ = _data()
    est = skad.DeepSVDD(max_iter=2, device="cpu", random_state=0).fit(X)
    path = tmp_path / "m.skad"
    skad.save(est, path)

    def evil(meta):
        meta["class"] = "os.system"

    _rewrite(path, edit_meta=evil)
    with pytest.raises(ValueError, match="not a skad detector"):
        skad.load(path)


def test_newer_skad_version_warns(tmp_path):
    X, X_new = _data()
    est = skad.DeepSVDD(max_iter=2, device="cpu", random_state=0).fit(X)
    path = tmp_path / "m.skad"
    skad.save(est, path)

    def newer(meta):
        meta["skad_version"] = "99.1.0"

    _rewrite(path, edit_meta=newer)
    with pytest.warns(InconsistentVersionWarning, match="newer version"):
        loaded = skad.load(path)
    np.testing.assert_array_equal(loaded.score_samples(X_new), est.score_samples(X_new))


def test_newer_format_version_errors(tmp_path):
    X, _ = _data()
    est = skad.DeepSVDD(max_iter=2, device="cpu", random_state=0).fit(X)
    path = tmp_path / "m.skad"
    skad.save(est, path)

    def newer(meta):
        meta["format_version"] = FORMAT_VERSION + 1
        meta["skad_version"] = "99.0.0"

    _rewrite(path, edit_meta=newer)
    with pytest.raises(ValueError, match="Upgrade skad"):
        skad.load(path)


def test_module_parameter_points_to_joblib(tmp_path):
    est = skad.DeepSVDD(device="cpu")
    # A detector whose parameter is a user-supplied module (like
    # ReverseDistillation's teacher) cannot be saved without pickle.
    est.__dict__["hidden_layer_sizes"] = torch.nn.Linear(2, 2)
    with pytest.raises(TypeError, match="joblib.dump"):
        skad.save(est, tmp_path / "m.skad")


def test_pipeline_is_refused_with_hint(tmp_path):
    pipe = make_pipeline(StandardScaler(), skad.DeepSVDD())
    with pytest.raises(TypeError, match="joblib.dump"):
        skad.save(pipe, tmp_path / "m.skad")


def test_unstorable_attribute_names_itself(tmp_path):
    X, _ = _data()
    est = skad.DeepSVDD(max_iter=2, device="cpu", random_state=0).fit(X)
    est.scaler_ = StandardScaler()
    with pytest.raises(TypeError, match="scaler_"):
        skad.save(est, tmp_path / "m.skad")


def test_reverse_distillation_module_teacher_points_to_joblib(tmp_path):
    if not hasattr(skad, "ReverseDistillation"):
        pytest.skip("ReverseDistillation is not available")
    teacher = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1))
    est = skad.ReverseDistillation(teacher=teacher, device="cpu")
    with pytest.raises(TypeError, match="user-supplied torch.nn.Module.*joblib"):
        skad.save(est, tmp_path / "m.skad")
