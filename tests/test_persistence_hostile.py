"""skad.load on hostile files (issue #20): every refusal is a ModelFileError.

The helpers forge files the way an attacker would: they edit the JSON or the
tensors and recompute the checksum (which anyone can), so that each test
exercises the loader's structural checks rather than the checksum.
"""

import hashlib
import hmac
import io
import json
import os
import struct
import subprocess
import sys
import tracemalloc
import warnings
import zipfile

import numpy as np
import pytest
import safetensors.torch
import torch
from sklearn.base import clone

import skad
from skad.persistence import ModelFileError
from skad.utils import accepts_labels
from tests._helpers import fast_instances

INSTANCES = fast_instances()
IDS = [type(e).__name__ for e in INSTANCES]
JSON, TENSORS, INTEGRITY = "skad.json", "tensors.safetensors", "integrity.json"


# ---------------------------------------------------------------------------
# Forging files
# ---------------------------------------------------------------------------


def content_digest(text: bytes, blob: bytes, key: bytes | None = None) -> dict:
    """Integrity record as documented in skad.persistence (written from the
    documentation, independently of the implementation)."""
    msg = (
        b"skad-model\x00"
        + struct.pack("<Q", len(text))
        + text
        + struct.pack("<Q", len(blob))
        + blob
    )
    out = {"sha256": hashlib.sha256(msg).hexdigest()}
    if key is not None:
        out["hmac_sha256"] = hmac.new(key, msg, hashlib.sha256).hexdigest()
    return out


def read_members(path) -> dict:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def write_members(path, members: dict, compress=None) -> None:
    compress = compress or {}
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            default = zipfile.ZIP_DEFLATED if name == JSON else zipfile.ZIP_STORED
            zf.writestr(name, data, compress_type=compress.get(name, default))


def resign(members: dict, key=None) -> dict:
    record = content_digest(members[JSON], members[TENSORS], key)
    return {**members, INTEGRITY: json.dumps(record).encode()}


def rewrite(path, edit_meta=None, edit_tensors=None, *, key=None, text=None):
    """Edit a saved file and recompute its checksum (what anyone can do)."""
    members = read_members(path)
    if edit_meta is not None:
        meta = json.loads(members[JSON])
        edit_meta(meta)
        members[JSON] = json.dumps(meta).encode()
    if text is not None:
        members[JSON] = text
    if edit_tensors is not None:
        tensors = safetensors.torch.load(members[TENSORS])
        edit_tensors(tensors)
        members[TENSORS] = safetensors.torch.save(tensors)
    write_members(path, resign(members, key))


def _fit(estimator, X):
    est = clone(estimator)
    if accepts_labels(est):
        labels = np.zeros(X.shape[0], dtype=int)
        labels[:3] = -1
        labels[3:8] = 1
        return est.fit(X, labels=labels)
    return est.fit(X)


X = np.random.default_rng(0).normal(size=(60, 4))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """One fitted and saved file per detector, as bytes: {name: bytes}."""
    folder = tmp_path_factory.mktemp("saved")
    out = {}
    for est in INSTANCES:
        path = folder / f"{type(est).__name__}.skad"
        skad.save(_fit(est, X), path)
        out[type(est).__name__] = path.read_bytes()
    return out


@pytest.fixture
def svdd(saved, tmp_path):
    """A fresh copy of the saved DeepSVDD file."""
    path = tmp_path / "m.skad"
    path.write_bytes(saved["DeepSVDD"])
    return path


def refused(path, match=None, **kwargs):
    with pytest.raises(ModelFileError, match=match) as info:
        skad.load(path, **kwargs)
    assert str(path) in str(info.value)  # the message names the file
    return info.value


# ---------------------------------------------------------------------------
# Item 2: tampered content
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", IDS)
def test_nan_weights_are_refused_for_every_detector(saved, tmp_path, name):
    path = tmp_path / "m.skad"
    path.write_bytes(saved[name])
    meta = json.loads(read_members(path)[JSON])
    module = next(
        k for k, v in meta["attributes"].items() if isinstance(v, dict) and "keys" in v
    )

    def poison(tensors):
        key = next(
            k
            for k, t in tensors.items()
            if k.startswith(module + "/") and t.is_floating_point() and t.numel()
        )
        tensors[key] = tensors[key].clone()
        tensors[key].view(-1)[0] = float("nan")

    rewrite(path, edit_tensors=poison)
    refused(path, "NaN or infinite")


def test_infinite_buffer_is_refused(svdd):
    def poison(tensors):
        tensors["network_/center"][0] = float("inf")

    rewrite(svdd, edit_tensors=poison)
    refused(svdd, r"network_\.center holds NaN or infinite")


def test_negative_running_variance_is_refused(saved, tmp_path):
    path = tmp_path / "m.skad"
    path.write_bytes(saved["SLA2P"])  # its classifier has batch norm

    def poison(tensors):
        key = next(k for k in tensors if k.endswith("running_var"))
        tensors[key][0] = -1.0

    rewrite(path, edit_tensors=poison)
    refused(path, "negative values")


@pytest.mark.parametrize(
    "offset, match",
    [
        (1e300, "float32 range"),
        (-1e39, "float32 range"),
        (float("nan"), "NaN"),
        (float("inf"), "float32 range"),
        ("abc", "offset_ must be a finite float"),
        (True, "offset_ must be a finite float"),
        ([1.0], "offset_ must be a finite float"),
        (None, "offset_ must be a finite float"),
    ],
    ids=["1e300", "-1e39", "nan", "inf", "abc", "bool", "list", "null"],
)
def test_tampered_offset_is_refused(svdd, offset, match):
    def edit(meta):
        meta["attributes"]["offset_"] = offset

    rewrite(svdd, edit_meta=edit)
    refused(svdd, match)


