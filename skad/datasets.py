"""Datasets for evaluating anomaly detectors: ADBench files and demo tasks.

Every loader returns ``(X, y)`` with ``X`` a float64 array of shape
``(n_samples, n_features)`` and ``y`` an int64 array with ADBench's
convention: ``1`` = anomaly, ``0`` = normal.

* :func:`load_adbench` / :func:`list_adbench` read the ``.npz`` files of the
  ADBench collection (Han et al., NeurIPS 2022) from a local directory laid
  out as ``<data_dir>/<group>/<name>.npz`` (groups ``Classical``,
  ``CV_by_ResNet18``, ``CV_by_ViT``, ``NLP_by_BERT``, ``NLP_by_RoBERTa``).
  Nothing is downloaded.
* ``make_*_task`` build small anomaly-detection tasks from the datasets
  bundled with scikit-learn plus synthetic ones; they make up the benchmark's
  ``demo`` suite (:func:`demo_tasks`).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
from sklearn.utils import check_random_state

__all__ = [
    "ADBENCH_GROUPS",
    "demo_tasks",
    "list_adbench",
    "load_adbench",
    "make_blobs_task",
    "make_breast_cancer_task",
    "make_dependency_task",
    "make_digits_task",
    "make_local_task",
    "make_wine_task",
]

#: The five groups of ADBench, as sub-directories of ``data_dir``.
ADBENCH_GROUPS = (
    "Classical",
    "CV_by_ResNet18",
    "CV_by_ViT",
    "NLP_by_BERT",
    "NLP_by_RoBERTa",
)

#: Environment variable read when ``data_dir`` is None.
ADBENCH_ENV = "SKAD_ADBENCH_DIR"


# --------------------------------------------------------------------- ADBench
def _data_dir(data_dir) -> Path:
    if data_dir is None:
        data_dir = os.environ.get(ADBENCH_ENV)
        if not data_dir:
            raise ValueError(
                "No ADBench directory given: pass data_dir (e.g. "
                f"'../shared/data/adbench') or set ${ADBENCH_ENV}."
            )
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(
            f"ADBench directory {str(path)!r} does not exist or is not a "
            "directory. It should hold one sub-directory per group "
            f"({', '.join(ADBENCH_GROUPS)}) of .npz files with arrays X and y."
        )
    return path


def _npz_shape(path: Path, key: str):
    """Shape of array ``key`` inside an ``.npz`` without loading it."""
    with zipfile.ZipFile(path) as zf, zf.open(f"{key}.npy") as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, _ = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, _, _ = np.lib.format.read_array_header_2_0(fh)
    return shape


def _files(root: Path, groups):
    if groups is None:
        groups = [g for g in ADBENCH_GROUPS if (root / g).is_dir()]
        groups += sorted(
            p.name
            for p in root.iterdir()
            if p.is_dir() and p.name not in ADBENCH_GROUPS and any(p.glob("*.npz"))
        )
        if not groups and any(root.glob("*.npz")):
            return [("", p) for p in sorted(root.glob("*.npz"), key=_natural_key)]
    else:
        groups = [groups] if isinstance(groups, str) else list(groups)
        missing = [g for g in groups if not (root / g).is_dir()]
        if missing:
            found = sorted(p.name for p in root.iterdir() if p.is_dir())
            raise ValueError(
                f"ADBench group(s) {missing} not found under {str(root)!r}; "
                f"available: {found}."
            )
    return [
        (g, p)
        for g in groups
        for p in sorted((root / g).glob("*.npz"), key=_natural_key)
    ]


def _natural_key(path: Path):
    head, _, tail = path.stem.partition("_")
    return (0, int(head), tail) if head.isdigit() else (1, 0, path.stem)


def list_adbench(data_dir=None, groups=None):
    """List the ADBench datasets found under ``data_dir`` with their sizes.

    Only the array headers are read, so listing is fast.

    Parameters
    ----------
    data_dir : str or path-like, default=None
        Directory holding ``<group>/<name>.npz``; defaults to the environment
        variable ``SKAD_ADBENCH_DIR``.
    groups : str or list of str, default=None
        Groups to list (e.g. ``["Classical"]``); all found groups when None.

    Returns
    -------
    datasets : list of dict
        One dict per file, with keys ``name`` (``"<group>/<stem>"``, the
        identifier :func:`load_adbench` accepts), ``group``, ``dataset`` (the
        file stem), ``path``, ``n_samples``, ``n_features``; ``n_samples`` is
        None for a file whose header cannot be read.

    Raises
    ------
    FileNotFoundError
        When ``data_dir`` does not exist.
    ValueError
        When a requested group does not exist.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from skad.datasets import list_adbench
    >>> d = tempfile.mkdtemp(); os.mkdir(os.path.join(d, "Classical"))
    >>> np.savez(os.path.join(d, "Classical", "1_toy.npz"),
    ...          X=np.zeros((5, 2)), y=np.array([0, 0, 0, 0, 1]))
    >>> [(e["name"], e["n_samples"], e["n_features"]) for e in list_adbench(d)]
    [('Classical/1_toy', 5, 2)]
    """
    root = _data_dir(data_dir)
    out = []
    for group, path in _files(root, groups):
        try:
            shape = _npz_shape(path, "X")
        except Exception:  # malformed: reported by load_adbench
            shape = (None, None)
        out.append(
            {
                "name": f"{group}/{path.stem}" if group else path.stem,
                "group": group,
                "dataset": path.stem,
                "path": str(path),
                "n_samples": shape[0] if len(shape) else None,
                "n_features": shape[1] if len(shape) > 1 else None,
            }
        )
    return out


def _resolve(name, data_dir) -> tuple[Path, str]:
    """Find the file for ``name`` (``group/stem``, ``stem`` or a path)."""
    candidate = Path(str(name)).expanduser()
    if candidate.suffix == ".npz" and candidate.is_file():
        return candidate, candidate.parent.name
    root = _data_dir(data_dir)
    name = str(name).removesuffix(".npz")
    if "/" in name:
        group, stem = name.rsplit("/", 1)
        path = root / group / f"{stem}.npz"
        if path.is_file():
            return path, group
        raise FileNotFoundError(
            f"ADBench dataset {name!r} not found: {str(path)!r} does not exist."
        )
    matches = [(g, p) for g, p in _files(root, None) if p.stem == name]
    if not matches:
        stems = sorted({p.stem for _, p in _files(root, None)})
        hint = ", ".join(stems[:10]) + (", ..." if len(stems) > 10 else "")
        raise FileNotFoundError(
            f"ADBench dataset {name!r} not found under {str(root)!r}. "
            f"Available ({len(stems)}): {hint}"
        )
    if len(matches) > 1:
        options = [f"{g}/{p.stem}" for g, p in matches]
        raise ValueError(
            f"ADBench dataset {name!r} exists in several groups; use one of {options}."
        )
    group, path = matches[0]
    return path, group


def load_adbench(name, data_dir=None):
    """Load one ADBench dataset.

    Parameters
    ----------
    name : str or path-like
        ``"<group>/<stem>"`` (e.g. ``"Classical/4_breastw"``), a bare stem
        when it is unique across groups (e.g. ``"4_breastw"``), or the path of
        an ``.npz`` file.
    data_dir : str or path-like, default=None
        Directory holding ``<group>/<name>.npz``; defaults to the environment
        variable ``SKAD_ADBENCH_DIR``.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features), dtype float64
    y : ndarray of shape (n_samples,), dtype int64
        1 = anomaly, 0 = normal.

    Raises
    ------
    FileNotFoundError
        When the directory or the file does not exist.
    ValueError
        When the file is not a valid ``.npz``, lacks ``X`` or ``y``, has
        inconsistent shapes, labels outside {0, 1} or non-finite features, or
        when a bare name is ambiguous.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from skad.datasets import load_adbench
    >>> d = tempfile.mkdtemp(); os.mkdir(os.path.join(d, "Classical"))
    >>> np.savez(os.path.join(d, "Classical", "1_toy.npz"),
    ...          X=np.zeros((5, 2), "float32"), y=np.array([0, 0, 0, 0, 1]))
    >>> X, y = load_adbench("1_toy", d)
    >>> X.dtype, X.shape, y.tolist()
    (dtype('float64'), (5, 2), [0, 0, 0, 0, 1])
    """
    path, _ = _resolve(name, data_dir)
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("X", "y") if k not in data.files]
            if missing:
                raise ValueError(
                    f"{str(path)!r} is not an ADBench file: arrays {missing} are "
                    f"missing (found {data.files})."
                )
            X = np.asarray(data["X"])
            y = np.asarray(data["y"])
    except ValueError as exc:
        if "is not an ADBench file" in str(exc):
            raise
        raise ValueError(f"Cannot read {str(path)!r} as an .npz file: {exc}") from exc
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(f"Cannot read {str(path)!r} as an .npz file: {exc}") from exc
    if X.ndim != 2 or y.ndim != 1 or X.shape[0] != y.shape[0]:
        raise ValueError(
            f"{str(path)!r} is malformed: X must be 2-D and y 1-D with one label "
            f"per row; got X {X.shape} and y {y.shape}."
        )
    if X.dtype.kind not in "iufb" or y.dtype.kind not in "iufb":
        raise ValueError(
            f"{str(path)!r} is malformed: X and y must be numeric, got "
            f"{X.dtype} and {y.dtype}."
        )
    values = np.unique(y)
    if not np.isin(values, (0, 1)).all():
        raise ValueError(
            f"{str(path)!r} is malformed: y must be 0 (normal) or 1 (anomaly); "
            f"found {values[:5].tolist()}."
        )
    X = X.astype(np.float64)
    if not np.isfinite(X).all():
        raise ValueError(f"{str(path)!r} is malformed: X has NaN or infinite values.")
    return X, y.astype(np.int64)


# ------------------------------------------------------------------ demo tasks
def _shuffle(X, y, rng):
    perm = rng.permutation(y.shape[0])
    return np.ascontiguousarray(X[perm], dtype=np.float64), y[perm].astype(np.int64)


def _normal_vs_rare(X, is_normal, n_anomalies, rng):
    normal = np.flatnonzero(is_normal)
    other = np.flatnonzero(~is_normal)
    n_anomalies = min(int(n_anomalies), other.size)
    picked = rng.choice(other, size=n_anomalies, replace=False)
    rows = np.r_[normal, picked]
    y = np.r_[np.zeros(normal.size, np.int64), np.ones(n_anomalies, np.int64)]
    return _shuffle(X[rows], y, rng)


def make_digits_task(normal_digit=0, n_anomalies=40, random_state=0):
    """Handwritten digits: one digit is normal, a few other digits are anomalies.

    Built from :func:`sklearn.datasets.load_digits` (8 x 8 images, 64
    features): every image of ``normal_digit`` (about 180) plus
    ``n_anomalies`` images drawn from the other digits.

    Parameters
    ----------
    normal_digit : int, default=0
    n_anomalies : int, default=40
    random_state : int, RandomState instance or None, default=0

    Returns
    -------
    X : ndarray of shape (n_samples, 64), dtype float64
    y : ndarray of shape (n_samples,), dtype int64
        1 = anomaly.

    Examples
    --------
    >>> from skad.datasets import make_digits_task
    >>> X, y = make_digits_task(normal_digit=3, n_anomalies=20)
    >>> X.shape[1], int(y.sum())
    (64, 20)
    """
    from sklearn.datasets import load_digits

    data = load_digits()
    rng = check_random_state(random_state)
    return _normal_vs_rare(data.data, data.target == normal_digit, n_anomalies, rng)


def make_breast_cancer_task(n_anomalies=30, random_state=0):
    """Breast cancer: benign tumours are normal, a few malignant ones anomalies.

    Built from :func:`sklearn.datasets.load_breast_cancer` (30 features):
    all 357 benign rows plus ``n_anomalies`` malignant rows drawn at random.

    Examples
    --------
    >>> from skad.datasets import make_breast_cancer_task
    >>> X, y = make_breast_cancer_task(n_anomalies=10)
    >>> X.shape, int(y.sum())
    ((367, 30), 10)
    """
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    rng = check_random_state(random_state)
    # target 1 = benign, 0 = malignant
    return _normal_vs_rare(data.data, data.target == 1, n_anomalies, rng)


def make_wine_task(normal_class=1, n_anomalies=10, random_state=0):
    """Wine: one cultivar is normal, a few wines of the others are anomalies.

    Built from :func:`sklearn.datasets.load_wine` (13 features, classes of
    59 / 71 / 48 rows).

    Examples
    --------
    >>> from skad.datasets import make_wine_task
    >>> X, y = make_wine_task()
    >>> X.shape, int(y.sum())
    ((81, 13), 10)
    """
    from sklearn.datasets import load_wine

    data = load_wine()
    rng = check_random_state(random_state)
    return _normal_vs_rare(data.data, data.target == normal_class, n_anomalies, rng)


def make_blobs_task(
    n_samples=1000, n_features=16, contamination=0.05, n_clusters=3, random_state=0
):
    """Synthetic global anomalies: Gaussian clusters on a low-dimensional
    manifold plus uniformly scattered rows.

    Normal rows come from ``n_clusters`` correlated Gaussian clusters living
    near a 4-dimensional subspace; anomalies are drawn uniformly in the
    bounding box of the normal rows, so they are not simply larger in norm.

    Examples
    --------
    >>> from skad.datasets import make_blobs_task
    >>> X, y = make_blobs_task(n_samples=200, contamination=0.1)
    >>> X.shape, int(y.sum())
    ((200, 16), 20)
    """
    rng = check_random_state(random_state)
    n_anomalies = int(round(contamination * n_samples))
    n_normal = n_samples - n_anomalies
    latent = min(4, n_features)
    basis = rng.normal(size=(latent, n_features))
    centres = rng.normal(scale=3.0, size=(n_clusters, latent))
    which = rng.randint(n_clusters, size=n_normal)
    Z = centres[which] + rng.normal(size=(n_normal, latent))
    normal = Z @ basis + 0.2 * rng.normal(size=(n_normal, n_features))
    lo, hi = normal.min(axis=0), normal.max(axis=0)
    anomalies = rng.uniform(lo, hi, size=(n_anomalies, n_features))
    X = np.vstack([normal, anomalies])
    y = np.r_[np.zeros(n_normal, np.int64), np.ones(n_anomalies, np.int64)]
    return _shuffle(X, y, rng)


def make_local_task(n_samples=1000, n_features=8, contamination=0.05, random_state=0):
    """Synthetic local anomalies: clusters of different densities, anomalies
    placed just outside the tight cluster (within the spread of the loose one).

    Density-based detectors (LOF, k-NN) do well here; detectors that only see
    global distance from the bulk do not.

    Examples
    --------
    >>> from skad.datasets import make_local_task
    >>> X, y = make_local_task(n_samples=200, contamination=0.1)
    >>> X.shape, int(y.sum())
    ((200, 8), 20)
    """
    rng = check_random_state(random_state)
    n_anomalies = int(round(contamination * n_samples))
    n_normal = n_samples - n_anomalies
    n_tight = n_normal // 2
    tight = rng.normal(scale=0.3, size=(n_tight, n_features))
    loose = 6.0 + rng.normal(scale=2.0, size=(n_normal - n_tight, n_features))
    direction = rng.normal(size=(n_anomalies, n_features))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    radius = rng.uniform(2.0, 3.0, size=(n_anomalies, 1)) * np.sqrt(n_features) * 0.3
    anomalies = direction * radius
    X = np.vstack([tight, loose, anomalies])
    y = np.r_[np.zeros(n_normal, np.int64), np.ones(n_anomalies, np.int64)]
    return _shuffle(X, y, rng)


def make_dependency_task(
    n_samples=1000, n_features=16, contamination=0.05, random_state=0
):
    """Synthetic dependency anomalies: normal marginals, broken correlations.

    Normal rows lie near a 3-dimensional linear subspace; each anomaly takes
    every feature from a different random normal row, so each of its values is
    typical on its own and only the joint structure betrays it. Detectors that
    look at one feature at a time (isolation trees, ECOD) find this hard.

    Examples
    --------
    >>> from skad.datasets import make_dependency_task
    >>> X, y = make_dependency_task(n_samples=200, contamination=0.1)
    >>> X.shape, int(y.sum())
    ((200, 16), 20)
    """
    rng = check_random_state(random_state)
    n_anomalies = int(round(contamination * n_samples))
    n_normal = n_samples - n_anomalies
    basis = rng.normal(size=(3, n_features))
    normal = rng.normal(size=(n_normal, 3)) @ basis
    normal += 0.3 * rng.normal(size=(n_normal, n_features))
    donors = rng.randint(n_normal, size=(n_anomalies, n_features))
    anomalies = normal[donors, np.arange(n_features)]
    X = np.vstack([normal, anomalies])
    y = np.r_[np.zeros(n_normal, np.int64), np.ones(n_anomalies, np.int64)]
    return _shuffle(X, y, rng)


def demo_tasks():
    """The tasks of the benchmark's ``demo`` suite.

    Returns
    -------
    tasks : dict of str to (callable, dict)
        Task name to ``(function, keyword arguments)``; calling
        ``function(**kwargs)`` returns ``(X, y)``.

    Examples
    --------
    >>> from skad.datasets import demo_tasks
    >>> fn, kwargs = demo_tasks()["wine"]
    >>> X, y = fn(**kwargs)
    >>> X.shape
    (81, 13)
    """
    return {
        "digits_0": (make_digits_task, {"normal_digit": 0}),
        "digits_8": (make_digits_task, {"normal_digit": 8}),
        "breast_cancer": (make_breast_cancer_task, {}),
        "wine": (make_wine_task, {}),
        "dependency": (make_dependency_task, {}),
        "local": (make_local_task, {}),
    }
