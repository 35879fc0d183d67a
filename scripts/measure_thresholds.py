"""F1 of ``predict`` at three thresholds on the same fitted model.

For every ADBench Classical data set (unsupervised, seed 0, the benchmark's
protocol: ``prepare_split``, ``StandardScaler`` in a pipeline) DeepSVDD and
IsolationForest are fitted once, and the test rows are flagged at

* ``0.1``: the 90th percentile of the training anomaly scores (skad's default
  ``contamination=0.1``);
* ``auto``: Tukey's upper fence of the training anomaly scores (skad's
  ``contamination="auto"``);
* ``true``: the true share of anomalies in the training rows (an oracle).

It prints the mean F1 per detector and threshold and writes the per-dataset
values to ``--output``. Usage::

    python scripts/measure_thresholds.py --data-dir ../shared/data/adbench \\
        --output thresholds.csv
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import pandas as pd
import torch
from sklearn.ensemble import IsolationForest
from sklearn.metrics import f1_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import skad
from skad.base import _auto_threshold
from skad.benchmark import get_tasks, prepare_split

DETECTORS = {
    "DeepSVDD": lambda: skad.DeepSVDD(random_state=0, device="cpu"),
    "IsolationForest": lambda: IsolationForest(random_state=0),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/adbench")
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    rows = []
    for task in get_tasks("adbench", data_dir=args.data_dir, groups=["Classical"]):
        X, y = task.load()
        split = prepare_split(X, y, 0)
        y_test = split["y_test"]
        for name, make in DETECTORS.items():
            model = make_pipeline(StandardScaler(), make()).fit(split["X_train"])
            train = -model.score_samples(split["X_train"])
            test = -model.score_samples(split["X_test"])
            true_rate = float(split["y_train"].mean())
            thresholds = {
                "0.1": np.percentile(train, 90.0),
                "auto": _auto_threshold(train),
                "true": np.percentile(train, 100.0 * (1.0 - true_rate)),
            }
            row = {"dataset": task.name, "detector": name}
            for label, threshold in thresholds.items():
                flagged = (test > threshold).astype(int)
                row[f"f1_{label}"] = f1_score(y_test, flagged, zero_division=0)
            rows.append(row)
        print(task.name, flush=True)
    df = pd.DataFrame(rows)
    df.to_csv(args.output, index=False)
    print(df.groupby("detector")[["f1_0.1", "f1_auto", "f1_true"]].mean().round(3))


if __name__ == "__main__":
    main()