@pytest.mark.parametrize(
    "name, match",
    [
        ("score_samples", "shadow"),
        ("predict", "shadow"),
        ("__dict__", "shadow"),
        ("__class__", "shadow"),
        ("_score", "shadow"),
        ("max_iter", "shadow a method, property or parameter"),
        ("_private_cache", "not a fitted-attribute name"),
        ("no_underscore", "not a fitted-attribute name"),
        ("not-an-identifier_", "not a valid attribute name"),
        ("class", "not a valid attribute name"),
        ("undeclared_", "not a fitted attribute that DeepSVDD declares"),
    ],
)
def test_attribute_names_are_checked(svdd, name, match):
    def edit(meta):
        meta["attributes"][name] = 1.0

    rewrite(svdd, edit_meta=edit)
    refused(svdd, match)


@pytest.mark.parametrize(
    "name, value, match",
    [
        ("n_iter_", "abc", "n_iter_ must be a non-negative int"),
        ("n_iter_", -1, "n_iter_ must be a non-negative int"),
        ("n_features_in_", 0, "n_features_in_ must be an int"),
        ("n_features_in_", 10**12, "n_features_in_ must be an int"),
        ("n_features_in_", 5, r"input_shape_ must be \(n_features_in_,\)"),
        ("input_mode_", "graph", "input_mode_ must be 'vector' or 'image'"),
        ("input_mode_", "image", r"input_shape_ must be .* image mode"),
        ("input_shape_", {"__tuple__": [5]}, "input_shape_ must be"),
        ("input_shape_", {"__tuple__": [4, 2]}, "input_shape_ must be"),
        ("input_shape_", [4], "input_shape_ must be"),
        ("training_median_", [0.0] * 4, "training_median_ must be a finite float"),
        ("score_scale_", 0.0, "score_scale_ must be a positive finite float"),
        ("score_scale_", -1.0, "score_scale_ must be a positive finite float"),
        ("train_contamination_", 0.5, r"train_contamination_ must be .*\[0, 0.5\)"),
        ("train_contamination_", -0.1, "train_contamination_ must be"),
        ("n_excluded_", -1, "n_excluded_ must be a non-negative int"),
        ("loss_curve_", [1.0, float("nan")], "NaN"),
        ("loss_curve_", [1.0, float("inf")], "beyond the float32 range"),
        ("loss_curve_", "abc", "loss_curve_ must be a list of finite"),
        ("best_loss_", "abc", "best_loss_ must be a float"),
        ("device_", {"__device__": "bogus"}, "invalid device"),
        ("device_", {"__device__": "meta"}, "skad models live on"),
        ("device_", "cpu", "device_ must be a cpu, cuda or mps device"),
        ("center_", 3.0, "center_ must be ndarray"),
        ("feature_names_in_", ["a", "b", "c", "d"], "feature_names_in_ must be"),
    ],
)
def test_attribute_types_and_ranges_are_checked(svdd, name, value, match):
    def edit(meta):
        meta["attributes"][name] = value

    rewrite(svdd, edit_meta=edit)
    refused(svdd, match)


def _median_of(d):
    """Edit of the tensors: a ``training_median_`` of ``d`` features."""

    def edit(tensors):
        tensors["training_median_"] = torch.zeros(d, dtype=torch.float64)

    return edit


def _feature_count(d):
    """Edit of the JSON: ``n_features_in_`` and ``input_shape_`` set to ``d``
    consistently (with :func:`_median_of`, the file describes ``d`` features
    everywhere but in the networks' weights)."""

    def edit(meta):
        meta["attributes"]["n_features_in_"] = d
        meta["attributes"]["input_shape_"] = {"__tuple__": [d]}

    return edit


def test_consistent_feature_count_must_match_the_networks(svdd):
    """Every attribute says 5 features, the weights were trained on 4: the
    network rebuilt for 5 features does not match the file's weights."""
    rewrite(svdd, edit_meta=_feature_count(5), edit_tensors=_median_of(5))
    refused(svdd, r"network_\.encoder\.0\.weight has shape \(\S+, 4\) in the file")


def test_training_median_must_match_the_input_shape(svdd):
    rewrite(svdd, edit_tensors=_median_of(5))
    refused(svdd, "training_median_ must be a finite float array of input_shape_")

    def poison(tensors):
        tensors["training_median_"] = torch.full(
            (4,), float("inf"), dtype=torch.float64
        )

    rewrite(svdd, edit_tensors=poison)
    refused(svdd, "training_median_")


@pytest.mark.parametrize("name", ["offset_", "input_shape_", "training_median_"])
def test_missing_shared_attribute_is_refused(svdd, name):
    """A fitted model without an attribute every fitted detector has would
    load and then fail in predict: refused."""

    def edit(meta):
        del meta["attributes"][name]

    def drop(tensors):
        tensors.pop(name, None)

    rewrite(svdd, edit_meta=edit, edit_tensors=drop)
    refused(svdd, f"lacks \\['{name}'\\], which every fitted DeepSVDD has")


def test_feature_names_of_the_wrong_length_are_refused(svdd):
    def edit(meta):
        meta["attributes"]["feature_names_in_"] = {
            "__ndarray_str__": ["a", "b"],
            "dtype": "|O",
            "shape": [2],
        }

    rewrite(svdd, edit_meta=edit)
    refused(svdd, "feature_names_in_ must be a 1-D array of n_features_in_")


def test_declared_enumeration_is_checked(saved, tmp_path):
    """A type declared as a set of strings in the Attributes section (the
    shared ``input_mode_`` has its own rule, tested above)."""
    path = tmp_path / "m.skad"
    path.write_bytes(saved["AnoMem"])

    def edit(meta):
        meta["attributes"]["anomaly_score_"] = "graph"

    rewrite(path, edit_meta=edit)
    refused(path, r"anomaly_score_ must be \{.*\} \(as AnoMem declares\)")


@pytest.mark.parametrize(
    "name, attribute, value",
    [
        ("ESAD", "hidden_layer_sizes_", {"__tuple__": [7, 5]}),
        ("ESAD", "latent_dim_", 3),
        ("DiscriminatorGuidedGAN", "n_transforms_", 99),
        ("AnoMem", "scale_weights_", None),
    ],
)
def test_attributes_the_rebuild_recomputes_must_agree(
    saved, tmp_path, name, attribute, value
):
    path = tmp_path / "m.skad"
    path.write_bytes(saved[name])

    def edit(meta):
        meta["attributes"][attribute] = value

    rewrite(path, edit_meta=edit)
    refused(path, f"{attribute}|shape")


