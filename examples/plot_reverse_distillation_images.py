"""
========================================================
Reverse distillation on image features and on raw images
========================================================

:class:`skad.ReverseDistillation` trains a student decoder to restore the
features of a frozen teacher from a narrow one-class embedding; rows whose
features the student cannot restore are anomalous.

*Part 1* uses feature vectors, the usual input: ADBench's features of the
MVTec-AD *bottle* images (512 features per image from an ImageNet-pretrained
ResNet-18; broken bottles are the anomalies) when the ADBench files are found
(``$SKAD_ADBENCH_DIR`` or ``shared/data/adbench`` above the working
directory), else the 8x8 pixels of scikit-learn's digits (zeros normal). It
compares the two built-in teachers, a frozen random orthogonal MLP and an
MLP pre-trained as an autoencoder, with a 5-nearest-neighbour distance.

*Part 2* shows image mode: 8x8 digit images of shape ``(n, 1, 8, 8)`` with a
small convolutional teacher, and the per-pixel anomaly maps of
:meth:`~skad.ReverseDistillation.anomaly_map`. A real application would pass
a pretrained backbone (for example torchvision's Wide-ResNet-50 returning its
``layer1``-``layer3`` maps); the tiny random teacher here only shows the
mechanics.

One-class protocol: stratified 70/30 split, training on the normal training
rows only, ROC AUC on the test rows.
"""

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler
from torch import nn

from skad import ReverseDistillation
from skad.datasets import load_adbench, make_digits_task
from skad.metrics import roc_auc


def find_adbench():
    candidates = [os.environ.get("SKAD_ADBENCH_DIR", "")]
    for base in (Path.cwd(), *Path.cwd().parents):
        candidates.append(base / "shared" / "data" / "adbench")
    return next((Path(c) for c in candidates if c and Path(c).is_dir()), None)


data_dir = find_adbench()
if data_dir is not None:
    name = "MVTec-AD bottle, ResNet-18 features"
    X, y = load_adbench("CV_by_ResNet18/MVTec-AD_bottle", data_dir)
else:
    name = "digits pixels (0 = normal)"
    X, y = make_digits_task(normal_digit=0, n_anomalies=40, random_state=0)
print(f"{name}: {X.shape[0]} rows, {X.shape[1]} features, {y.sum()} anomalies")

X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.3, stratify=y, random_state=0
)
scaler = StandardScaler().fit(X_train[y_train == 0])
X_normal = scaler.transform(X_train[y_train == 0])
X_test = scaler.transform(X_test)

# %%
# Both teachers, next to the k-nearest-neighbour distance (a strong baseline
# on pretrained features). ``score_samples`` is higher for more normal rows,
# so the anomaly score is its negation.
scores = {}
for teacher in ("random", "pretrained_ae"):
    det = ReverseDistillation(teacher=teacher, random_state=0, device="cpu")
    det.fit(X_normal)
    scores[f"RD, {teacher} teacher"] = -det.score_samples(X_test)
knn = NearestNeighbors(n_neighbors=5).fit(X_normal)
scores["5-NN distance"] = knn.kneighbors(X_test)[0][:, -1]

fig, axes = plt.subplots(1, len(scores), figsize=(11, 3), sharey=True)
for ax, (label, s) in zip(axes, scores.items()):
    auc = roc_auc(y_test, -s)
    ax.hist(s[y_test == 0], bins=20, alpha=0.6, label="normal")
    ax.hist(s[y_test == 1], bins=20, alpha=0.6, label="anomaly")
    ax.set_title(f"{label}\nROC AUC {auc:.3f}", fontsize=9)
    ax.set_xlabel("anomaly score")
    print(f"{label:28s} ROC AUC {auc:.3f}")
axes[0].legend()
fig.suptitle(name)
fig.tight_layout()

# %%
# Image mode. The teacher is any frozen ``torch.nn.Module`` that maps a batch
# of images to a list of feature maps, fine to coarse (here 8x8, 4x4 and
# 2x2). The estimator deep-copies it and never trains it.


class TinyTeacher(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.c3 = nn.Conv2d(16, 32, 3, stride=2, padding=1)

    def forward(self, x):
        f1 = torch.relu(self.c1(x))
        f2 = torch.relu(self.c2(f1))
        return [f1, f2, torch.relu(self.c3(f2))]


with torch.random.fork_rng():  # leave the global torch RNG as it was
    torch.manual_seed(0)
    teacher = TinyTeacher()

digits = load_digits()
images = (digits.data / 16.0).reshape(-1, 1, 8, 8)
is_anomaly = (digits.target != 0).astype(int)
img_train, img_test, ya, yb = train_test_split(
    images, is_anomaly, test_size=0.3, stratify=is_anomaly, random_state=0
)
rd_img = ReverseDistillation(
    teacher=teacher,
    latent_dim=8,
    sigma=1.0,  # the paper's sigma=4 is meant for 256x256 images
    max_iter=25,
    batch_size=32,
    random_state=0,
    device="cpu",
).fit(img_train[ya == 0])
img_auc = roc_auc(yb, rd_img.score_samples(img_test))
print(f"image mode, digit 0 normal: ROC AUC {img_auc:.3f}")

# %%
# Anomaly maps have the input's spatial size; the image score is their
# maximum.
pick = np.r_[np.flatnonzero(yb == 0)[:3], np.flatnonzero(yb == 1)[:3]]
maps = rd_img.anomaly_map(img_test[pick])
vmax = maps.max()
fig, axes = plt.subplots(2, len(pick), figsize=(10, 3.6))
for j, i in enumerate(pick):
    axes[0, j].imshow(img_test[i, 0], cmap="gray_r")
    axes[0, j].set_title("normal" if yb[i] == 0 else "anomaly", fontsize=9)
    axes[1, j].imshow(maps[j], cmap="inferno", vmin=0, vmax=vmax)
    axes[1, j].set_title(f"max {maps[j].max():.2f}", fontsize=9)
for ax in axes.ravel():
    ax.set_axis_off()
fig.tight_layout()
plt.show()
