"""
==========================================
AnoMem: one-class and with a few labels
==========================================

:class:`skad.AnoMem` learns an encoder and one memory of normal prototypes per
encoder stage, then scores how far each stage's features are from what its
memory retrieves. The same model also takes a few labelled anomalies
(``fit(X, labels=...)``): they become extra negatives in the first stage and
train a Deep-SAD head in the second.

This example fits three detectors on a 2-D toy problem (normal rows on two
moons; anomalies in a tight cluster between the moons plus a few scattered
ones) and draws their anomaly scores: one-class (fitted on the normal rows
only), unlabelled (fitted on all rows, anomalies included, without labels)
and the same rows with six anomalies of the cluster labelled. Without labels
the memory stores the anomaly cluster as one more normal pattern; six labels
make it anomalous again. It also prints the prototype-health attributes.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import make_moons
from sklearn.preprocessing import StandardScaler

from skad import AnoMem
from skad.metrics import roc_auc

rng = np.random.default_rng(0)
normal, _ = make_moons(n_samples=400, noise=0.06, random_state=0)
# anomalies: a tight cluster in the gap between the moons, plus scattered rows
anomalies = np.vstack(
    [
        rng.normal([0.5, 0.25], 0.08, size=(30, 2)),
        rng.uniform(-1.5, 2.5, size=(15, 2)),
    ]
)
X = np.vstack([normal, anomalies])
y = np.r_[np.zeros(len(normal), int), np.ones(len(anomalies), int)]
X = StandardScaler().fit_transform(X)

# a few labelled anomalies (-1); every other row is unlabelled (0)
labels = np.zeros(len(y), dtype=int)
labels[np.flatnonzero(y == 1)[:6]] = -1

params = dict(max_iter=40, device="cpu", random_state=0)
one_class = AnoMem(**params).fit(X[y == 0])
unlabelled = AnoMem(**params).fit(X)
semi = AnoMem(**params).fit(X, labels=labels)

for name, det in [
    ("one-class", one_class),
    ("unlabelled", unlabelled),
    ("6 labels", semi),
]:
    print(f"{name:>10} ROC AUC: {roc_auc(y, det.score_samples(X)):.3f}")
print("slot-usage entropy per scale:", np.round(one_class.slot_usage_entropy_, 2))
print("min slot distance per scale:", np.round(one_class.min_slot_distance_, 2))

# %%
# Anomaly score (``-score_samples``) on a grid; labelled anomalies are red.
xx, yy = np.meshgrid(np.linspace(-3, 3, 120), np.linspace(-3, 3, 120))
grid = np.c_[xx.ravel(), yy.ravel()]
fig, axes = plt.subplots(1, 3, figsize=(13, 4.5), sharey=True)
titles = ("one-class", "unlabelled, contaminated", "6 labels (Deep-SAD head)")
for ax, det, title in zip(axes, (one_class, unlabelled, semi), titles):
    z = -det.score_samples(grid).reshape(xx.shape)
    ax.contourf(xx, yy, z, levels=20, cmap="viridis")
    ax.scatter(*X[y == 0].T, s=6, c="white", label="normal")
    ax.scatter(*X[y == 1].T, s=12, c="orange", label="anomaly")
    ax.scatter(*X[labels == -1].T, s=40, c="red", marker="x", label="labelled")
    ax.set_title(title)
axes[0].legend(loc="lower left")
plt.tight_layout()
plt.show()