def test_wrong_shape_buffer_is_refused(svdd):
    def edit(tensors):
        tensors["network_/center"] = torch.zeros(7)

    rewrite(svdd, edit_tensors=edit)
    refused(svdd, r"network_\.center has shape \(7,\) in the file, but \(32,\)")


def test_wrong_shape_parameter_is_refused(svdd):
    def edit(tensors):
        key = next(k for k in tensors if k.endswith("weight"))
        tensors[key] = torch.zeros(3, 3)

    rewrite(svdd, edit_tensors=edit)
    refused(svdd, "has shape")


def test_integer_weights_are_refused(svdd):
    def edit(tensors):
        key = next(k for k in tensors if k.endswith("weight"))
        tensors[key] = tensors[key].to(torch.int64)

    rewrite(svdd, edit_tensors=edit)
    refused(svdd, "dtype torch.int64 in the file, but torch.float32")


def test_extra_module_key_is_refused(svdd):
    def edit_meta(meta):
        meta["attributes"]["network_"]["keys"].append("evil.weight")

    def edit_tensors(tensors):
        tensors["network_/evil.weight"] = torch.zeros(2)

    rewrite(svdd, edit_meta=edit_meta, edit_tensors=edit_tensors)
    refused(svdd, r"unexpected \['evil.weight'\]")


def test_missing_module_key_is_refused(svdd):
    def edit_meta(meta):
        meta["attributes"]["network_"]["keys"].remove("center")

    def edit_tensors(tensors):
        del tensors["network_/center"]

    rewrite(svdd, edit_meta=edit_meta, edit_tensors=edit_tensors)
    refused(svdd, r"missing \['center'\]")


def test_unreferenced_tensor_is_refused(svdd):
    def edit(tensors):
        tensors["stowaway"] = torch.zeros(1000)

    rewrite(svdd, edit_tensors=edit)
    refused(svdd, "tensors no attribute refers to")


def test_module_missing_from_the_file_is_refused(saved, tmp_path):
    path = tmp_path / "m.skad"
    path.write_bytes(saved["DiscriminatorGuidedGAN"])

    def edit_meta(meta):
        del meta["attributes"]["generator_"]

    def edit_tensors(tensors):
        for k in [k for k in tensors if k.startswith("generator_/")]:
            del tensors[k]

    rewrite(path, edit_meta=edit_meta, edit_tensors=edit_tensors)
    refused(path, "generator_, whose weights the file lacks")


def test_module_where_the_network_has_none_is_refused(saved, tmp_path):
    path = tmp_path / "m.skad"
    path.write_bytes(saved["ESAD"])  # adversarial=False: no discriminator_

    def edit(meta):
        meta["attributes"]["discriminator_"] = meta["attributes"]["network_"]

    rewrite(path, edit_meta=edit)
    refused(path, "refers to module|instead of")


@pytest.mark.parametrize(
    "edit, match",
    [
        (
            lambda t: t.__setitem__("random_state", torch.zeros(7, dtype=torch.int64)),
            "random-state key of the wrong shape",
        ),
        (
            lambda t: t.__setitem__("random_state", torch.full((624,), 2**40)),
            r"random-state keys outside",
        ),
        (
            lambda t: t.__setitem__("random_state", torch.zeros(624)),
            "random-state key of the wrong shape or dtype",
        ),
    ],
    ids=["shape", "range", "dtype"],
)
def test_bad_random_state_tensor_is_refused(tmp_path, edit, match):
    det = skad.DeepSVDD(max_iter=2, device="cpu", random_state=np.random.RandomState(0))
    path = tmp_path / "m.skad"
    skad.save(det.fit(X), path)
    rewrite(path, edit_tensors=edit)
    refused(path, match)


def test_bad_random_state_position_is_refused(tmp_path):
    det = skad.DeepSVDD(max_iter=2, device="cpu", random_state=np.random.RandomState(0))
    path = tmp_path / "m.skad"
    skad.save(det, path)

    def edit(meta):
        meta["params"]["random_state"]["pos"] = 10**6

    rewrite(path, edit_meta=edit)
    refused(path, "random-state position")


@pytest.mark.parametrize(
    "value, match",
    [
        ({"__tuple__": [64], "extra": 1}, "unknown entry"),
        ({"__evil__": 1}, "unknown entry"),
        ({"__tuple__": "64"}, "malformed tuple"),
        ({"__dict__": [[[1], 2]]}, "key that is not a string"),
        ({"__dict__": [["a", 1], ["a", 2]]}, "repeats the key"),
        ({"__npscalar__": "V8", "value": 1}, "unsupported scalar dtype"),
        ({"__npscalar__": "<i1", "value": 1000}, "does not fit"),
        ({"__torch_dtype__": "complex64"}, "unknown dtype"),
        ({"__module__": "hidden_layer_sizes", "keys": []}, "parameter cannot be"),
        ({"__tensor__": "network_/center"}, "instead of"),
    ],
)
def test_malformed_entries_are_refused(svdd, value, match):
    def edit(meta):
        meta["params"]["hidden_layer_sizes"] = value

    rewrite(svdd, edit_meta=edit)
    refused(svdd, match)


@pytest.mark.parametrize(
    "value",
    [
        "abc",
        {"__dict__": [["a", 1]]},
        {"__tuple__": [-5]},
        {"__tuple__": [0]},
        {"__tuple__": ["a"]},
        {"__tuple__": [1.5]},
        7,
        None,
    ],
    ids=["str", "dict", "negative", "zero", "str-item", "float", "int", "none"],
)
@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
def test_bad_sizes_are_refused(svdd, value):
    def edit(meta):
        meta["params"]["hidden_layer_sizes"] = value

    rewrite(svdd, edit_meta=edit)
    refused(svdd, "parameter|cannot build|shape")


def test_unknown_parameter_is_refused(svdd):
    def edit(meta):
        meta["params"]["evil"] = 1

    rewrite(svdd, edit_meta=edit)
    refused(svdd, "'evil' is not a parameter of DeepSVDD")


