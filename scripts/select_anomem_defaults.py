"""Choose AnoMem's reconstructed defaults on validation splits of training rows.

Nothing here touches a benchmark test row. For every development dataset:

1. the benchmark's own protocol split (``prepare_split``, seed 0, 70/30) is
   applied and only its 70 % *training* rows are kept;
2. those training rows (normal and anomalous) are split again, stratified
   70/30 with seed 1000, into an inner training part and a validation part;
3. each candidate configuration is fitted on the inner training part in the
   requested setting (one-class: its normal rows; semi-supervised: all rows
   with a tenth of the anomalies labelled -1; unsupervised: all rows, no
   labels) inside the benchmark's ``StandardScaler`` pipeline and scored on
   the validation part.

The mean validation ROC AUC per configuration and setting is printed; rows
are appended to ``--output`` (resumable). Usage::

    python scripts/select_anomem_defaults.py --output sel.csv --jobs 2

The record, ``scripts/anomem_selection.csv``, holds every configuration ever
compared. Most of them varied switches that lost there and were removed
from AnoMem (``norm``, ``standardize_maps``, ``memory_contrast``,
``memory_init``, ``min_updates``), or a choice that is now a module constant
(``memory_temperature``), or ran 30 epochs with random initial slots; they
cannot run any more and stay in the CSV as the record. Their overrides of
the parameters AnoMem had then (``memory_init="random"`` unless named):

* ``previous``: ``memory_contrast="symmetric"``, ``max_iter=30``;
* ``one-way``: one-way memory contrast, ``max_iter=30``; the following
  change one thing of it: ``norm-layer`` (``norm="layer"``), ``norm-none``
  (``norm=None``), ``raw-maps`` (``standardize_maps=False``), ``head-only``
  (``combine_detectors=False``, today's ``anomaly_score="learned"``),
  ``sharp-memory`` (``memory_temperature=0.05``), ``wide-memory``
  (``n_prototypes=(256, 256, 256)``), ``euclidean``
  (``retrieval="euclidean"``);
* ``one-way-20``: one-way, ``max_iter=20``; the following change it:
  ``sharp-wide`` / ``sharper-wide`` (256 slots per scale,
  ``memory_temperature`` 0.05 / 0.02), ``first-scale``
  (``scale_weights=(1, 0, 0)``), ``scales-211`` (``scale_weights=(2, 1,
  1)``), ``min-updates`` (``min_updates=500``), ``combo`` (256 Euclidean
  slots per scale, ``scale_weights=(2, 1, 1)``);
* with ``memory_init="data"`` (today's fixed choice), 20 epochs:
  ``combo-data-sharp`` (``combo`` with ``memory_temperature=0.05``) and
  ``data-init-min`` (``min_updates=500``; ``max_iter="auto"``, the
  configuration ``data-init-auto`` below, is its closest current form but
  counts updates per epoch with a partial last batch, so it is not the same
  run).

``CONFIGS`` below are the configurations that still run, in today's
parameters; ``data-init`` is AnoMem's default and ``combo-data`` the
``AnoMem-wide`` benchmark variant.
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "adbench"

DEV_DATASETS = [
    "Classical/4_breastw",
    "Classical/6_cardio",
    "Classical/7_Cardiotocography",
    "Classical/12_fault",
    "Classical/14_glass",
    "Classical/18_Ionosphere",
    "Classical/20_letter",
    "Classical/27_PageBlocks",
    "Classical/29_Pima",
    "Classical/37_Stamps",
    "Classical/38_thyroid",
    "Classical/40_vowels",
    "Classical/41_Waveform",
    "Classical/42_WBC",
    "Classical/43_WDBC",
    "Classical/44_Wilt",
    "Classical/47_yeast",
    "CV_by_ResNet18/MVTec-AD_hazelnut",
    "CV_by_ResNet18/MVTec-AD_leather",
    "CV_by_ResNet18/MVTec-AD_pill",
    "CV_by_ViT/MVTec-AD_hazelnut",
    "CV_by_ViT/MVTec-AD_leather",
    "CV_by_ViT/MVTec-AD_pill",
]

#: Overrides of AnoMem's parameters that can still run (see the docstring
#: for the configurations of the record that cannot).
CONFIGS = {
    "data-init": {},
    "data-init-small": dict(n_prototypes=(16, 32, 64)),
    "combo-data": dict(
        n_prototypes=(256, 256, 256),
        retrieval="euclidean",
        scale_weights=(2, 1, 1),
    ),
    "combo-data-1024": dict(
        n_prototypes=(1024, 256, 256),
        retrieval="euclidean",
        scale_weights=(2, 1, 1),
    ),
    "data-init-auto": dict(max_iter="auto"),
}
REFERENCES = ("KNN",)
FIELDS = ["dataset", "setting", "config", "roc_auc", "fit_s", "n_fit", "n_val"]


def _job(dataset, setting, config, data=DATA):
    import torch
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from skad import AnoMem
    from skad.benchmark import prepare_split
    from skad.benchmark._baselines import KNN
    from skad.metrics import roc_auc

    torch.set_num_threads(1)
    with np.load(Path(data) / f"{dataset}.npz") as f:
        X, y = f["X"], f["y"]
    outer = prepare_split(X, y, 0, "unsupervised")
    inner = prepare_split(
        outer["X_train"], outer["y_train"], 1000, setting, max_samples=0
    )
    if config in REFERENCES:
        det = KNN()
    else:
        det = AnoMem(device="cpu", random_state=0, **CONFIGS[config])
    pipe = make_pipeline(StandardScaler(), det)
    start = time.perf_counter()
    if inner["labels"] is not None and config not in REFERENCES:
        pipe.fit(inner["X_train"], anomem__labels=inner["labels"])
    else:
        pipe.fit(inner["X_train"])
    fit_s = time.perf_counter() - start
    auc = roc_auc(inner["y_test"], pipe.score_samples(inner["X_test"]))
    return {
        "dataset": dataset,
        "setting": setting,
        "config": config,
        "roc_auc": round(float(auc), 4),
        "fit_s": round(fit_s, 2),
        "n_fit": inner["n_train"],
        "n_val": inner["n_test"],
    }


def main(argv=None):
    from joblib import Parallel, delayed

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="anomem_selection.csv")
    parser.add_argument("--configs", nargs="+", default=[*CONFIGS, *REFERENCES])
    parser.add_argument(
        "--settings", nargs="+", default=["one-class", "semi-supervised"]
    )
    parser.add_argument("--datasets", nargs="+", default=DEV_DATASETS)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--data", default=str(DATA), help="ADBench folder")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    done = set()
    if os.path.exists(args.output):
        with open(args.output) as f:
            done = {
                (r["dataset"], r["setting"], r["config"]) for r in csv.DictReader(f)
            }
    todo = [
        (d, s, c)
        for s in args.settings
        for c in args.configs
        for d in args.datasets
        if (d, s, c) not in done
    ]
    new = not os.path.exists(args.output)
    with open(args.output, "a", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        if new:
            writer.writeheader()
        results = Parallel(n_jobs=args.jobs, return_as="generator_unordered")(
            delayed(_job)(*t, data=args.data) for t in todo
        )
        for row in results:
            writer.writerow(row)
            f.flush()
            print(row, flush=True)
    _summarise(args.output)


def _summarise(path):
    with open(path) as f:
        rows = list(csv.DictReader(f))
    for setting in sorted({r["setting"] for r in rows}):
        sub = [r for r in rows if r["setting"] == setting]
        datasets = sorted({r["dataset"] for r in sub})
        print(f"\n{setting}: mean validation ROC AUC over datasets all configs share")
        by = {}
        for r in sub:
            by.setdefault(r["config"], {})[r["dataset"]] = r
        common = [d for d in datasets if all(d in v for v in by.values())]

        def mean_auc(v, prefix="", common=common):
            aucs = [float(v[d]["roc_auc"]) for d in common if d.startswith(prefix)]
            return np.mean(aucs) if aucs else float("nan")

        for config, v in sorted(by.items(), key=lambda kv: -mean_auc(kv[1])):
            fit = sum(float(v[d]["fit_s"]) for d in common)
            print(
                f"  {config:14s} all {mean_auc(v):.4f}"
                f"  Classical {mean_auc(v, 'Classical'):.4f}"
                f"  CV {mean_auc(v, 'CV'):.4f}  total fit {fit:7.1f} s"
                f"  (n={len(common)})"
            )


if __name__ == "__main__":
    main()
