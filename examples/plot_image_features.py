"""
=====================================================
Image features: when the normal class has many modes
=====================================================

Deep detectors rarely see raw pixels in practice: images first go through a
feature extractor, and the detector works on the resulting vectors. Here the
images are scikit-learn's bundled 8x8 digits and the features are their 20
leading principal components (:class:`~sklearn.decomposition.PCA`), standing
in for a pretrained network's embedding so that the example runs anywhere.

The task is chosen so that detectors *differ*: the normal class is five
digits (0 to 4), so normal features form five separate clusters, and the
anomalies are 60 images of the other digits. (With a single normal digit
every detector scores close to 1.0 and there is nothing to learn.)
One-class protocol: a stratified 70/30 split, every detector behind a
:class:`~sklearn.preprocessing.StandardScaler`, fitted on the normal
training images only, ROC AUC on the test images. Default parameters
everywhere; one split and one seed, so differences below about 0.02 are
noise.
"""

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.model_selection import train_test_split
from sklearn.neighbors import LocalOutlierFactor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skad import ESAD, SLA2P, AnoMem, DeepSVDD, ReverseDistillation
from skad.metrics import roc_auc

digits = load_digits()
is_normal = digits.target <= 4
rng = np.random.default_rng(0)
anomalies = rng.choice(np.flatnonzero(~is_normal), size=60, replace=False)
keep = np.r_[np.flatnonzero(is_normal), anomalies]
features = PCA(n_components=20, random_state=0).fit_transform(digits.data)
X, y, digit = features[keep], (~is_normal[keep]).astype(int), digits.target[keep]
print(f"{X.shape[0]} images, {X.shape[1]} features, {y.sum()} anomalies")

X_train, X_test, y_train, y_test, d_train, d_test = train_test_split(
    X, y, digit, test_size=0.3, stratify=y, random_state=0
)
X_normal = X_train[y_train == 0]

# %%
# Five skad detectors and two scikit-learn ones. LocalOutlierFactor with
# ``novelty=True`` scores new rows by their local density, which is
# indifferent to how many clusters the normal data has.
common = dict(device="cpu", random_state=0)
detectors = {
    "IsolationForest": IsolationForest(random_state=0),
    "LocalOutlierFactor": LocalOutlierFactor(novelty=True),
    "DeepSVDD": DeepSVDD(**common),
    "ESAD": ESAD(**common),
    "SLA2P": SLA2P(**common),
    "AnoMem": AnoMem(**common),
    "ReverseDistillation": ReverseDistillation(**common),
}
aucs, seconds = {}, {}
for det_name, det in detectors.items():
    start = time.process_time()
    model = make_pipeline(StandardScaler(), det).fit(X_normal)
    seconds[det_name] = time.process_time() - start
    aucs[det_name] = roc_auc(y_test, model.score_samples(X_test))
for det_name in sorted(aucs, key=aucs.get, reverse=True):
    auc, sec = aucs[det_name], seconds[det_name]
    print(f"{det_name:<20} ROC AUC {auc:.3f}  fit {sec:5.1f} s CPU")

# %%
# Left: the first two features; the five normal digits are five clusters,
# the anomalies lie between and around them. Right: the ROC AUCs.
#
# What this shows: detectors that model the normal data *as a whole* (one
# centre for Deep SVDD, a code norm for ESAD, random axis-aligned splits for
# IsolationForest, a pretext classifier for SLA2P) find "between two normal
# clusters" hard to tell from "inside one". Detectors that look locally (the
# density of LocalOutlierFactor) or that must *restore* each row's features
# (ReverseDistillation's student, AnoMem's prototype memories) handle many
# modes. Try a detector on features shaped like yours before choosing it.
fig, axes = plt.subplots(1, 2, figsize=(11, 4))
for d in range(5):
    axes[0].scatter(*X_normal[d_train[y_train == 0] == d, :2].T, s=6, label=f"{d}")
anomalous = X_test[y_test == 1, :2]
axes[0].scatter(*anomalous.T, s=18, c="black", marker="x", label="anomaly")
axes[0].set_xlabel("feature 1")
axes[0].set_ylabel("feature 2")
axes[0].legend(title="digit", fontsize=7, markerscale=2)
names = sorted(aucs, key=aucs.get)
axes[1].barh(names, [aucs[n] for n in names], color="tab:blue")
axes[1].axvline(0.5, color="grey", linestyle="--", linewidth=1)
axes[1].set_xlim(0.4, 1.0)
axes[1].set_xlabel("test ROC AUC (normal: digits 0-4)")
fig.tight_layout()
plt.show()