@pytest.mark.parametrize("value", [["skad.deep_svdd.DeepSVDD"], 3, None, "os.system"])
def test_class_must_be_a_skad_detector_name(svdd, value):
    def edit(meta):
        meta["class"] = value

    rewrite(svdd, edit_meta=edit)
    refused(svdd, "class|not a skad detector")


def test_unknown_top_level_key_is_refused(svdd):
    def edit(meta):
        meta["extra"] = 1

    rewrite(svdd, edit_meta=edit)
    refused(svdd, "unexpected or missing entries")


def test_duplicate_json_keys_are_refused(svdd):
    text = read_members(svdd)[JSON]
    forged = text.replace(b'"offset_":', b'"offset_":1e30,"offset_":', 1)
    assert forged != text
    rewrite(svdd, text=forged)
    refused(svdd, "repeats a key")


# ---------------------------------------------------------------------------
# Item 3: memory amplification
# ---------------------------------------------------------------------------


def _traced_peak(fn):
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_whitespace_bomb_is_refused_before_reading(svdd):
    members = read_members(svdd)
    members[JSON] = members[JSON][:-1] + b" " * (64 * 2**20) + b"}"
    write_members(svdd, resign(members))
    assert svdd.stat().st_size < 2**20
    peak = _traced_peak(lambda: refused(svdd, "more than the 4194304 allowed"))
    assert peak < 4 * 2**20


def _patch_json_size(path, size: int) -> None:
    """Make the ZIP headers declare ``size`` uncompressed bytes for skad.json."""
    data = bytearray(path.read_bytes())
    name = JSON.encode()
    for sig, size_at, name_at in ((b"PK\x01\x02", 24, 46), (b"PK\x03\x04", 22, 30)):
        pos = data.find(sig)
        while pos != -1:
            if data[pos + name_at : pos + name_at + len(name)] == name:
                struct.pack_into("<L", data, pos + size_at, size)
            pos = data.find(sig, pos + 1)
    path.write_bytes(bytes(data))


def test_whitespace_bomb_with_lying_size_reads_at_most_the_declared_size(svdd):
    members = read_members(svdd)
    members[JSON] = members[JSON][:-1] + b" " * (64 * 2**20) + b"}"
    write_members(svdd, resign(members))
    _patch_json_size(svdd, 1000)
    peak = _traced_peak(lambda: refused(svdd, "corrupted|declared size"))
    assert peak < 4 * 2**20


@pytest.mark.parametrize(
    "sizes",
    [[8000, 8000], [16000, 16000], [10**12], [2**62, 2**62]],
    ids=["8000x2", "16000x2", "1e12", "2^62x2"],
)
def test_huge_layer_sizes_are_refused_without_allocating(svdd, sizes):
    def edit(meta):
        meta["params"]["hidden_layer_sizes"] = {"__tuple__": sizes}

    rewrite(svdd, edit_meta=edit)
    assert svdd.stat().st_size < 20 * 2**10
    # Networks are built on the meta device: nothing is allocated. (The
    # subprocess test below measures the resident memory as well.)
    peak = _traced_peak(
        lambda: refused(
            svdd, "do not match the network|cannot build|has shape|invalid parameter"
        )
    )
    assert peak < 4 * 2**20


def test_feature_count_beyond_the_file_is_refused_before_building(tmp_path):
    """A hook may allocate numpy arrays sized by n_features_in_ before any
    check can see them (DiscriminatorGuidedGAN's orthogonal transforms built
    an identity matrix of n_features_in_**2 values in numpy; they now build
    it with torch, on the meta device at load time): the loader probes the
    growth of the networks on the meta device first. The file is edited
    consistently (n_features_in_, input_shape_ and a training_median_ of as
    many values), so only the networks' size gives it away."""
    det = skad.DiscriminatorGuidedGAN(
        transforms="orthogonal", max_iter=2, device="cpu", random_state=0
    )
    path = tmp_path / "m.skad"
    skad.save(det.fit(X), path)
    original = path.read_bytes()
    for d in (50_000, 100_000):
        path.write_bytes(original)
        rewrite(path, edit_meta=_feature_count(d), edit_tensors=_median_of(d))
        peak = _traced_peak(
            lambda d=d: refused(path, f"networks of at least {d * d} values")
        )
        # the file's own training_median_ (d float64) is read and decoded
        assert peak < 4 * 2**20 + 3 * 8 * d


def test_feature_count_without_the_median_is_refused_before_building(tmp_path):
    """n_features_in_ = 2**24 in a small file: the training_median_ of
    input_shape_ that every fitted file holds is missing, refused before
    anything is built."""
    det = skad.DiscriminatorGuidedGAN(
        transforms="orthogonal", max_iter=2, device="cpu", random_state=0
    )
    path = tmp_path / "m.skad"
    skad.save(det.fit(X), path)
    rewrite(path, edit_meta=_feature_count(2**24))
    peak = _traced_peak(
        lambda: refused(path, "training_median_ must be a finite float array")
    )
    assert peak < 4 * 2**20


def test_meta_build_allocates_nothing_sized_by_the_feature_count(monkeypatch):
    """DiscriminatorGuidedGAN's transformation bank on the meta device, with
    an unbounded random generator standing in: only the random draws are
    numpy arrays (the loader bounds those by the file's size)."""
    from skad.discriminator_guided_gan._transforms import VectorTransforms

    class NoDraws:
        """A generator that draws nothing (one transformation: T_0 = I)."""

        def choice(self, a, size):
            assert np.prod(size) == 0
            return np.empty(size)

        def __getattr__(self, name):
            raise AssertionError(f"drew {name}")

    d = 2**24
    for kind in ("permutation", "orthogonal"):
        with torch.device("meta"):
            peak = _traced_peak(
                lambda kind=kind: VectorTransforms(d, 1, kind, NoDraws())
            )
        assert peak < 2**20, kind


