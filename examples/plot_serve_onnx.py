"""
==========================================
Serving a detector with onnxruntime only
==========================================

:func:`skad.export_onnx` turns a fitted detector, or a
:class:`~sklearn.pipeline.Pipeline` of scikit-learn preprocessing ending with
one, into a single ONNX graph: skl2onnx converts the preprocessing, torch's
exporter the network. The serving side then needs ``numpy`` and
``onnxruntime``, nothing else: no Python packages of skad, torch or
scikit-learn.

This example trains a :class:`~skad.ESAD` behind a
:class:`~sklearn.preprocessing.StandardScaler` on benign breast tumours,
exports it, scores held-out rows in a separate Python process that imports
onnxruntime only, checks that those scores equal skad's, and compares the
scoring speed.
"""

# %%
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import skad

X, y = load_breast_cancer(return_X_y=True)
benign, malignant = X[y == 1], X[y == 0]
model = make_pipeline(
    StandardScaler(), skad.ESAD(max_iter=30, device="cpu", random_state=0)
).fit(benign[:250])

workdir = Path(tempfile.mkdtemp())
path = workdir / "detector.onnx"
skad.export_onnx(model, path)
print(f"exported {path.name}: {path.stat().st_size / 1024:.0f} KiB")

# %%
# The serving process. The graph takes float64 rows ``X`` (any number) and
# returns ``score_samples`` (higher = more normal), ``decision_function``
# and ``predict`` (+1 inlier, -1 outlier), as the Pipeline does.
rows = np.vstack([benign[250:], malignant])
np.save(workdir / "rows.npy", rows)
serve = f"""
import sys
import numpy as np
import onnxruntime as ort

session = ort.InferenceSession({str(path)!r}, providers=["CPUExecutionProvider"])
X = np.load({str(workdir / "rows.npy")!r})
scores, decision, labels = session.run(None, {{"X": X}})
np.save({str(workdir / "scores.npy")!r}, scores)
loaded = sorted(m for m in ("torch", "sklearn", "skad") if m in sys.modules)
print(f"served {{len(X)}} rows; {{(labels == -1).sum()}} outliers; loaded: {{loaded}}")
"""
result = subprocess.run(
    [sys.executable, "-c", serve], capture_output=True, text=True, check=True
)
print(result.stdout.strip())

# %%
# The served scores equal skad's within float32 rounding.
served = np.load(workdir / "scores.npy")
expected = model.score_samples(rows)
error = np.max(np.abs(served - expected) / np.abs(expected))
print(f"largest relative error: {error:.1e}")

# %%
# Scoring speed on 10,000 rows (one call) and on one row at a time, with one
# thread each. skad scores in padded chunks of a fixed shape (so that a
# row's score never depends on the others), which makes a single row cost
# as much as a full chunk; onnxruntime runs the graph on the rows it gets.
import onnxruntime as ort  # noqa: E402

options = ort.SessionOptions()
options.intra_op_num_threads = 1
session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
many = np.resize(rows, (10_000, rows.shape[1]))


def best_of(fn, repeat=3):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


import torch  # noqa: E402

threads = torch.get_num_threads()
torch.set_num_threads(1)
timings = {
    "skad, 10,000 rows": best_of(lambda: model.score_samples(many)),
    "onnxruntime, 10,000 rows": best_of(lambda: session.run(None, {"X": many})),
    "skad, 1 row": best_of(lambda: model.score_samples(many[:1])),
    "onnxruntime, 1 row": best_of(lambda: session.run(None, {"X": many[:1]})),
}
torch.set_num_threads(threads)
for what, seconds in timings.items():
    print(f"{what:<26}{1000 * seconds:9.2f} ms")

fig, ax = plt.subplots(figsize=(6, 2.8))
names = list(timings)[::-1]
ax.barh(names, [1000 * timings[k] for k in names], color="tab:green")
ax.set_xscale("log")
ax.set_xlabel("scoring time (ms, log scale, one thread)")
fig.tight_layout()
plt.show()
