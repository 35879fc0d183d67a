"""
=========================================
Beyond one machine: Dask
=========================================

Two ways to scale skad with `Dask <https://www.dask.org>`_ (``pip install
"skad[dask]"``):

1. **Distributed hyper-parameter search.** Inside
   ``joblib.parallel_backend("dask")`` a
   :class:`~sklearn.model_selection.GridSearchCV` sends its fits to the
   workers of a Dask cluster; nothing else changes.
2. **Batch scoring of data larger than memory.** Fit on a sample, then score
   a :class:`dask.array.Array` block by block with ``map_blocks`` (or
   predict with :class:`dask_ml.wrappers.ParallelPostFit`). A row's score
   never depends on the other rows of its batch, so scoring by blocks gives
   exactly the scores of scoring everything at once.

The cluster here is a :class:`distributed.LocalCluster` of two workers that
are threads of this process, so that the example runs anywhere; point a
:class:`distributed.Client` at a real scheduler to use many machines.
Threads of one process share PyTorch's thread pool, hence
:func:`skad.utils.torch_threads` (worker *processes* started by a Dask nanny
already get ``OMP_NUM_THREADS=1``).
"""

# %%
import time

import dask.array as da
import joblib
import matplotlib.pyplot as plt
import numpy as np
from dask_ml.wrappers import ParallelPostFit
from distributed import Client, LocalCluster
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skad import DeepSVDD
from skad.datasets import make_blobs_task
from skad.metrics import roc_auc_scorer
from skad.utils import torch_threads

X, y = make_blobs_task(random_state=0)
print(f"search data: {X.shape[0]} rows, {X.shape[1]} features, {y.sum()} anomalies")

cluster = LocalCluster(
    n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
)
client = Client(cluster)

search = GridSearchCV(
    make_pipeline(
        StandardScaler(), DeepSVDD(max_iter=10, device="cpu", random_state=0)
    ),
    {"deepsvdd__latent_dim": [2, 8], "deepsvdd__hidden_layer_sizes": [(16,), (32,)]},
    scoring=roc_auc_scorer,
    cv=StratifiedKFold(n_splits=3, shuffle=True, random_state=0),
)
start = time.perf_counter()
with torch_threads(1), joblib.parallel_backend("dask"):
    search.fit(X, y)
print(
    f"dask search: {len(search.cv_results_['params']) * 3} fits in "
    f"{time.perf_counter() - start:.1f} s on {len(client.nthreads())} workers"
)
print("best parameters:", search.best_params_)
print(f"best cross-validated ROC AUC: {search.best_score_:.3f}")

# %%
# Batch scoring. The fitted pipeline scores a lazily generated dask array of
# 400,000 rows in blocks of 50,000 (each block: rows resampled from the data
# above plus a little noise, made only when the block is computed); only the
# per-row scores are kept.
model = search.best_estimator_


def make_block(block_id=None):
    block_rng = np.random.default_rng(block_id[0])
    rows = X[block_rng.integers(0, X.shape[0], size=50_000)]
    return rows + 0.05 * block_rng.normal(size=rows.shape)


X_big = da.map_blocks(
    make_block, chunks=((50_000,) * 8, (X.shape[1],)), dtype=np.float64
)

scores = X_big.map_blocks(model.score_samples, drop_axis=1, dtype=np.float64)
start = time.perf_counter()
with torch_threads(1):
    scores = scores.compute()
print(
    f"scored {scores.shape[0]:,} rows in {scores.size // 50_000} blocks in "
    f"{time.perf_counter() - start:.1f} s"
)

# Block-wise scores equal in-memory scores of the same rows.
first_block = X_big[:50_000].compute()
print(
    "same as scoring in memory:",
    np.array_equal(scores[:50_000], model.score_samples(first_block)),
)

# ParallelPostFit wraps a fitted model; its predict runs block by block too.
outliers = ParallelPostFit(estimator=model).predict(X_big)
with torch_threads(1):
    share = float((outliers == -1).mean().compute())
print(
    f"share predicted as outliers: {share:.3f} (contamination "
    f"{model[-1].contamination}, {y.mean():.2f} of the resampled rows are anomalies)"
)

client.close()
cluster.close()

# %%
# Distribution of the anomaly scores (``-score_samples``) of the big array.
fig, ax = plt.subplots(figsize=(6, 3.2))
ax.hist(-scores, bins=100, color="tab:blue")
ax.axvline(-model[-1].offset_, color="tab:red", label="threshold (offset_)")
ax.set_yscale("log")
ax.set_xlabel("anomaly score")
ax.set_ylabel("rows")
ax.legend()
fig.tight_layout()
plt.show()