def test_feature_count_unused_by_the_networks_is_not_limited(saved, tmp_path):
    """SLA2P's networks do not depend on the number of features (its
    projections are regenerated from a seed): a model of many features
    holds few values beyond its training_median_, and loads."""
    path = tmp_path / "m.skad"
    path.write_bytes(saved["SLA2P"])
    d = 100_000
    rewrite(path, edit_meta=_feature_count(d), edit_tensors=_median_of(d))
    loaded = skad.load(path)
    assert loaded.n_features_in_ == d and loaded.input_shape_ == (d,)


def test_huge_transform_count_is_refused_quickly(saved, tmp_path):
    path = tmp_path / "m.skad"
    path.write_bytes(saved["DiscriminatorGuidedGAN"])

    def edit(meta):
        meta["params"]["n_transforms"] = 10**9
        meta["attributes"]["n_transforms_"] = 10**9

    rewrite(path, edit_meta=edit)
    peak = _traced_peak(lambda: refused(path, "more random values than the file"))
    assert peak < 4 * 2**20


@pytest.mark.parametrize(
    "value, match",
    [
        (
            {"__ndarray_str__": ["a"], "dtype": "V8000000", "shape": [1]},
            "unsupported string dtype",
        ),
        (
            {"__ndarray_str__": ["a"] * 4, "dtype": "<U100000000", "shape": [4]},
            "string array of 1600000000 bytes",
        ),
        ({"__ndarray__": "center_", "dtype": "V8000000"}, "declares dtype"),
        ({"__ndarray__": "center_", "dtype": "<f4"}, "declares dtype"),
        ({"__ndarray_str__": ["a"], "dtype": "|O", "shape": [10**9]}, "shape"),
        ({"__ndarray_str__": [1, 2], "dtype": "|O", "shape": [2]}, "non-strings"),
        ({"__ndarray_obj__": [[1]], "shape": [1]}, "holding containers"),
    ],
    ids=["V8000000", "U-bomb", "ndarray-V", "ndarray-cast", "shape", "nonstr", "obj"],
)
def test_array_dtypes_are_checked_before_allocating(svdd, value, match):
    def edit(meta):
        meta["attributes"]["center_"] = value

    rewrite(svdd, edit_meta=edit)
    peak = _traced_peak(lambda: refused(svdd, match))
    assert peak < 4 * 2**20


def test_deeply_nested_json_is_refused_before_parsing(svdd):
    text = read_members(svdd)[JSON]
    deep = b"[" * 600 + b"1" + b"]" * 600
    rewrite(
        svdd, text=text.replace(b'"best_loss_":', b'"x_":' + deep + b',"best_loss_":')
    )
    refused(svdd, "nested 60[0-9] levels deep")
    rewrite(svdd, text=b"[" * 100_000 + b"]" * 100_000)
    refused(svdd, "more than 65536 JSON arrays")


def test_brackets_inside_strings_do_not_count(svdd):
    def edit(meta):
        meta["skad_version"] = "[" * 200 + skad.__version__

    rewrite(svdd, edit_meta=edit)
    with pytest.warns(skad.persistence.InconsistentVersionWarning):
        skad.load(svdd)


def test_many_json_containers_are_refused(svdd):
    def edit(meta):
        meta["attributes"]["loss_curve_"] = [[]] * 70_000

    rewrite(svdd, edit_meta=edit)
    refused(svdd, "more than 65536 JSON arrays")


@pytest.mark.parametrize(
    "header, match",
    [
        (
            {
                "network_/center": {
                    "dtype": "F32",
                    "shape": [10**12],
                    "data_offsets": [0, 128],
                }
            },
            "needs 4000000000000 bytes",
        ),
        (
            {
                "network_/center": {
                    "dtype": "F32",
                    "shape": [32],
                    "data_offsets": [0, 10**12],
                }
            },
            "invalid data offsets",
        ),
        (
            {
                "network_/center": {
                    "dtype": "C64",
                    "shape": [16],
                    "data_offsets": [0, 128],
                }
            },
            "unsupported dtype",
        ),
        (
            {
                "network_/center": {
                    "dtype": "F32",
                    "shape": [-32],
                    "data_offsets": [0, 128],
                }
            },
            "invalid shape",
        ),
        (
            {
                "network_/center": {
                    "dtype": "F32",
                    "shape": [32],
                    "data_offsets": [0, 128],
                    "x": 1,
                }
            },
            "malformed",
        ),
    ],
    ids=["shape-bomb", "offsets", "complex", "negative", "extra-key"],
)
def test_tensor_header_is_checked_before_reading_data(tmp_path, header, match):
    det = skad.DeepSVDD(max_iter=2, device="cpu", random_state=0).fit(X)
    path = tmp_path / "m.skad"
    skad.save(det, path)
    members = read_members(path)
    raw = json.dumps(header).encode()
    members[TENSORS] = struct.pack("<Q", len(raw)) + raw + bytes(128)
    write_members(path, resign(members))
    refused(path, match)


def test_tensor_header_size_is_bounded(svdd):
    members = read_members(svdd)
    members[TENSORS] = struct.pack("<Q", 2**62) + members[TENSORS][8:]
    write_members(svdd, resign(members))
    refused(svdd, "header declares")


PEAK_RSS_CHILD = """
import sys
from pathlib import Path

import skad


def status(key):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])


skad.load(sys.argv[1])  # warm up every code path on a valid file
growth = 0
for path in sys.argv[2:]:
    Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark
    before = status("VmRSS")
    try:
        skad.load(path)
    except ValueError:
        pass
    else:
        raise SystemExit(f"{path} loaded")
    growth = max(growth, status("VmHWM") - before)
print(growth)
"""


