"""
==========================================================
Discriminator-guided GAN: training losses on digit images
==========================================================

:class:`skad.DiscriminatorGuidedGAN` trains a generator by the guidance of a
discriminator that predicts which of eight rotations/flips was applied to an
image, instead of by a reconstruction error. Here the normal class is the
digit 2 of scikit-learn's 8x8 digits; every other digit is an anomaly. We fit
the guided generator and the GANomaly-style baseline
(``generator_loss="reconstruction"``), compare their ROC AUC and plot the
losses recorded per epoch in ``loss_components_``.
"""

# %%
# Data: digit 2 is normal
# -----------------------
# Images keep their (n, 1, 8, 8) shape: a 4-D ``X`` switches the detector to
# its image mode (small convolutional networks, rotations and flips as the
# pretext). A digit without rotational symmetry is chosen on purpose: for a
# 0 or a 1, a half turn gives back a normal-looking image, the pretext task
# becomes ambiguous and the guided generator loses to the reconstruction
# baseline (see the method page).
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits

from skad import DiscriminatorGuidedGAN
from skad.metrics import roc_auc

X, y = load_digits(return_X_y=True)
X = X.reshape(-1, 1, 8, 8) / 16.0
rng = np.random.default_rng(0)
normal = rng.permutation(np.flatnonzero(y == 2))
others = np.concatenate(
    [rng.choice(np.flatnonzero(y == d), 30, replace=False) for d in range(10) if d != 2]
)
X_train = X[normal[:120]]
X_test = np.concatenate([X[normal[120:]], X[others]])
y_test = np.r_[np.zeros(len(normal) - 120, int), np.ones(len(others), int)]

# %%
# Fit the guided detector and the reconstruction baseline
# -------------------------------------------------------
detectors = {
    "guided": DiscriminatorGuidedGAN(max_iter=60, device="cpu", random_state=0),
    "reconstruction": DiscriminatorGuidedGAN(
        generator_loss="reconstruction", max_iter=60, device="cpu", random_state=0
    ),
}
for name, det in detectors.items():
    det.fit(X_train)
    # roc_auc takes score_samples (higher = more normal) and flips the sign
    auc = roc_auc(y_test, det.score_samples(X_test))
    print(
        f"{name:>15}: ROC AUC {auc:.3f}, generator variance "
        f"{det.generator_variance_:.2f}, mode collapse: {det.mode_collapse_}"
    )

# %%
# Training losses over epochs
# ---------------------------
# ``d_pretext`` is the discriminator's rotation-prediction loss on real
# images (chance level: log 8 = 2.08). ``g_pretext`` is that loss on the
# generated images, which the guided generator minimises; the baseline
# minimises ``g_reconstruction`` instead. ``generator_variance`` falling
# towards zero would reveal a mode collapse.
keys = ["d_loss", "g_loss", "d_pretext", "g_pretext", "g_features"]
fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
for ax, (name, det) in zip(axes[:2], detectors.items()):
    epochs = np.arange(1, det.n_iter_ + 1)
    for key in keys:
        ax.plot(epochs, det.loss_components_[key], label=key)
    ax.set_title(f'generator_loss="{name}"')
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean loss")
axes[0].legend(fontsize=8)
for name, det in detectors.items():
    axes[2].plot(det.loss_components_["generator_variance"], label=name)
axes[2].axhline(0.05, color="grey", ls=":", label="collapse threshold")
axes[2].set_title("generator output variance / input variance")
axes[2].set_xlabel("epoch")
axes[2].legend(fontsize=8)
fig.tight_layout()
plt.show()
