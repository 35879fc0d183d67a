"""
================================================
SLA2P on image embeddings (ResNet-18 features)
================================================

:class:`skad.SLA2P` needs no image model of its own: it works on any feature
vectors. Each row is mapped by ``n_transforms`` random Gaussian projections,
a classifier learns which projection produced each transformed vector, and
rows whose projections it cannot tell apart (after a small adversarial step)
are anomalous.

This example uses the ADBench ``CV_by_ResNet18/MVTec-AD_bottle`` features
(512-d embeddings of images of bottles, defective ones are the anomalies)
when the data directory is available, and the pixels of scikit-learn's
digits (zeros as normal rows, a few other digits as anomalies) otherwise. It
compares SLA2P with and without the scoring-time perturbation (the paper's
ablation) and with :class:`~sklearn.ensemble.IsolationForest`, fitted on
contaminated training rows (the unsupervised setting).
"""

# %%
import copy
import os

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.ensemble import IsolationForest
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from skad import SLA2P
from skad.metrics import roc_auc

path = "/work/shared/data/adbench/CV_by_ResNet18/MVTec-AD_bottle.npz"
if os.path.exists(path):
    data = np.load(path)
    X, y = data["X"].astype(np.float64), data["y"].astype(int)
    title = "MVTec-AD bottle, ResNet-18 features"
else:
    digits = load_digits()
    rng = np.random.default_rng(0)
    normal = digits.data[digits.target == 0]
    others = digits.data[digits.target != 0]
    anomalies = others[rng.choice(len(others), size=20, replace=False)]
    X = np.vstack([normal, anomalies])
    y = np.r_[np.zeros(len(normal), int), np.ones(len(anomalies), int)]
    title = "digits: zeros vs. other digits (pixels)"

X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.3, stratify=y, random_state=0
)
scaler = StandardScaler().fit(X_train)
X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)

# %%
# Fit once; the perturbation only acts when scoring, so the ablation without
# it reuses the same trained classifier.
sla2p = SLA2P(device="cpu", random_state=0).fit(X_train)
no_step = copy.deepcopy(sla2p).set_params(perturbation=False)
iforest = IsolationForest(random_state=0).fit(X_train)

print(f"training stopped after {sla2p.n_iter_} epochs")
print(f"running training accuracy: {sla2p.train_accuracy_:.2f}")
scores = {
    "SLA2P": sla2p.score_samples(X_test),
    "SLA2P, no perturbation": no_step.score_samples(X_test),
    "IsolationForest": iforest.score_samples(X_test),
}
for name, s in scores.items():
    print(f"{name:>24}: test ROC AUC {roc_auc(y_test, s):.3f}")

# %%
# Anomaly scores (``-score_samples``) of the test rows.
fig, axes = plt.subplots(1, 2, figsize=(10, 4))
s = -scores["SLA2P"]
bins = np.linspace(s.min(), s.max(), 30)
axes[0].hist(s[y_test == 0], bins=bins, alpha=0.7, label="normal")
axes[0].hist(s[y_test == 1], bins=bins, alpha=0.7, label="anomaly")
axes[0].set_xlabel("SLA2P anomaly score")
axes[0].set_title(title)
axes[0].legend()
names = list(scores)
axes[1].barh(names, [roc_auc(y_test, scores[n]) for n in names])
axes[1].set_xlim(0.5, 1.0)
axes[1].set_xlabel("test ROC AUC")
fig.tight_layout()
plt.show()
