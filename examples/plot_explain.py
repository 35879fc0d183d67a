"""
=================================================
Explaining anomaly scores: which features matter?
=================================================

:func:`skad.explain` attributes a detector's anomaly score to the input
features of every row (Integrated Gradients, computed by Captum), and
:func:`skad.plot_attributions` shows the largest attributions of one row.

The data is scikit-learn's bundled breast-cancer set with its 30 named
measurements: a one-class :class:`~skad.DeepSVDD`, behind a
:class:`~sklearn.preprocessing.StandardScaler` in a
:class:`~sklearn.pipeline.Pipeline`, is trained on benign tumours only and
scores held-out benign and malignant ones. Because the scaler scales each
feature by a constant, the attributions come back in the original columns,
with their names (a DataFrame in, a DataFrame out).
"""

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import skad
from skad.metrics import roc_auc

data = load_breast_cancer(as_frame=True)
X, malignant = data.data, data.target == 0  # target 0 = malignant
benign = X[~malignant]
X_train, X_benign_test = train_test_split(benign, test_size=0.3, random_state=0)
X_test = pd.concat([X_benign_test, X[malignant].sample(30, random_state=0)])
y_test = np.r_[np.zeros(len(X_benign_test), int), np.ones(30, int)]

model = make_pipeline(
    StandardScaler(), skad.DeepSVDD(max_iter=30, device="cpu", random_state=0)
)
model.fit(X_train)  # one-class: benign tumours only
print(f"test ROC AUC: {roc_auc(y_test, model.score_samples(X_test)):.3f}")

# %%
# Explain the five rows the model finds most anomalous. Each attribution is
# the part of the anomaly score (``-score_samples``) that a feature
# contributes, measured from the baseline: the per-feature median of the
# training rows (the default). Positive = pushes towards anomalous.
worst = X_test.iloc[np.argsort(model.score_samples(X_test))[:5]]
start = time.perf_counter()
attributions, delta = skad.explain(model, worst, return_delta=True)
ms = 1000 * (time.perf_counter() - start) / len(worst)
print(f"{ms:.0f} ms per row; attributions: {type(attributions).__name__}")
for label, row in attributions.iterrows():
    top = row.sort_values(ascending=False).index[:3]
    print(f"row {label} (malignant: {bool(malignant[label])}): {', '.join(top)}")

# %%
# Completeness: a row's attributions add up to the gap between its anomaly
# score and the baseline's, up to the integration error ``delta``.
gap = attributions.sum(axis=1) - delta
print(f"largest |delta| / |score gap|: {np.max(np.abs(delta) / np.abs(gap)):.1e}")

# %%
# The ten largest attributions of the most anomalous row. Here measurements
# of the tumour's size (areas, perimeters and their standard errors) push it
# towards anomalous the most.
ax = skad.plot_attributions(attributions, row=0, top=10)
ax.figure.tight_layout()
plt.show()

# %%
# Across all malignant test rows: the mean attribution of each feature
# (the eight largest), a global view built from the per-row explanations.
per_row = skad.explain(model, X_test[y_test == 1])
mean = per_row.mean().sort_values()[-8:]
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.barh(mean.index, mean.to_numpy(), color="tab:red")
ax.set_xlabel("mean attribution over malignant test rows")
fig.tight_layout()
plt.show()
