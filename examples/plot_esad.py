"""
===============================================
ESAD: what its two-part score sees, and labels
===============================================

:class:`skad.ESAD` trains an encoder, a decoder and a second encoder end to
end. Its anomaly score adds two terms, each divided by its median over the
training rows: the **reconstruction error** of the row, and the **norm of
the code** that the second encoder gives to the reconstruction (training
pulls the codes of normal rows towards the origin). Labelled anomalies
(``fit(X, labels=...)``, ``-1``) are trained the opposite way: reconstructed
towards noise, their codes pushed away.

This example fits ESAD on the same training rows without labels and with
10 % of the training anomalies labelled, and plots the two terms of every
test row against each other. ``anomaly_score`` is read when scoring, so one
fitted model also gives each term alone (``"reconstruction"``, ``"norm"``).
The data is ADBench's ``cardio`` when the ADBench files are found
(``$SKAD_ADBENCH_DIR`` or ``shared/data/adbench`` in a folder above the
working directory), otherwise scikit-learn's breast-cancer data with a
subsample of the malignant tumours as the rare class. Default parameters
(100 epochs).
"""

# %%
import copy
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from skad import ESAD
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
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.3, stratify=y, random_state=0
)
scaler = StandardScaler().fit(X_train)
X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
labels = semi_supervised_labels(y_train, labeled_fraction=0.1, random_state=0)
print(f"{name}: {np.sum(labels == -1)} of {y_train.sum()} training anomalies labelled")

# %%
# Fit twice; score with the sum (the default) and with each term alone.
fits = {
    "no labels": ESAD(device="cpu", random_state=0).fit(X_train),
    "10% labels": ESAD(device="cpu", random_state=0).fit(X_train, labels=labels),
}
terms = {}
for fit_name, det in fits.items():
    for score in ("sum", "reconstruction", "norm"):
        s = copy.deepcopy(det).set_params(anomaly_score=score).score_samples(X_test)
        terms[fit_name, score] = -s  # anomaly score: higher = more anomalous
        print(
            f"{fit_name:<11} anomaly_score={score!r:<17} ROC AUC "
            f"{roc_auc(y_test, s):.3f}, AP {average_precision(y_test, s):.3f}"
        )

# %%
# Each test row by its two terms (log scales; 1 = the training median).
#
# What this shows: without labels, anomalies stand out mostly by being
# reconstructed badly, and the two terms agree on many of them, so their sum
# is a safe default. With a few labels the code norm becomes the sharper
# term: the second encoder has learnt where labelled anomalies go, and
# unlabelled anomalies that resemble them follow.
fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharex=True, sharey=True)
for ax, fit_name in zip(axes, fits):
    rec, norm = terms[fit_name, "reconstruction"], terms[fit_name, "norm"]
    ax.scatter(rec[y_test == 0], norm[y_test == 0], s=6, alpha=0.5, label="normal")
    ax.scatter(rec[y_test == 1], norm[y_test == 1], s=14, c="red", label="anomaly")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("reconstruction error / training median")
    ax.set_title(f"ESAD, {fit_name}")
axes[0].set_ylabel("code norm / training median")
axes[0].legend()
fig.tight_layout()
plt.show()
