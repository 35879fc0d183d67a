"""Aggregation of per-job records into the report's numbers.

:func:`summarize` works on the values as the CSV stores them (the runner
hands back records rounded like the file), so that a report written right
after the jobs ran and one re-computed from the file are the same.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

__all__ = ["FAILED_AUC", "SMALL_TEST_ANOMALIES", "TIE", "summarize", "wtl"]

#: |difference| of per-dataset seed-mean ROC AUC counted as a tie.
TIE = 0.01
#: A test split with fewer anomalies than this is flagged as small evidence.
SMALL_TEST_ANOMALIES = 10
#: ROC AUC a failed or timed-out job counts as when detectors are compared
#: (a detector that gives no answer is worth a random ranking).
FAILED_AUC = 0.5


def _mean(values):
    values = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(values)) if values else math.nan


def _median(values):
    values = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.median(values)) if values else math.nan


def _rank_desc(values):
    """Ranks (1 = best) of ``values``, higher is better, ties averaged."""
    from scipy.stats import rankdata

    return rankdata(-np.asarray(values, dtype=np.float64), method="average")


def wtl(auc, det, other, datasets) -> tuple[int, int, int]:
    """Wins / ties / losses of ``det`` against ``other``.

    ``auc[dataset][detector]`` is a per-dataset ROC AUC (the seed mean);
    datasets where ``other`` has none are skipped, and where ``det`` has none
    it loses; tie = |difference| <= :data:`TIE`.
    """
    w = t = l_ = 0
    for ds in datasets:
        theirs = auc.get(ds, {}).get(other)
        if theirs is None:
            continue
        mine = auc[ds].get(det)
        if mine is None:
            l_ += 1
        elif abs(mine - theirs) <= TIE:
            t += 1
        elif mine > theirs:
            w += 1
        else:
            l_ += 1
    return w, t, l_


def _job_values(by, detectors, datasets):
    """Per detector: (dataset, seed) -> (status, ROC AUC, AP)."""
    jobs = {det: {} for det in detectors}
    for (ds, det, seed), r in by.items():
        if det in jobs and ds in datasets:
            jobs[det][(ds, seed)] = (
                r["status"],
                r.get("roc_auc"),
                r.get("average_precision"),
            )
    return jobs


def _identical(a: dict, b: dict) -> bool:
    """Same jobs, all ok, equal ROC AUC and AP, at least two not trivial."""
    if not a or a.keys() != b.keys():
        return False
    if any(a[k][0] != "ok" or a[k] != b[k] for k in a):
        return False
    return sum(v[1] is not None and 0.0 < v[1] < 1.0 for v in a.values()) >= 2


def find_duplicates(by, detectors, datasets, info) -> dict:
    """``detector -> the detector whose results it repeats``.

    A detector repeats another when both succeeded on exactly the same jobs
    with the same stored ROC AUC and average precision on each, at least two
    of them neither 0 nor 1 (one equal job, or perfect scores, can be
    chance): DeepSAD without labels is DeepSVDD by construction. Of such a
    pair, the detector that takes labels (it got none here) is the
    repetition, else the one listed later.
    """
    jobs = _job_values(by, detectors, datasets)
    order = sorted(
        range(len(detectors)), key=lambda i: (info[detectors[i]]["labels"], i)
    )
    kept, same_as = [], {}
    for i in order:
        det = detectors[i]
        twin = next((k for k in kept if _identical(jobs[k], jobs[det])), None)
        if twin is None:
            kept.append(det)
        else:
            same_as[det] = twin
    return same_as


def _small_splits(records, datasets) -> list:
    """``(dataset, test anomalies, test rows)`` of the smallest test split of
    each dataset with fewer than :data:`SMALL_TEST_ANOMALIES` anomalies."""
    smallest, wanted = {}, set(datasets)
    for r in records:
        n_anom, n_test = r.get("n_test_anomalies"), r.get("n_test")
        if r["dataset"] not in wanted or n_anom is None:
            continue
        if r["dataset"] not in smallest or n_anom < smallest[r["dataset"]][0]:
            smallest[r["dataset"]] = (int(n_anom), n_test)
    return [
        (ds, *smallest[ds])
        for ds in datasets
        if ds in smallest and smallest[ds][0] < SMALL_TEST_ANOMALIES
    ]


def summarize(
    records, baseline="IsolationForest", detectors=None, datasets=None, info=None
):
    """Aggregate per-job records into the report's tables.

    Returns a dict with ``detectors`` (order of the report: best average rank
    first), ``datasets``, ``groups``, ``overall`` (one dict per detector),
    ``per_group`` and ``per_dataset`` (seed-mean ROC AUC / AP), ``cells``
    (per dataset and detector: the ROC AUC used to compare detectors, a
    failed job counting :data:`FAILED_AUC`, the mean rank and the fit
    seconds), ``same_as`` (detectors that repeat another's results,
    :func:`find_duplicates`), ``info`` (kind and side of each detector),
    ``small`` (datasets whose test split holds fewer than
    :data:`SMALL_TEST_ANOMALIES` anomalies), ``seeds`` and ``n_cells``
    (dataset x seed cells used for the ranks).

    Ranks are computed per (dataset, seed) over the detectors that have a
    record there, repetitions left out; a failed or timed-out job gets the
    worst rank. Cells where some detector has no record yet (an unfinished
    run) are left out. Means are over the datasets where the detector
    succeeded (the ``failed`` column says how many jobs did not).
    """
    from skad.benchmark._registry import detector_info

    records = [r for r in records if r.get("detector") is not None]
    if detectors is None:
        detectors = list(dict.fromkeys(r["detector"] for r in records))
    if datasets is None:
        datasets = list(dict.fromkeys(r["dataset"] for r in records))
    info = {**detector_info(detectors), **(info or {})}
    group_of = {r["dataset"]: r.get("group") or "" for r in records}
    groups = list(dict.fromkeys(group_of[d] for d in datasets if d in group_of))

    by = {}
    for r in records:  # the last record of a key wins (retried jobs)
        by[(r["dataset"], r["detector"], int(r["seed"]))] = r
    seeds = sorted({k[2] for k in by})
    same_as = find_duplicates(by, detectors, set(datasets), info)
    ranked = [d for d in detectors if d not in same_as]

    values = defaultdict(lambda: defaultdict(list))  # (ds, det) -> column -> list
    status = defaultdict(lambda: defaultdict(int))
    for (ds, det, _), r in by.items():
        if det not in info or ds not in datasets:
            continue
        status[det][r["status"]] += 1
        ok = r["status"] == "ok" and r.get("roc_auc") is not None
        cell = values[(ds, det)]
        cell["choice"].append(r["roc_auc"] if ok else FAILED_AUC)
        if ok:
            for name in ("roc_auc", "average_precision", "fit_seconds"):
                cell[name].append(r[name])
            for name in ("score_seconds", "f1_auto", "f1_true", "auto_flagged"):
                cell[name].append(r.get(name))

    per_dataset = {
        ds: {
            det: (
                _mean(values[(ds, det)]["roc_auc"]),
                _mean(values[(ds, det)]["average_precision"]),
            )
            for det in detectors
            if values.get((ds, det), {}).get("roc_auc")
        }
        for ds in datasets
    }

    # ranks per (dataset, seed) cell with every ranked detector present
    ds_rank = {}
    n_cells = 0
    for ds in datasets:
        ranks = defaultdict(list)
        for seed in seeds:
            cell = [by.get((ds, det, seed)) for det in ranked]
            if not cell or any(r is None for r in cell):
                continue
            aucs = [
                r["roc_auc"]
                if r["status"] == "ok" and r["roc_auc"] is not None
                else -np.inf
                for r in cell
            ]
            n_cells += 1
            for det, rank in zip(ranked, _rank_desc(aucs)):
                ranks[det].append(rank)
        for det, rs in ranks.items():
            ds_rank[(ds, det)] = float(np.mean(rs))

    cells = {
        ds: {
            det: {
                "auc": _mean(values[(ds, det)]["choice"]),
                "rank": ds_rank.get((ds, det), math.nan),
                "fit": list(values[(ds, det)]["fit_seconds"]),
            }
            for det in detectors
            if values.get((ds, det), {}).get("choice")
        }
        for ds in datasets
    }

    seed_mean = {ds: {d: v[0] for d, v in per_dataset[ds].items()} for ds in datasets}

    def column(det, name):
        return [
            _mean(values[(ds, det)][name]) for ds in datasets if (ds, det) in values
        ]

    overall = []
    for det in detectors:
        st = status[det]
        rank = [ds_rank[(ds, det)] for ds in datasets if (ds, det) in ds_rank]
        every = [values[(ds, det)] for ds in datasets if (ds, det) in values]
        overall.append(
            {
                "detector": det,
                "kind": info[det]["kind"],
                "side": info[det]["side"],
                "same_as": same_as.get(det),
                "roc_auc": _mean(column(det, "roc_auc")),
                "average_precision": _mean(column(det, "average_precision")),
                "f1_auto": _mean(column(det, "f1_auto")),
                "f1_true": _mean(column(det, "f1_true")),
                "auto_flagged": _mean(column(det, "auto_flagged")),
                "rank": float(np.mean(rank)) if rank else math.nan,
                "wtl": wtl(seed_mean, det, baseline, datasets)
                if baseline in detectors and det != baseline
                else None,
                "fit_seconds": _median([v for c in every for v in c["fit_seconds"]]),
                "score_seconds": _median(
                    [v for c in every for v in c["score_seconds"]]
                ),
                "n_ok": st.get("ok", 0),
                "n_failed": st.get("failed", 0),
                "n_timeout": st.get("timeout", 0),
                "n_datasets": sum(det in per_dataset[ds] for ds in datasets),
            }
        )
    overall.sort(key=lambda o: (math.isnan(o["rank"]), o["rank"], -o["roc_auc"]))

    per_group = {}
    for g in groups:
        ds_g = [ds for ds in datasets if group_of.get(ds) == g]
        per_group[g] = {
            det: tuple(
                _mean(
                    [per_dataset[ds][det][i] for ds in ds_g if det in per_dataset[ds]]
                )
                for i in (0, 1)
            )
            for det in detectors
        }
        per_group[g]["_n"] = len(ds_g)
    return {
        "detectors": [o["detector"] for o in overall],
        "datasets": datasets,
        "groups": groups,
        "group_of": group_of,
        "overall": overall,
        "per_group": per_group,
        "per_dataset": per_dataset,
        "cells": cells,
        "same_as": same_as,
        "info": info,
        "small": _small_splits(records, datasets),
        "n_cells": n_cells,
        "seeds": seeds,
        "baseline": baseline,
    }
