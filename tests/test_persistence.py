"""skad.save / skad.load (JSON + safetensors, no pickle) and joblib round trips."""

import builtins
import hashlib
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
from tests.test_persistence_hostile import read_members, resign, write_members

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
    """Rewrite a saved file with an edited JSON (and/or tensors) member and a
    recomputed checksum."""
    members = read_members(path)
    if edit_meta is not None:
        meta = json.loads(members["skad.json"])
        edit_meta(meta)
        members["skad.json"] = json.dumps(meta).encode()
    if edit_blob is not None:
        members["tensors.safetensors"] = edit_blob(members["tensors.safetensors"])
    write_members(path, resign(members))


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
    np.testing.assert_array_equal(loaded.score_samples(X_new), est.score_samples(X_new))


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
        assert zf.namelist() == ["skad.json", "tensors.safetensors", "integrity.json"]
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
    members = read_members(path)
    blob = bytearray(members["tensors.safetensors"])
    blob[-5] ^= 0xFF
    members["tensors.safetensors"] = bytes(blob)
    write_members(path, members)  # valid zip, recomputed CRC, old checksum
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


X5 = np.random.default_rng(1).normal(size=(40, 5))
IMAGES = np.random.default_rng(2).uniform(size=(24, 1, 8, 8))
VARIANTS = [
    ("DeepSVDD", dict(early_stopping=True, max_iter=3), X5),
    ("DeepSVDD", dict(norm="batch", max_iter=2), X5),
    ("DeepSAD", dict(max_iter=2), np.ones((20, 3))),  # all rows identical
    ("ESAD", dict(adversarial=True, max_iter=2), X5),
    ("ESAD", dict(share_encoders=True, max_iter=2), X5),
    ("ESAD", dict(hidden_layer_sizes=(6,), latent_dim=2, max_iter=2), X5),
    ("AnoMem", dict(n_prototypes=(2, 3, 4), max_iter=2), X5),
    (
        "DiscriminatorGuidedGAN",
        dict(transforms="orthogonal", max_iter=2),
        X5,
    ),
    ("DiscriminatorGuidedGAN", dict(max_iter=2), IMAGES),
    ("AnoMem", dict(max_iter=2), IMAGES),
    ("ReverseDistillation", dict(max_iter=2, pretrain_epochs=1), X5),
    (
        "SLA2P",
        dict(max_iter=2, n_transforms=4, projection_dim=4, early_stopping=True),
        X5,
    ),
]


@pytest.mark.parametrize(
    "name, params, X", VARIANTS, ids=[f"{v[0]}-{i}" for i, v in enumerate(VARIANTS)]
)
def test_round_trip_variants(name, params, X, tmp_path):
    """Other settings and input modes round-trip through the hostile-file
    checks (declared attributes, inf diagnostics, extra modules, images)."""
    est = _fit(getattr(skad, name)(device="cpu", random_state=0, **params), X)
    skad.save(est, tmp_path / "m.skad")
    loaded = skad.load(tmp_path / "m.skad")
    np.testing.assert_array_equal(loaded.score_samples(X), est.score_samples(X))
    assert sorted(vars(loaded)) == sorted(
        k for k in vars(est) if not k.startswith("_") or k in vars(loaded)
    )


def test_format_1_files_still_load(tmp_path):
    """Files of skad 0.1: two members, the tensors' SHA-256 in the JSON."""
    X, X_new = _data()
    est = skad.DeepSVDD(max_iter=2, device="cpu", random_state=0).fit(X)
    path = tmp_path / "m.skad"
    skad.save(est, path)
    members = read_members(path)
    meta = json.loads(members["skad.json"])
    meta["format_version"] = 1
    meta["tensors_sha256"] = hashlib.sha256(members["tensors.safetensors"]).hexdigest()
    members["skad.json"] = json.dumps(meta, indent=1).encode()
    del members["integrity.json"]
    write_members(path, members)
    loaded = skad.load(path)
    np.testing.assert_array_equal(loaded.score_samples(X_new), est.score_samples(X_new))
    with pytest.raises(ValueError, match="not signed"):
        skad.load(path, key=b"k" * 32)
    meta["tensors_sha256"] = "0" * 64
    members["skad.json"] = json.dumps(meta).encode()
    write_members(path, members)
    with pytest.raises(ValueError, match="checksum"):
        skad.load(path)


def test_load_leaves_the_global_rng_untouched(tmp_path):
    X, _ = _data()
    for est in INSTANCES[:3]:
        skad.save(_fit(est, X), tmp_path / "m.skad")
        torch_state = torch.random.get_rng_state()
        np_state = np.random.get_state()[1].copy()
        skad.load(tmp_path / "m.skad")
        assert torch.equal(torch.random.get_rng_state(), torch_state)
        np.testing.assert_array_equal(np.random.get_state()[1], np_state)


@pytest.mark.parametrize("estimator", INSTANCES, ids=IDS)
def test_declared_attribute_types_are_understood(estimator):
    """Every fitted attribute a detector declares has a type the loader can
    check; a new wording must be taught to skad.persistence._type_check."""
    from skad.persistence._schema import _declared_attributes, _type_check

    declared = _declared_attributes(type(estimator))
    assert declared and "offset_" in declared
    unknown = {k: t for k, t in declared.items() if t is None or _type_check(t) is None}
    assert not unknown


def test_save_refuses_what_load_would_refuse(tmp_path):
    X, _ = _data()
    est = skad.DeepSVDD(max_iter=2, device="cpu", random_state=0).fit(X)
    est.note_ = "undeclared"
    with pytest.raises(TypeError, match="note_.*not a fitted attribute that DeepSVDD"):
        skad.save(est, tmp_path / "m.skad")
    del est.note_
    est.best_loss_ = float("nan")
    with pytest.raises(ValueError, match="best_loss_ holds NaN"):
        skad.save(est, tmp_path / "m.skad")
    est.best_loss_ = 1.0
    with torch.no_grad():
        next(est.network_.parameters())[0] = float("inf")
    with pytest.raises(ValueError, match="weights of network_ hold NaN or infinite"):
        skad.save(est, tmp_path / "m.skad")
    assert not (tmp_path / "m.skad").exists()
