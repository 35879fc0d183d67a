"""
=================================================
Deep SAD: how many labelled anomalies are enough?
=================================================

:class:`skad.DeepSAD` is Deep SVDD (:class:`skad.DeepSVDD`) trained with a
few labels: ``fit(X, labels=labels)`` with ``+1`` labelled normal, ``0``
unlabelled and ``-1`` labelled anomaly. Labelled anomalies are pushed away
from the centre, labelled normal rows pulled in; with no labels it *is* Deep
SVDD.

This example measures how the test ROC AUC and average precision grow with
the number of labelled anomalies among otherwise unlabelled, contaminated
training rows, once with ``train_contamination=0`` (train on every row) and
once with ``"auto"`` (robust training). The data is ADBench's ``cardio``
when the ADBench files are found (``$SKAD_ADBENCH_DIR`` or
``shared/data/adbench`` in a folder above the working directory), otherwise
scikit-learn's breast-cancer data with a subsample of the malignant tumours
as the rare class. Each point averages three random draws of which
anomalies are labelled; the training rows and the network's seed stay the
same. Default parameters; about 25 fits of a second each.
"""

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skad import DeepSAD
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
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.3, stratify=y, random_state=0
)
anomaly_rows = np.flatnonzero(y_train == 1)
print(f"{name}: {len(y_train)} training rows, {len(anomaly_rows)} anomalies")

# %%
# Label ``k`` randomly chosen training anomalies (-1); every other row stays
# unlabelled (0), the other anomalies included. ``k = 0`` is Deep SVDD.
counts = [0, 1, 2, 5, 10, 20]
counts = [k for k in counts if k <= len(anomaly_rows)]
variants = {
    "train_contamination=0": 0.0,
    'train_contamination="auto"': "auto",
}
results = {}  # (variant, k) -> (ROC AUC, AP), mean over the label draws
for variant, train_contamination in variants.items():
    model = make_pipeline(
        StandardScaler(),
        DeepSAD(
            train_contamination=train_contamination, device="cpu", random_state=0
        ),
    )
    for k in counts:
        runs = []
        for draw in range(3 if k else 1):
            labels = np.zeros(len(y_train), dtype=int)
            chosen = np.random.default_rng(draw).choice(anomaly_rows, k, replace=False)
            labels[chosen] = -1
            model.fit(X_train, deepsad__labels=labels)
            scores = model.score_samples(X_test)  # higher = more normal
            runs.append((roc_auc(y_test, scores), average_precision(y_test, scores)))
        results[variant, k] = np.mean(runs, axis=0)
        auc, ap = results[variant, k]
        print(f"{variant:<27}{k:>3} labels: ROC AUC {auc:.3f}, AP {ap:.3f}")

forest = make_pipeline(StandardScaler(), IsolationForest(random_state=0))
forest_scores = forest.fit(X_train).score_samples(X_test)
forest_auc = roc_auc(y_test, forest_scores)
forest_ap = average_precision(y_test, forest_scores)
print(f"IsolationForest (no labels): ROC AUC {forest_auc:.3f}, AP {forest_ap:.3f}")

# %%
# Test ROC AUC and average precision against the number of labelled
# anomalies (log scale; 0 drawn at the left edge).
#
# What this shows: on contaminated rows without labels, Deep SVDD learns the
# unlabelled anomalies as normal and stays far below IsolationForest.
# Labelled anomalies turn that around steadily, and robust training
# (``train_contamination="auto"``, which never leaves a labelled row out)
# adds to them: both curves rise, the robust one above. How many labels it
# takes to beat IsolationForest depends on the data; count on tens rather
# than a handful. To label efficiently, have someone check the rows your
# best unsupervised detector ranks highest.
x = np.array([max(k, 0.5) for k in counts])
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharex=True)
for ax, metric, i, forest_value in zip(
    axes, ["ROC AUC", "average precision"], [0, 1], [forest_auc, forest_ap]
):
    for variant in variants:
        ax.plot(x, [results[variant, k][i] for k in counts], "o-", label=variant)
    ax.axhline(forest_value, color="grey", ls=":", label="IsolationForest")
    ax.set_xscale("log")
    ax.set_xticks(x, [str(k) for k in counts])
    ax.set_xlabel("labelled anomalies in the training rows")
    ax.set_ylabel(f"test {metric}")
    ax.set_ylim(0, 1)
axes[0].legend(fontsize=8, loc="lower right")
fig.suptitle(f"Deep SAD, {name}")
fig.tight_layout()
plt.show()
