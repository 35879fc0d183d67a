"""
=========================================================
Semi-supervised detection: a few labelled anomalies help
=========================================================

:class:`skad.ESAD` and :class:`skad.DeepSAD` learn from unlabelled data plus
a few labels, given to ``fit`` as ``labels`` in Deep SAD's convention:
``+1`` labelled normal, ``0`` unlabelled, ``-1`` labelled anomaly.

ADBench stores its truth as ``y`` in {0, 1} (1 = anomaly).
:func:`skad.utils.semi_supervised_labels` turns it into training labels by
revealing a fraction of the training anomalies (here 10 %, the benchmark's
``--label-fraction 0.1``); every other row stays unlabelled. The truth of
the test rows is only used to score.

The data is ADBench's ``cardio`` when the ADBench files are found
(``$SKAD_ADBENCH_DIR`` or ``../shared/data/adbench`` next to the repository),
otherwise scikit-learn's breast-cancer data with malignant tumours as the
rare class.
"""

# %%
import os
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skad import ESAD, DeepSAD
from skad.datasets import load_adbench, make_breast_cancer_task
from skad.metrics import average_precision, roc_auc
from skad.utils import semi_supervised_labels


def find_adbench():
    candidates = [os.environ.get("SKAD_ADBENCH_DIR", "")]
    for base in (Path.cwd(), *Path.cwd().parents):
        candidates.append(base / "shared" / "data" / "adbench")
    return next((Path(c) for c in candidates if c and Path(c).is_dir()), None)


data_dir = find_adbench()
if data_dir is not None:
    name = "ADBench Classical/6_cardio"
    X, y = load_adbench("Classical/6_cardio", data_dir)
else:
    name = "breast cancer (scikit-learn)"
    X, y = make_breast_cancer_task(random_state=0)
print(f"{name}: {X.shape[0]} rows, {X.shape[1]} features, {y.mean():.1%} anomalies")

X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.3, stratify=y, random_state=0
)

# %%
# Convert the {0, 1} truth of the training rows into {+1, 0, -1} labels:
# 10 % of the training anomalies become ``-1``, everything else ``0``.
labels = semi_supervised_labels(y_train, labeled_fraction=0.1, random_state=0)
print(
    f"{np.sum(labels == -1)} labelled anomalies, {np.sum(labels == 0)} unlabelled "
    f"rows (of which {np.sum((labels == 0) & (y_train == 1))} are anomalies)"
)

# %%
# Each detector is fitted twice, without and with the labels. In a
# pipeline the labels reach the detector as a step parameter
# (``<step>__labels``); ``GridSearchCV(...).fit(X, y, labels=labels)`` splits
# them along the folds in the same way.
detectors = {
    "ESAD": ESAD(max_iter=50, device="cpu", random_state=0),
    "DeepSAD": DeepSAD(device="cpu", random_state=0),
}
results = {}
for det_name, det in detectors.items():
    step = det_name.lower()
    for with_labels in (False, True):
        model = make_pipeline(StandardScaler(), det)
        start = time.perf_counter()
        if with_labels:
            model.fit(X_train, **{f"{step}__labels": labels})
        else:
            model.fit(X_train)
        seconds = time.perf_counter() - start
        scores = model.score_samples(X_test)  # higher = more normal
        key = f"{det_name} ({'10% labels' if with_labels else 'no labels'})"
        results[key] = (
            roc_auc(y_test, scores),
            average_precision(y_test, scores),
            seconds,
        )

forest = make_pipeline(StandardScaler(), IsolationForest(random_state=0))
start = time.perf_counter()
forest.fit(X_train)
seconds = time.perf_counter() - start
scores = forest.score_samples(X_test)
results["IsolationForest (no labels)"] = (
    roc_auc(y_test, scores),
    average_precision(y_test, scores),
    seconds,
)

print(f"{'detector':<30}{'ROC AUC':>9}{'AP':>8}{'fit s':>8}")
for key, (auc, ap, seconds) in results.items():
    print(f"{key:<30}{auc:>9.3f}{ap:>8.3f}{seconds:>8.2f}")

# %%
# Average precision on the test rows, the metric that moves most when a
# detector learns what the known anomalies look like.
names = list(results)
fig, ax = plt.subplots(figsize=(7, 3))
colors = ["tab:blue" if "labels)" in k and "no" not in k else "tab:gray" for k in names]
ax.barh(names, [results[k][1] for k in names], color=colors)
ax.set_xlabel("test average precision")
ax.set_title(name)
fig.tight_layout()
plt.show()
