"""
===========================================================
Tabular data: unlabelled, normal-only or a few labels?
===========================================================

Which detector to use depends first on what you know about your training
rows. This example fits skad detectors and scikit-learn's
:class:`~sklearn.ensemble.IsolationForest` on one real table in the three
settings skad supports, and puts the results side by side:

* **unlabelled** (unsupervised): the training rows contain anomalies that
  nobody has marked. Shown twice: with ``train_contamination=0`` (the
  default: train on every row) and with ``train_contamination="auto"``
  (robust training: the 10 % most suspect rows are left out of training,
  but still scored);
* **normal-only** (one-class): the training rows are known to be clean;
* **a few labels** (semi-supervised): 10 % of the training anomalies are
  labelled, passed as ``fit(X, labels=...)`` to the detectors that take
  them (DeepSAD, ESAD, AnoMem).

The table is ADBench's ``cardio`` (1,831 foetal heart recordings, 21
features, 9.6 % anomalies) when the ADBench files are found
(``$SKAD_ADBENCH_DIR`` or ``shared/data/adbench`` in a folder above the
working directory), otherwise scikit-learn's bundled breast-cancer data with
a subsample of the malignant tumours as the rare class
(:func:`skad.datasets.make_breast_cancer_task`). The protocol is the
benchmark's: a stratified 70/30 split, a
:class:`~sklearn.preprocessing.StandardScaler` fitted on the training rows
inside a :class:`~sklearn.pipeline.Pipeline`, ROC AUC and average precision
on the test rows. Every detector runs with its default parameters; one seed
on one split, so differences below about 0.02 are noise.
"""

# %%
import os
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skad import ESAD, AnoMem, DeepSAD, DeepSVDD
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
print(f"{name}: {X.shape[0]} rows, {X.shape[1]} features, {y.mean():.1%} anomalies")

X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.3, stratify=y, random_state=0
)
# a few labels: 10 % of the training anomalies become -1, every other row 0
labels = semi_supervised_labels(y_train, labeled_fraction=0.1, random_state=0)
print(
    f"training rows: {len(y_train)} ({y_train.sum()} anomalies, "
    f"{np.sum(labels == -1)} of them labelled in the few-labels setting)"
)

# %%
# The four columns of the table. Each entry: the training rows, the fit
# keyword arguments (the labels), and the detectors that run in it. ``y`` is
# never passed to ``fit``: a detector only sees the truth through ``labels``.
common = dict(device="cpu", random_state=0)
settings = {
    "unlabelled": (X_train, False, {
        "IsolationForest": IsolationForest(random_state=0),
        "DeepSVDD": DeepSVDD(**common),
        "ESAD": ESAD(**common),
        "AnoMem": AnoMem(**common),
    }),
    'unlabelled,\ntrain_contamination="auto"': (X_train, False, {
        "DeepSVDD": DeepSVDD(train_contamination="auto", **common),
        "ESAD": ESAD(train_contamination="auto", **common),
        "AnoMem": AnoMem(train_contamination="auto", **common),
    }),
    "normal-only": (X_train[y_train == 0], False, {
        "IsolationForest": IsolationForest(random_state=0),
        "DeepSVDD": DeepSVDD(**common),
        "ESAD": ESAD(**common),
        "AnoMem": AnoMem(**common),
    }),
    "10% of anomalies\nlabelled": (X_train, True, {
        "DeepSAD": DeepSAD(**common),
        "ESAD": ESAD(**common),
        "AnoMem": AnoMem(**common),
    }),
}

results = {}  # (detector, setting) -> (ROC AUC, AP, CPU seconds)
for setting, (X_fit, with_labels, detectors) in settings.items():
    for det_name, det in detectors.items():
        model = make_pipeline(StandardScaler(), det)
        # in a pipeline the labels reach the detector as <step>__labels
        kwargs = {f"{det_name.lower()}__labels": labels} if with_labels else {}
        start = time.process_time()
        model.fit(X_fit, **kwargs)
        seconds = time.process_time() - start
        scores = model.score_samples(X_test)  # higher = more normal
        results[det_name, setting] = (
            roc_auc(y_test, scores),
            average_precision(y_test, scores),
            seconds,
        )

# %%
# The table (ROC AUC / average precision), the best ROC AUC of each setting
# marked with ``*``.
rows = ["IsolationForest", "DeepSVDD", "DeepSAD", "ESAD", "AnoMem"]
columns = list(settings)
winners = {
    c: max((r for r in rows if (r, c) in results), key=lambda r: results[r, c][0])
    for c in columns
}
short = ["unlabelled", "unlabelled, robust", "normal-only", "a few labels"]
print(f"{'':<16}" + "".join(f"{c:>22}" for c in short))
for r in rows:
    cells = []
    for c in columns:
        if (r, c) in results:
            auc, ap, _ = results[r, c]
            cells.append(f"{auc:.3f} / {ap:.3f}{'*' if winners[c] == r else ' '}")
        else:
            cells.append("-")
    print(f"{r:<16}" + "".join(f"{cell:>22}" for cell in cells))
total = sum(v[2] for v in results.values())
print(f"CPU time of the {len(results)} fits: {total:.0f} s")

# %%
# The same ROC AUCs as a figure; a box marks the winner of each setting.
# How to read it:
#
# * **Unlabelled**: the anomalies in the training rows are learned as normal
#   by every loss that pulls all rows in (DeepSVDD's centre, AnoMem's
#   memory). ``train_contamination="auto"`` leaves the most suspect rows out
#   and recovers part of the loss; on such data IsolationForest, which never
#   fits the anomalies closely, is hard to beat.
# * **Normal-only**: with clean training rows the deep detectors catch up
#   (all of them gain most in this column).
# * **A few labels**: a dozen labelled anomalies are worth more than any
#   choice of unsupervised detector; use a detector that takes ``labels``.
grid = np.full((len(rows), len(columns)), np.nan)
for i, r in enumerate(rows):
    for j, c in enumerate(columns):
        if (r, c) in results:
            grid[i, j] = results[r, c][0]
fig, ax = plt.subplots(figsize=(8.5, 3.8))
ax.imshow(grid, cmap="RdYlGn", vmin=0.4, vmax=1.0, aspect="auto")
for i, r in enumerate(rows):
    for j, c in enumerate(columns):
        if np.isnan(grid[i, j]):
            ax.text(j, i, "-", ha="center", va="center", color="grey")
            continue
        best = winners[c] == r
        ax.text(
            j, i, f"{grid[i, j]:.3f}", ha="center", va="center",
            fontweight="bold" if best else "normal",
        )
        if best:
            ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, lw=2.5))
ax.set_xticks(range(len(columns)), columns, fontsize=8)
ax.set_yticks(range(len(rows)), rows)
ax.set_title(f"test ROC AUC, {name}")
fig.tight_layout()
plt.show()
