"""Summaries of benchmark records: Markdown tables and PNG plots."""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

__all__ = ["summarize", "to_markdown", "write_plots"]

logger = logging.getLogger("skad.benchmark")

#: |difference| of per-dataset seed-mean ROC AUC counted as a tie.
TIE = 0.01


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


def summarize(records, baseline="IsolationForest", detectors=None, datasets=None):
    """Aggregate per-job records into the report's tables.

    Returns a dict with ``detectors`` (order of the report: best average rank
    first), ``datasets``, ``groups``, ``overall`` (one dict per detector),
    ``per_group`` and ``per_dataset`` (seed-mean ROC AUC / AP), and
    ``n_cells`` (dataset x seed cells used for the ranks).

    Ranks are computed per (dataset, seed) over the detectors that have a
    record there; a failed or timed-out job gets the worst rank. Cells where
    some detector has no record yet (an unfinished run) are left out. Means
    are over the datasets where the detector succeeded (the ``failed`` column
    says how many jobs did not).
    """
    records = [r for r in records if r.get("detector") is not None]
    if detectors is None:
        detectors = list(dict.fromkeys(r["detector"] for r in records))
    if datasets is None:
        datasets = list(dict.fromkeys(r["dataset"] for r in records))
    group_of = {r["dataset"]: r.get("group") or "" for r in records}
    groups = list(dict.fromkeys(group_of[d] for d in datasets if d in group_of))

    by = {}
    for r in records:  # the last record of a key wins (retried jobs)
        by[(r["dataset"], r["detector"], int(r["seed"]))] = r
    seeds = sorted({k[2] for k in by})

    auc = defaultdict(list)
    ap = defaultdict(list)
    fit_s = defaultdict(list)
    score_s = defaultdict(list)
    status = defaultdict(lambda: defaultdict(int))
    for (ds, det, _), r in by.items():
        if det not in detectors or ds not in datasets:
            continue
        status[det][r["status"]] += 1
        if r["status"] == "ok":
            auc[(ds, det)].append(r["roc_auc"])
            ap[(ds, det)].append(r["average_precision"])
            fit_s[det].append(r["fit_seconds"])
            score_s[det].append(r["score_seconds"])

    per_dataset = {
        ds: {
            det: (_mean(auc[(ds, det)]), _mean(ap[(ds, det)]))
            for det in detectors
            if (ds, det) in auc
        }
        for ds in datasets
    }

    # ranks per (dataset, seed) cell with every detector present
    rank_sum = defaultdict(float)
    rank_n = defaultdict(int)
    n_cells = 0
    for ds in datasets:
        ds_ranks = defaultdict(list)
        for seed in seeds:
            cell = [by.get((ds, det, seed)) for det in detectors]
            if any(r is None for r in cell):
                continue
            values = [
                r["roc_auc"]
                if r["status"] == "ok" and r["roc_auc"] is not None
                else -np.inf
                for r in cell
            ]
            n_cells += 1
            for det, rank in zip(detectors, _rank_desc(values)):
                ds_ranks[det].append(rank)
        for det, ranks in ds_ranks.items():
            rank_sum[det] += float(np.mean(ranks))
            rank_n[det] += 1

    overall = []
    for det in detectors:
        aucs = [per_dataset[ds][det][0] for ds in datasets if det in per_dataset[ds]]
        aps = [per_dataset[ds][det][1] for ds in datasets if det in per_dataset[ds]]
        wtl = None
        if baseline in detectors and det != baseline:
            w = t = l_ = 0
            for ds in datasets:
                base = per_dataset[ds].get(baseline)
                if base is None:
                    continue
                mine = per_dataset[ds].get(det)
                if mine is None:
                    l_ += 1
                elif abs(mine[0] - base[0]) <= TIE:
                    t += 1
                elif mine[0] > base[0]:
                    w += 1
                else:
                    l_ += 1
            wtl = (w, t, l_)
        st = status[det]
        overall.append(
            {
                "detector": det,
                "roc_auc": _mean(aucs),
                "average_precision": _mean(aps),
                "rank": rank_sum[det] / rank_n[det] if rank_n[det] else math.nan,
                "wtl": wtl,
                "fit_seconds": _median(fit_s[det]),
                "score_seconds": _median(score_s[det]),
                "n_ok": st.get("ok", 0),
                "n_failed": st.get("failed", 0),
                "n_timeout": st.get("timeout", 0),
                "n_datasets": len(aucs),
            }
        )
    overall.sort(key=lambda o: (math.isnan(o["rank"]), o["rank"], -o["roc_auc"]))

    per_group = {}
    for g in groups:
        ds_g = [ds for ds in datasets if group_of.get(ds) == g]
        per_group[g] = {
            det: (
                _mean(
                    [per_dataset[ds][det][0] for ds in ds_g if det in per_dataset[ds]]
                ),
                _mean(
                    [per_dataset[ds][det][1] for ds in ds_g if det in per_dataset[ds]]
                ),
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
        "n_cells": n_cells,
        "seeds": seeds,
        "baseline": baseline,
    }


def _fmt(v, digits=3):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{digits}f}"


def _secs(v):
    if v is None or math.isnan(v):
        return "-"
    return f"{v:.3f}" if v < 10 else f"{v:.1f}"


