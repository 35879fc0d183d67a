"""
=============================================
Tuning a detector with GridSearchCV
=============================================

skad detectors are scikit-learn estimators, so
:class:`~sklearn.model_selection.GridSearchCV` tunes them like any other
model. Two details are specific to anomaly detection:

* the scorer must know that *higher* ``score_samples`` means *more normal*:
  use the scorers of :mod:`skad.metrics` (here ROC AUC and average
  precision, with ``refit="roc_auc"`` choosing the model);
* a detector is not a classifier, so pass a
  :class:`~sklearn.model_selection.StratifiedKFold` to keep anomalies in
  every fold.

The search needs the truth ``y`` for scoring only: every fold trains without
labels (unsupervised setting). The final model is refitted on all the
training rows and evaluated on held-out test rows never seen by the search.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skad import DeepSVDD
from skad.datasets import make_breast_cancer_task
from skad.metrics import SCORERS, roc_auc

X, y = make_breast_cancer_task(random_state=0)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.3, stratify=y, random_state=0
)
print(f"{X_train.shape[0]} training rows ({y_train.sum()} anomalies, unlabelled)")

pipe = make_pipeline(
    StandardScaler(), DeepSVDD(max_iter=10, device="cpu", random_state=0)
)
grid = {
    "deepsvdd__latent_dim": [4, 16],
    "deepsvdd__hidden_layer_sizes": [(32,), (64, 32)],
}
search = GridSearchCV(
    pipe,
    grid,
    scoring={"roc_auc": SCORERS["roc_auc"], "ap": SCORERS["average_precision"]},
    refit="roc_auc",
    cv=StratifiedKFold(n_splits=3, shuffle=True, random_state=0),
    n_jobs=1,  # n_jobs=2 runs the fits in two processes (see the user guide)
)
search.fit(X_train, y_train)

print("best parameters:", search.best_params_)
print(f"best cross-validated ROC AUC: {search.best_score_:.3f}")
print(f"held-out test ROC AUC: {roc_auc(y_test, search.score_samples(X_test)):.3f}")

# %%
# Mean cross-validated ROC AUC of each candidate (bars: standard deviation
# across the folds).
res = search.cv_results_
labels = [
    f"latent={p['deepsvdd__latent_dim']}\nhidden={p['deepsvdd__hidden_layer_sizes']}"
    for p in res["params"]
]
order = np.argsort(res["mean_test_roc_auc"])
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.barh(
    np.array(labels)[order],
    res["mean_test_roc_auc"][order],
    xerr=res["std_test_roc_auc"][order],
    color="tab:blue",
)
ax.set_xlabel("mean ROC AUC over 3 folds")
ax.set_xlim(0.5, 1.0)
fig.tight_layout()
plt.show()
