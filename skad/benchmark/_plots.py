"""The report's PNG plots: average ranks and the per-dataset ROC AUC heat map."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from skad.benchmark._registry import KIND_LABELS

__all__ = ["write_plots"]

logger = logging.getLogger("skad.benchmark")

#: Bar colour of each kind of detector in ``rank.png``.
KIND_COLORS = {
    "skad": "tab:orange",
    "variant": "navajowhite",
    "baseline": "tab:blue",
    "pyod": "tab:cyan",
    "deepod": "tab:purple",
    "custom": "tab:gray",
}


def _label(summary, det) -> str:
    twin = summary["same_as"].get(det)
    return f"{det} (= {twin})" if twin else det


def _rank_plot(plt, summary, path) -> bool:
    overall = [o for o in summary["overall"] if not math.isnan(o["rank"])]
    if not overall:
        return False
    fig, ax = plt.subplots(figsize=(7.5, 0.35 * len(overall) + 1.6))
    names = [o["detector"] for o in overall][::-1]
    ranks = [o["rank"] for o in overall][::-1]
    kinds = [o["kind"] for o in overall][::-1]
    ax.barh(names, ranks, color=[KIND_COLORS.get(k, "tab:gray") for k in kinds])
    for i, r in enumerate(ranks):
        ax.text(r, i, f" {r:.2f}", va="center", fontsize=8)
    present = [k for k in KIND_COLORS if k in kinds]
    handles = [plt.Rectangle((0, 0), 1, 1, color=KIND_COLORS[k]) for k in present]
    ax.legend(
        handles,
        [KIND_LABELS[k] for k in present],
        fontsize=8,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        borderaxespad=0.0,
    )
    ax.set_xlabel("average rank (1 = best)")
    ax.set_xlim(0, max(ranks) * 1.15)
    title = f"Average rank over {summary['n_cells']} dataset x seed cells"
    if summary["same_as"]:
        title += "\n(left out: " + ", ".join(summary["same_as"]) + ", repeats)"
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def _heatmap(plt, summary, path) -> bool:
    dets, dsets = summary["detectors"], summary["datasets"]
    if not dets or not dsets:
        return False
    M = np.full((len(dsets), len(dets)), np.nan)
    for i, ds in enumerate(dsets):
        for j, det in enumerate(dets):
            v = summary["per_dataset"].get(ds, {}).get(det)
            if v:
                M[i, j] = v[0]
    width = max(5.0, 2.2 + 0.6 * len(dets))
    fig, ax = plt.subplots(figsize=(width, 2.6 + 0.28 * len(dsets)))
    # diverging, centred on 0.5 (a random ranking): below-chance is visible
    im = ax.imshow(
        np.ma.masked_invalid(M), cmap="RdBu", vmin=0.0, vmax=1.0, aspect="auto"
    )
    labels = [_label(summary, det) for det in dets]
    ax.set_xticks(range(len(dets)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(dsets)), dsets, fontsize=7)
    if M.size <= 1200:
        for i in range(M.shape[0]):
            for j in range(M.shape[1]):
                v = M[i, j]
                text = "x" if np.isnan(v) else f"{v:.2f}"
                light = np.isnan(v) or abs(v - 0.5) < 0.3
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="k" if light else "w",
                )
    bar = fig.colorbar(im, ax=ax, ticks=[0.0, 0.25, 0.5, 0.75, 1.0])
    bar.set_label("ROC AUC (0.5 = random)", fontsize=8)
    ax.set_title("ROC AUC per dataset (x = failed)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def write_plots(summary, output) -> list[str]:
    """``rank.png`` (skad and the others in their own colours) and
    ``heatmap.png`` (0 to 1, centred on 0.5) under ``output``; returns their
    paths (none without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.info("matplotlib is not installed: no plots")
        return []
    output = Path(output)
    paths = []
    for name, plot in (("rank.png", _rank_plot), ("heatmap.png", _heatmap)):
        if plot(plt, summary, output / name):
            paths.append(str(output / name))
    return paths