def _table(headers, rows):
    lines = ["| " + " | ".join(headers) + " |"]
    lines.append(
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|"
    )
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def overall_table(summary) -> str:
    """The main table (printed to the terminal)."""
    base = summary["baseline"]
    rows = []
    for o in summary["overall"]:
        wtl = "-" if o["wtl"] is None else "/".join(map(str, o["wtl"]))
        failed = o["n_failed"] + o["n_timeout"]
        rows.append(
            [
                o["detector"],
                _fmt(o["roc_auc"]),
                _fmt(o["average_precision"]),
                _fmt(o["rank"], 2),
                wtl,
                _secs(o["fit_seconds"]),
                _secs(o["score_seconds"]),
                f"{failed}"
                + (f" ({o['n_timeout']} timeout)" if o["n_timeout"] else ""),
            ]
        )
    headers = [
        "detector",
        "ROC AUC",
        "AP",
        "avg rank",
        f"W/T/L vs {base}",
        "fit s (median)",
        "score s (median)",
        "failed jobs",
    ]
    return _table(headers, rows)


def to_markdown(summary, meta=None) -> str:
    """The full Markdown report."""
    meta = meta or {}
    out = ["# skad benchmark", ""]
    for key, value in meta.items():
        out.append(f"- **{key}**: {value}")
    out += [
        "",
        f"Mean ROC AUC / average precision over datasets of the per-dataset seed "
        f"means (test split, anomaly = positive class, score = -score_samples); "
        f"average rank (1 = best) over {summary['n_cells']} dataset x seed cells, "
        f"a failed or timed-out job ranking last; wins / ties / losses against "
        f"{summary['baseline']} on per-dataset seed means, tie = |difference| <= "
        f"{TIE}; median fit and score seconds per job.",
        "",
        "## Overall",
        "",
        overall_table(summary),
        "",
    ]
    dets = summary["detectors"]
    if len(summary["groups"]) > 1 or meta.get("suite") == "adbench":
        for metric, idx in (("ROC AUC", 0), ("Average precision", 1)):
            out += [f"## {metric} per group", ""]
            headers = ["detector"] + [
                f"{g} ({summary['per_group'][g]['_n']})" for g in summary["groups"]
            ]
            rows = [
                [det]
                + [_fmt(summary["per_group"][g][det][idx]) for g in summary["groups"]]
                for det in dets
            ]
            out += [_table(headers, rows), ""]
    out += ["## ROC AUC per dataset (seed mean; - = failed)", ""]
    rows = []
    for ds in summary["datasets"]:
        vals = summary["per_dataset"].get(ds, {})
        best = max((v[0] for v in vals.values()), default=math.nan)
        cells = []
        for det in dets:
            v = vals.get(det)
            text = _fmt(v[0]) if v else "-"
            if v and not math.isnan(best) and abs(v[0] - best) < 5e-4:
                text = f"**{text}**"
            cells.append(text)
        rows.append([ds] + cells)
    out += [_table(["dataset"] + dets, rows), ""]
    failures = meta.pop("_failures", None)
    if failures:
        out += [
            "## Failed jobs",
            "",
            _table(["dataset", "detector", "seed", "status", "error"], failures),
            "",
        ]
    return "\n".join(out)


def write_plots(summary, output) -> list[str]:
    """Rank chart and per-dataset heat map as PNG (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.info("matplotlib is not installed: no plots")
        return []
    output = Path(output)
    paths = []
    overall = [o for o in summary["overall"] if not math.isnan(o["rank"])]
    if overall:
        fig, ax = plt.subplots(figsize=(6, 0.35 * len(overall) + 1.2))
        names = [o["detector"] for o in overall][::-1]
        ranks = [o["rank"] for o in overall][::-1]
        ax.barh(names, ranks, color="tab:blue")
        ax.set_xlabel("average rank (1 = best)")
        ax.set_title(f"Average rank over {summary['n_cells']} dataset x seed cells")
        for i, r in enumerate(ranks):
            ax.text(r, i, f" {r:.2f}", va="center", fontsize=8)
        fig.tight_layout()
        path = output / "rank.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(str(path))
    dets = summary["detectors"]
    dsets = summary["datasets"]
    if dets and dsets:
        M = np.full((len(dsets), len(dets)), np.nan)
        for i, ds in enumerate(dsets):
            for j, det in enumerate(dets):
                v = summary["per_dataset"].get(ds, {}).get(det)
                if v:
                    M[i, j] = v[0]
        fig, ax = plt.subplots(figsize=(1.0 + 0.6 * len(dets), 1.5 + 0.28 * len(dsets)))
        im = ax.imshow(
            np.ma.masked_invalid(M), cmap="viridis", vmin=0.5, vmax=1.0, aspect="auto"
        )
        ax.set_xticks(range(len(dets)), dets, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(len(dsets)), dsets, fontsize=7)
        if M.size <= 1200:
            for i in range(M.shape[0]):
                for j in range(M.shape[1]):
                    text = "x" if np.isnan(M[i, j]) else f"{M[i, j]:.2f}"
                    dark = np.isnan(M[i, j]) or M[i, j] < 0.8
                    ax.text(
                        j,
                        i,
                        text,
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="w" if dark else "k",
                    )
        fig.colorbar(im, ax=ax, label="ROC AUC (seed mean)")
        ax.set_title("ROC AUC per dataset")
        fig.tight_layout()
        path = output / "heatmap.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(str(path))
    return paths
