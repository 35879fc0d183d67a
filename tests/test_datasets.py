"""skad.datasets: ADBench loader errors, listing, demo tasks."""

import numpy as np
import pytest

from skad import datasets
from skad.datasets import list_adbench, load_adbench


@pytest.fixture
def adbench_dir(tmp_path):
    (tmp_path / "Classical").mkdir()
    (tmp_path / "CV_by_ViT").mkdir()
    (tmp_path / "CV_by_ResNet18").mkdir()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 3)).astype("float32")
    y = np.r_[np.zeros(18, "int8"), np.ones(2, "int8")]
    np.savez(tmp_path / "Classical" / "2_toy.npz", X=X, y=y)
    np.savez(tmp_path / "Classical" / "10_other.npz", X=X[:, :2], y=y)
    np.savez(tmp_path / "CV_by_ViT" / "img.npz", X=X, y=y)
    np.savez(tmp_path / "CV_by_ResNet18" / "img.npz", X=X, y=y)
    return tmp_path


def test_load_types_and_names(adbench_dir):
    X, y = load_adbench("2_toy", adbench_dir)
    assert X.dtype == np.float64 and X.shape == (20, 3)
    assert y.dtype == np.int64 and set(y.tolist()) == {0, 1}
    X2, _ = load_adbench("Classical/2_toy", adbench_dir)
    X3, _ = load_adbench(adbench_dir / "Classical" / "2_toy.npz")
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(X, X3)


def test_env_variable(adbench_dir, monkeypatch):
    monkeypatch.setenv(datasets.ADBENCH_ENV, str(adbench_dir))
    assert load_adbench("2_toy")[0].shape == (20, 3)
    monkeypatch.delenv(datasets.ADBENCH_ENV)
    with pytest.raises(ValueError, match="data_dir"):
        load_adbench("2_toy")


def test_list_sizes_groups_and_order(adbench_dir):
    entries = list_adbench(adbench_dir)
    names = [e["name"] for e in entries]
    # canonical group order, numeric order inside a group
    assert names == [
        "Classical/2_toy",
        "Classical/10_other",
        "CV_by_ResNet18/img",
        "CV_by_ViT/img",
    ]
    assert (entries[1]["n_samples"], entries[1]["n_features"]) == (20, 2)
    assert [e["name"] for e in list_adbench(adbench_dir, "CV_by_ViT")] == [
        "CV_by_ViT/img"
    ]
    with pytest.raises(ValueError, match="NoSuchGroup"):
        list_adbench(adbench_dir, ["NoSuchGroup"])


def test_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_adbench("2_toy", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_adbench(tmp_path / "nowhere")


def test_missing_file(adbench_dir):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_adbench("nope", adbench_dir)
    with pytest.raises(FileNotFoundError, match="not found"):
        load_adbench("Classical/nope", adbench_dir)


def test_ambiguous_name(adbench_dir):
    with pytest.raises(ValueError, match="several groups"):
        load_adbench("img", adbench_dir)
    assert load_adbench("CV_by_ViT/img", adbench_dir)[0].shape == (20, 3)


@pytest.mark.parametrize(
    "content, match",
    [
        (b"this is not a zip file", "Cannot read"),
        ({"X": np.zeros((4, 2))}, "missing"),
        ({"X": np.zeros((4, 2)), "y": np.zeros(3)}, "one label per row"),
        ({"X": np.zeros(4), "y": np.zeros(4)}, "2-D"),
        ({"X": np.zeros((4, 2)), "y": np.array([0, 1, 2, 0])}, "0 .normal. or 1"),
        ({"X": np.full((2, 2), np.nan), "y": np.array([0, 1])}, "NaN"),
        ({"X": np.array([["a", "b"]]), "y": np.array([0])}, "numeric"),
    ],
)
def test_malformed_files(tmp_path, content, match):
    (tmp_path / "Classical").mkdir()
    path = tmp_path / "Classical" / "bad.npz"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        np.savez(path, **content)
    with pytest.raises(ValueError, match=match):
        load_adbench("bad", tmp_path)
    # listing never fails on a bad file
    assert [e["name"] for e in list_adbench(tmp_path)] == ["Classical/bad"]


@pytest.mark.parametrize("name", sorted(datasets.demo_tasks()))
def test_demo_tasks(name):
    fn, kwargs = datasets.demo_tasks()[name]
    X, y = fn(**kwargs)
    assert X.dtype == np.float64 and X.ndim == 2 and np.isfinite(X).all()
    assert y.dtype == np.int64 and set(np.unique(y)) == {0, 1}
    assert 0 < y.mean() < 0.25
    X2, y2 = fn(**kwargs)
    np.testing.assert_array_equal(X, X2)  # deterministic
    np.testing.assert_array_equal(y, y2)


def test_digits_task_normal_digit():
    from sklearn.datasets import load_digits

    X, y = datasets.make_digits_task(normal_digit=5, n_anomalies=7, random_state=1)
    digits = load_digits()
    assert y.sum() == 7
    assert (y == 0).sum() == (digits.target == 5).sum()
