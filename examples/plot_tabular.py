"""
=====================================
Tabular data: every detector compared
=====================================

Fits every skad detector and scikit-learn's :class:`~sklearn.ensemble.IsolationForest`
on one tabular anomaly-detection dataset, with the benchmark's one-class
protocol: a stratified 70/30 split, a :class:`~sklearn.preprocessing.StandardScaler`
fitted on the training rows inside a :class:`~sklearn.pipeline.Pipeline`, and
training on the normal training rows only. It prints ROC AUC, average
precision and fit time on the test rows, and plots the ROC AUCs.

The data is ADBench's ``cardio`` (1,831 heart recordings, 9.6% anomalies)
when the ADBench files are found (``$SKAD_ADBENCH_DIR`` or
``../shared/data/adbench`` next to the repository), otherwise scikit-learn's
bundled breast-cancer data with malignant tumours as the rare class
(:func:`skad.datasets.make_breast_cancer_task`).
"""

# %%
import os
import time
from pathlib import Path

import matplotlib.pyplot as plt
from sklearn.base import clone
from sklearn.ensemble import IsolationForest
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import skad
from skad.datasets import load_adbench, make_breast_cancer_task
from skad.metrics import average_precision, roc_auc


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
X_normal = X_train[y_train == 0]  # one-class setting: normal rows only

# %%
# Every detector on the CPU with a fixed seed. To keep the example under a
# minute the numbers of epochs and updates are capped wherever a detector has
# such a parameter (the benchmark page reports default hyper-parameters).
SHORT_TRAINING = {
    "max_iter": 10,
    "detector_max_iter": 10,
    "pretrain_epochs": 10,
    "min_updates": 200,
}
detectors = {"IsolationForest": IsolationForest(random_state=0)}
for det_name, cls in skad.all_estimators():
    det = cls(device="cpu", random_state=0)
    own = det.get_params()
    det.set_params(**{k: v for k, v in SHORT_TRAINING.items() if k in own})
    detectors[det_name] = det

results = {}
for det_name, det in detectors.items():
    model = make_pipeline(StandardScaler(), clone(det))
    start = time.perf_counter()
    model.fit(X_normal)
    seconds = time.perf_counter() - start
    scores = model.score_samples(X_test)  # higher = more normal
    results[det_name] = (
        roc_auc(y_test, scores),
        average_precision(y_test, scores),
        seconds,
    )

print(f"{'detector':<26}{'ROC AUC':>9}{'AP':>8}{'fit s':>8}")
for det_name, (auc, ap, seconds) in sorted(results.items(), key=lambda t: -t[1][0]):
    print(f"{det_name:<26}{auc:>9.3f}{ap:>8.3f}{seconds:>8.2f}")

# %%
# ROC AUC on the test rows (0.5 = chance).
names = sorted(results, key=lambda k: results[k][0])
fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1))
ax.barh(names, [results[k][0] for k in names], color="tab:blue")
ax.axvline(0.5, color="grey", linestyle="--", linewidth=1)
ax.set_xlim(0.4, 1.0)
ax.set_xlabel("test ROC AUC (one-class training)")
ax.set_title(name)
fig.tight_layout()
plt.show()
