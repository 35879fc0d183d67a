"""
=================================================
Images: anomalies among pretrained image features
=================================================

Deep detectors rarely see raw pixels in practice: images first go through a
pretrained network and the detector works on the resulting feature vectors.
This example uses ADBench's features of the MVTec-AD *hazelnut* images
(512 features per image from an ImageNet-pretrained ResNet-18; defective nuts
are the anomalies) when the ADBench files are found (``$SKAD_ADBENCH_DIR`` or
``../shared/data/adbench`` next to the repository). Otherwise it falls back
to the raw 8x8 pixels of scikit-learn's bundled digits, with zeros as normal
images and a few other digits as anomalies
(:func:`skad.datasets.make_digits_task`).

One-class protocol: a stratified 70/30 split, training on the normal
training images only, ROC AUC on the test images.
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

from skad import DeepSVDD
from skad.datasets import load_adbench, make_digits_task
from skad.metrics import roc_auc


def find_adbench():
    candidates = [os.environ.get("SKAD_ADBENCH_DIR", "")]
    for base in (Path.cwd(), *Path.cwd().parents):
        candidates.append(base / "shared" / "data" / "adbench")
    return next((Path(c) for c in candidates if c and Path(c).is_dir()), None)


data_dir = find_adbench()
if data_dir is not None:
    name = "MVTec-AD hazelnut, ResNet-18 features"
    X, y = load_adbench("CV_by_ResNet18/MVTec-AD_hazelnut", data_dir)
else:
    name = "digits pixels (0 = normal)"
    X, y = make_digits_task(normal_digit=0, n_anomalies=40, random_state=0)
print(f"{name}: {X.shape[0]} images, {X.shape[1]} features, {y.sum()} anomalies")

X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.3, stratify=y, random_state=0
)
X_normal = X_train[y_train == 0]

# %%
# Deep SVDD and Isolation Forest, each behind a StandardScaler. (The
# ReverseDistillation example shows a detector designed for image features.)
detectors = {
    "DeepSVDD": DeepSVDD(max_iter=30, device="cpu", random_state=0),
    "IsolationForest": IsolationForest(random_state=0),
}
test_scores = {}
for det_name, det in detectors.items():
    model = make_pipeline(StandardScaler(), det).fit(X_normal)
    test_scores[det_name] = model.score_samples(X_test)
    print(f"{det_name:<20} test ROC AUC {roc_auc(y_test, test_scores[det_name]):.3f}")

# %%
# Anomaly scores (``-score_samples``) of normal and anomalous test images.
fig, axes = plt.subplots(1, len(test_scores), figsize=(4 * len(test_scores), 3.2))
for ax, (det_name, s) in zip(axes, test_scores.items()):
    bins = np.linspace(-s.max(), -s.min(), 30)
    ax.hist(-s[y_test == 0], bins=bins, alpha=0.7, label="normal")
    ax.hist(-s[y_test == 1], bins=bins, alpha=0.7, label="anomaly")
    ax.set_title(f"{det_name} (AUC {roc_auc(y_test, s):.2f})")
    ax.set_xlabel("anomaly score")
axes[0].set_ylabel("test images")
axes[0].legend()
fig.suptitle(name)
fig.tight_layout()
plt.show()