@pytest.mark.skipif(
    not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux /proc"
)
def test_peak_memory_of_bomb_files_in_a_fresh_process(saved, tmp_path):
    """Resident memory, measured in a subprocess (torch allocations included,
    which tracemalloc does not see): loading each bomb file raises the
    resident-set high-water mark by less than 16 MiB."""
    files = []
    for i, sizes in enumerate(([16000, 16000], [10**12])):
        path = tmp_path / f"sizes{i}.skad"
        path.write_bytes(saved["DeepSVDD"])

        def edit(meta, sizes=sizes):
            meta["params"]["hidden_layer_sizes"] = {"__tuple__": sizes}

        rewrite(path, edit_meta=edit)
        files.append(path)
    bomb = tmp_path / "whitespace.skad"
    bomb.write_bytes(saved["DeepSVDD"])
    members = read_members(bomb)
    members[JSON] = members[JSON][:-1] + b" " * (64 * 2**20) + b"}"
    write_members(bomb, resign(members))
    files.append(bomb)
    lying = tmp_path / "lying.skad"
    lying.write_bytes(bomb.read_bytes())
    _patch_json_size(lying, 1000)
    files.append(lying)
    legit = tmp_path / "legit.skad"
    legit.write_bytes(saved["DeepSVDD"])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", PEAK_RSS_CHILD, str(legit), *map(str, files)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    growth_kib = int(out.stdout.strip().splitlines()[-1])
    assert growth_kib < 16 * 1024, out.stdout


@pytest.mark.parametrize("estimator", INSTANCES, ids=IDS)
def test_absurd_integer_parameters_load_or_are_refused_quickly(
    saved, tmp_path, estimator
):
    """Every integer parameter set to 10**9 (what the constraints allow):
    the file loads (e.g. max_iter) or raises ModelFileError, quickly."""
    name = type(estimator).__name__
    path = tmp_path / "m.skad"
    meta = json.loads(read_members_bytes(saved[name])[JSON])
    for param, value in meta["params"].items():
        if not isinstance(value, int) or isinstance(value, bool) or param == "verbose":
            continue
        path.write_bytes(saved[name])

        def edit(meta, param=param):
            meta["params"][param] = 10**9

        rewrite(path, edit_meta=edit)
        peak = _traced_peak(lambda: _load_or_refuse(path))
        assert peak < 16 * 2**20, param


def read_members_bytes(data: bytes) -> dict:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def _load_or_refuse(path):
    try:
        skad.load(path)
    except ModelFileError:
        pass


# ---------------------------------------------------------------------------
# Item 4: one exception type
# ---------------------------------------------------------------------------


def _deflated_json_span(path):
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(JSON)
    data = path.read_bytes()
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26 :][:4])
    start = info.header_offset + 30 + name_len + extra_len
    return start, start + info.compress_size


def test_byte_flips_in_the_deflated_json_raise_model_file_error(svdd):
    """16 positions across the deflated JSON: each flip raises ModelFileError,
    except where the bytes zipfile decodes stay the same (the last byte holds
    only the end-of-stream marker, which is never read once the declared
    size is reached); the loaded model is then the original."""
    start, stop = _deflated_json_span(svdd)
    original = svdd.read_bytes()
    expected = skad.load(svdd).score_samples(X)
    n_refused = 0
    for pos in np.linspace(start, stop - 1, 16).astype(int):
        data = bytearray(original)
        data[pos] ^= 0xFF
        svdd.write_bytes(bytes(data))
        try:
            loaded = skad.load(svdd)
        except ModelFileError as exc:
            assert "corrupted" in str(exc) or "checksum" in str(exc)
            n_refused += 1
        else:
            np.testing.assert_array_equal(loaded.score_samples(X), expected)
    assert n_refused >= 15


def test_any_single_byte_flip_is_refused_or_harmless(svdd):
    """Flip bytes across the whole file: either ModelFileError, or a model
    scoring exactly like the original (bytes such as ZIP timestamps)."""
    original = svdd.read_bytes()
    expected = skad.load(svdd).score_samples(X)
    for pos in range(0, len(original), max(1, len(original) // 120)):
        data = bytearray(original)
        data[pos] ^= 0x5A
        svdd.write_bytes(bytes(data))
        try:
            loaded = skad.load(svdd)
        except ModelFileError:
            continue
        np.testing.assert_array_equal(loaded.score_samples(X), expected)


_HOSTILE_VALUES = [
    None,
    "abc",
    -1,
    0,
    0.0,
    -1.0,
    10**30,
    1e300,
    float("nan"),
    [],
    {},
    [[[[1]]]],
    {"__tuple__": [None]},
    {"__device__": "cuda:99999999999"},
    {"__ndarray__": "x", "dtype": "<f8"},
]

_HOSTILE_PARAMS = [None, "abc", -1, 0.0, 1e300, {}]


def _leaves(value, path=()):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(value, list) and value and len(value) < 8:
        for i, v in enumerate(value):
            yield from _leaves(v, (*path, i))
    yield path


def _set(meta, path, value):
    node = meta
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value


def _raw_anomaly_is_finite(detector, X) -> bool:
    """Whether the network's own scores are finite: ``score_samples`` maps a
    non-finite score to the most anomalous finite value, which would hide a
    model that scores NaN (and so flags every row)."""
    X = detector._validate_input(X, reset=False)
    with np.errstate(all="ignore"):
        return bool(np.all(np.isfinite(detector._score_samples(X, finite=False))))


@pytest.mark.parametrize("name", IDS)
def test_json_mutations_raise_model_file_error_or_load_a_working_model(
    saved, tmp_path, monkeypatch, name
):
    """Replace every JSON value by hostile ones: load either refuses with
    ModelFileError or returns a working detector: its networks score every
    row finitely (before the base's mapping of non-finite scores), and
    ``predict`` / ``predict_proba`` run. Method-specific ranges come from
    the classes' ``_fitted_attribute_constraints`` (ESAD's and DGG's score
    scales must be positive)."""
    monkeypatch.setattr(getattr(skad, name), "_score_chunk_size", 64)  # speed
    path = tmp_path / "m.skad"
    meta = json.loads(read_members_bytes(saved[name])[JSON])
    paths = [p for p in _leaves(meta) if p]
    assert len(paths) > 40
    outcomes = {"refused": 0, "loaded": 0}
    broken = set()
    for p in paths:
        # parameters are screened by scikit-learn's constraints: fewer values
        values = _HOSTILE_VALUES if p[0] == "attributes" else _HOSTILE_PARAMS
        for value in values:
            path.write_bytes(saved[name])
            rewrite(path, edit_meta=lambda m, p=p, v=value: _set(m, p, v))
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # version / device warnings
                    loaded = skad.load(path)
            except ModelFileError:
                outcomes["refused"] += 1
                continue
            outcomes["loaded"] += 1
            try:
                works = (
                    _raw_anomaly_is_finite(loaded, X)
                    and set(loaded.predict(X)) <= {-1, 1}
                    and np.all(np.isfinite(loaded.predict_proba(X)))
                )
            except Exception:  # noqa: BLE001 - any failure is a broken model
                works = False
            if not works:
                broken.add((p, value))
    assert not broken, sorted(broken)
    assert outcomes["refused"] > outcomes["loaded"] > 0


@pytest.mark.parametrize(
    "name, attribute",
    [
        ("DiscriminatorGuidedGAN", "feature_scale_"),
        ("ESAD", "reconstruction_scale_"),
        ("ESAD", "norm_scale_"),
        ("ESAD", "reconstruction_spread_"),
        ("ESAD", "norm_spread_"),
    ],
)
def test_declared_value_ranges_are_checked(saved, tmp_path, name, attribute):
    """The scales a score divides by are declared positive (at least the
    floor ``fit`` applies) in ``_fitted_attribute_constraints``."""
    path = tmp_path / "m.skad"
    path.write_bytes(saved[name])
    skad.load(path)
    for value in (0.0, 1e-13, -1.0):

        def edit(meta, value=value):
            meta["attributes"][attribute] = value

        rewrite(path, edit_meta=edit)
        refused(
            path,
            rf"{attribute} must be a float in the range \[1e-12, inf\) "
            rf"\(as {name} declares\)",
        )


def test_declared_value_ranges_combine_over_the_bases(saved, tmp_path, monkeypatch):
    """A declaration in a base class holds for every subclass, on top of the
    subclass's own declarations (which need not repeat the bases')."""
    from numbers import Real

    from sklearn.utils._param_validation import Interval

    monkeypatch.setattr(
        skad.base.BaseDeepDetector,
        "_fitted_attribute_constraints",
        {"best_loss_": [Interval(Real, 0, None, closed="left")]},
        raising=False,
    )
    path = tmp_path / "m.skad"
    path.write_bytes(saved["DiscriminatorGuidedGAN"])
    skad.load(path)
    for attribute, value in (("best_loss_", -1.0), ("feature_scale_", 0.0)):
        path.write_bytes(saved["DiscriminatorGuidedGAN"])

        def edit(meta, attribute=attribute, value=value):
            meta["attributes"][attribute] = value

        rewrite(path, edit_meta=edit)
        refused(path, f"{attribute} must be a float in the range")


@pytest.mark.parametrize(
    "flag, match", [(0x1, "encrypted"), (0x40, "encrypted"), (0x2000, "encrypted")]
)
def test_zip_flags_are_refused(svdd, flag, match):
    data = bytearray(svdd.read_bytes())
    pos = data.find(b"PK\x01\x02")
    struct.pack_into("<H", data, pos + 8, flag)
    svdd.write_bytes(bytes(data))
    refused(svdd, match)


@pytest.mark.parametrize("method", [93, 12, 14, 99])
def test_unknown_compression_is_refused(svdd, method):
    data = bytearray(svdd.read_bytes())
    pos = data.find(b"PK\x01\x02")
    struct.pack_into("<H", data, pos + 10, method)
    svdd.write_bytes(bytes(data))
    refused(svdd, f"compression method {method}")


def test_compressed_tensors_are_refused(svdd):
    members = read_members(svdd)
    write_members(svdd, members, compress={TENSORS: zipfile.ZIP_DEFLATED})
    refused(svdd, "is compressed")


def test_extra_member_is_refused(svdd):
    members = read_members(svdd)
    members["payload.pkl"] = b"x"
    write_members(svdd, members)
    refused(svdd, "not a skad model file")


def test_duplicate_member_is_refused(svdd):
    members = read_members(svdd)
    with pytest.warns(UserWarning, match="Duplicate name"):
        with zipfile.ZipFile(svdd, "w") as zf:
            for name, data in members.items():
                zf.writestr(name, data)
            zf.writestr(JSON, members[JSON])
    refused(svdd, "repeats a member|ZIP directory declares")


def test_trailing_bytes_and_comments_are_refused(svdd):
    original = svdd.read_bytes()
    svdd.write_bytes(original + b"\x00" * 10)
    refused(svdd, "ZIP end record")
    with zipfile.ZipFile(svdd, "a") as zf:
        zf.comment = b"hi"
    refused(svdd, "ZIP end record")


def test_huge_central_directory_is_refused(svdd):
    with zipfile.ZipFile(svdd, "w") as zf:
        for i in range(200):
            zf.writestr(f"m{i}", b"")
    refused(svdd, "ZIP directory declares 200 members")


def test_truncated_files_raise_model_file_error(svdd):
    original = svdd.read_bytes()
    for n in (0, 1, 21, 22, 100, len(original) // 2, len(original) - 1):
        svdd.write_bytes(original[:n])
        refused(svdd, "truncated or corrupted")


def test_missing_integrity_member_is_refused(svdd):
    members = read_members(svdd)
    del members[INTEGRITY]
    write_members(svdd, members)
    refused(svdd, "lacks integrity.json")


@pytest.mark.parametrize(
    "record",
    [b"{}", b'{"sha256": "xyz"}', b'{"sha256": "' + b"0" * 64 + b'"}', b"[" * 50],
)
def test_bad_integrity_record_is_refused(svdd, record):
    members = read_members(svdd)
    members[INTEGRITY] = record
    write_members(svdd, members)
    refused(svdd, "integrity.json|checksum|nested")


def test_error_is_a_value_error_naming_the_file(svdd):
    svdd.write_bytes(b"not a zip at all" * 10)
    with pytest.raises(ValueError, match=str(svdd)):
        skad.load(svdd)
    assert issubclass(ModelFileError, ValueError)


# ---------------------------------------------------------------------------
# Authenticity: the optional key
# ---------------------------------------------------------------------------

KEY = b"k" * 32


def test_signed_round_trip(tmp_path):
    det = skad.DeepSVDD(max_iter=2, device="cpu", random_state=0).fit(X)
    path = tmp_path / "m.skad"
    skad.save(det, path, key=KEY)
    for key in (KEY, KEY.decode()):
        np.testing.assert_array_equal(
            skad.load(path, key=key).score_samples(X), det.score_samples(X)
        )
    # without a key, a signed file loads (only the checksum is verified)
    np.testing.assert_array_equal(
        skad.load(path).score_samples(X), det.score_samples(X)
    )
    skad.save(det, path, key="a str key")
    skad.load(path, key="a str key")


def test_wrong_key_is_refused(tmp_path):
    det = skad.DeepSVDD(max_iter=2, device="cpu", random_state=0).fit(X)
    path = tmp_path / "m.skad"
    skad.save(det, path, key=KEY)
    refused(path, "signature does not verify", key=b"another key")


def test_unsigned_file_is_refused_with_a_key(svdd):
    refused(svdd, "is not signed", key=KEY)


def test_tampered_signed_file_is_refused_with_the_key(tmp_path):
    det = skad.DeepSVDD(max_iter=2, device="cpu", random_state=0).fit(X)
    path = tmp_path / "m.skad"
    skad.save(det, path, key=KEY)
    members = read_members(path)
    old_tag = json.loads(members[INTEGRITY])["hmac_sha256"]
    meta = json.loads(members[JSON])
    meta["attributes"]["offset_"] = -1e30  # every row an inlier
    members[JSON] = json.dumps(meta).encode()
    record = content_digest(members[JSON], members[TENSORS])  # new checksum
    record["hmac_sha256"] = old_tag  # the attacker cannot recompute the tag
    members[INTEGRITY] = json.dumps(record).encode()
    write_members(path, members)
    refused(path, "signature does not verify", key=KEY)
    # Without the key, the checksum (recomputed) passes: this is why a key
    # is needed for files from untrusted sources.
    assert skad.load(path).offset_ == -1e30


def test_stripped_signature_is_refused_with_the_key(tmp_path):
    det = skad.DeepSVDD(max_iter=2, device="cpu", random_state=0).fit(X)
    path = tmp_path / "m.skad"
    skad.save(det, path, key=KEY)
    write_members(path, resign({k: v for k, v in read_members(path).items()}))
    refused(path, "is not signed", key=KEY)


def test_signature_is_checked_before_parsing(tmp_path):
    det = skad.DeepSVDD(max_iter=2, device="cpu", random_state=0).fit(X)
    path = tmp_path / "m.skad"
    skad.save(det, path, key=KEY)
    members = read_members(path)
    members[JSON] = b"[" * 1000
    record = content_digest(members[JSON], members[TENSORS])
    record["hmac_sha256"] = json.loads(members[INTEGRITY])["hmac_sha256"]
    members[INTEGRITY] = json.dumps(record).encode()
    write_members(path, members)
    refused(path, "signature does not verify", key=KEY)
    refused(path, "nested")  # without a key the structural checks still hold


@pytest.mark.parametrize("key, exc", [(123, TypeError), (b"", ValueError)])
def test_invalid_keys(tmp_path, key, exc):
    det = skad.DeepSVDD(max_iter=2, device="cpu", random_state=0)
    with pytest.raises(exc, match="key"):
        skad.save(det, tmp_path / "m.skad", key=key)
    with pytest.raises(exc, match="key"):
        skad.load(tmp_path / "m.skad", key=key)


# ---------------------------------------------------------------------------
# Item 5: atomic save
# ---------------------------------------------------------------------------


def _assert_old_model_intact(path, det, folder):
    np.testing.assert_array_equal(
        skad.load(path).score_samples(X), det.score_samples(X)
    )
    assert sorted(os.listdir(folder)) == [path.name]  # no temporary file left


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_interrupted_save_keeps_the_old_file(tmp_path, monkeypatch, error):
    old = skad.DeepSVDD(max_iter=2, device="cpu", random_state=0).fit(X)
    path = tmp_path / "m.skad"
    skad.save(old, path)
    new = skad.DeepSVDD(max_iter=3, device="cpu", random_state=1).fit(X)
    real_writestr = zipfile.ZipFile.writestr

    def failing_writestr(self, info, data, *args, **kwargs):
        name = getattr(info, "filename", info)
        if name == TENSORS:  # the JSON member is already written
            real_writestr(self, info, data[: len(data) // 2], *args, **kwargs)
            raise error
        return real_writestr(self, info, data, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "writestr", failing_writestr)
    with pytest.raises(type(error)):
        skad.save(new, path)
    monkeypatch.undo()
    _assert_old_model_intact(path, old, tmp_path)


def test_failing_tensor_serialisation_keeps_the_old_file(tmp_path, monkeypatch):
    old = skad.DeepSVDD(max_iter=2, device="cpu", random_state=0).fit(X)
    path = tmp_path / "m.skad"
    skad.save(old, path)

    def fail(*args, **kwargs):
        raise RuntimeError("serialisation failed")

    from skad.persistence import _save

    monkeypatch.setattr(_save, "_st_save", fail)
    with pytest.raises(RuntimeError, match="serialisation failed"):
        skad.save(clone(old).set_params(max_iter=3).fit(X), path)
    monkeypatch.undo()
    _assert_old_model_intact(path, old, tmp_path)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_save_keeps_the_permissions_of_the_replaced_file(tmp_path):
    det = skad.DeepSVDD(max_iter=2, device="cpu", random_state=0).fit(X)
    path = tmp_path / "m.skad"
    skad.save(det, path)
    os.chmod(path, 0o600)
    skad.save(det, path)
    assert path.stat().st_mode & 0o777 == 0o600


def test_save_is_deterministic(tmp_path):
    det = skad.DeepSVDD(max_iter=2, device="cpu", random_state=0).fit(X)
    skad.save(det, tmp_path / "a.skad")
    skad.save(det, tmp_path / "b.skad")
    assert (tmp_path / "a.skad").read_bytes() == (tmp_path / "b.skad").read_bytes()
