"""What a summary concludes: the best skad detector against the best reference.

For a set of datasets (all of them, or one group), :func:`compare` picks the
best skad detector (skad's detectors and their variants) and the best
reference (scikit-learn baselines, PyOD, DeepOD) by mean ROC AUC over those
datasets, a failed job counting :data:`~skad.benchmark._summary.FAILED_AUC`
(ties: better average rank, then the report's order). Only detectors with a
result on every one of the datasets compete; detectors that repeat another's
results (:func:`~skad.benchmark._summary.find_duplicates`) do not. The two
meet head to head (wins / ties / losses per dataset) and the verdict is:

* skad's detector, when its mean is higher by more than
  :data:`~skad.benchmark._summary.TIE` and it wins more datasets than it
  loses;
* the reference, in the mirror case;
* otherwise no clear winner, and the cheaper to fit of the two is the
  sensible default.

The same rule writes the conclusion of ``summary.md`` and the "Which
detector?" page (:mod:`skad.benchmark.choose`).
"""

from __future__ import annotations

import math

import numpy as np

from skad.benchmark._summary import FAILED_AUC, SMALL_TEST_ANOMALIES, TIE, wtl

__all__ = [
    "best_of",
    "compare",
    "conclusion_markdown",
    "evidence_note",
    "is_thin",
    "verdict_text",
]

SIDE_TEXT = {"skad": "skad detector", "reference": "baseline"}
KIND_TEXT = {"baseline": "baseline", "pyod": "PyOD", "deepod": "DeepOD"}


def _stats(summary, det, datasets) -> dict:
    cells = [summary["cells"][ds][det] for ds in datasets]
    ranks = [c["rank"] for c in cells if not math.isnan(c["rank"])]
    fits = [v for c in cells for v in c["fit"] if v is not None]
    return {
        "detector": det,
        "kind": summary["info"][det]["kind"],
        "auc": float(np.mean([c["auc"] for c in cells])),
        "rank": float(np.mean(ranks)) if ranks else math.nan,
        "fit": float(np.median(fits)) if fits else math.nan,
    }


def best_of(summary, side, datasets) -> dict | None:
    """Statistics of the best detector of ``side`` on ``datasets`` (or None)."""
    order = {det: i for i, det in enumerate(summary["detectors"])}
    candidates = [
        _stats(summary, det, datasets)
        for det in summary["detectors"]
        if summary["info"][det]["side"] == side
        and det not in summary["same_as"]
        and all(det in summary["cells"][ds] for ds in datasets)
    ]
    if not candidates:
        return None
    return min(
        candidates,
        key=lambda s: (
            -round(s["auc"], 6),
            math.inf if math.isnan(s["rank"]) else s["rank"],
            order[s["detector"]],
        ),
    )


def compare(summary, datasets=None) -> dict:
    """Best skad detector against the best reference on ``datasets``.

    Returns a dict with ``skad`` and ``reference`` (statistics or None),
    ``wtl`` (of skad's detector against the reference), ``winner``
    (``"skad"``, ``"reference"`` or None) and ``default`` (the winner, else
    the cheaper of the two, else whichever exists).
    """
    datasets = summary["datasets"] if datasets is None else datasets
    datasets = [ds for ds in datasets if summary["cells"].get(ds)]
    out = {"datasets": datasets, "skad": None, "reference": None, "wtl": None}
    if datasets:
        out["skad"] = best_of(summary, "skad", datasets)
        out["reference"] = best_of(summary, "reference", datasets)
    s, r = out["skad"], out["reference"]
    out["winner"] = None
    if s is None or r is None:
        out["default"] = s or r
        return out
    auc = {
        ds: {d: c["auc"] for d, c in summary["cells"][ds].items()} for ds in datasets
    }
    w, t, l_ = out["wtl"] = wtl(auc, s["detector"], r["detector"], datasets)
    diff = s["auc"] - r["auc"]
    if diff > TIE and w > l_:
        out["winner"] = "skad"
    elif diff < -TIE and l_ > w:
        out["winner"] = "reference"
    if out["winner"] is not None:
        out["default"] = out[out["winner"]]
    else:
        out["default"] = min((s, r), key=lambda x: (math.isnan(x["fit"]), x["fit"]))
    return out


def _secs(v) -> str:
    if v is None or math.isnan(v):
        return "-"
    return f"{v:.3g} s" if v < 100 else f"{v:.0f} s"


def _ratio(a, b) -> str:
    if math.isnan(a) or math.isnan(b) or min(a, b) <= 0:
        return ""
    ratio = a / b
    if ratio >= 1.5:
        return f"{ratio:.{0 if ratio >= 10 else 1}f}x slower to fit"
    if ratio <= 1 / 1.5:
        inv = 1 / ratio
        return f"{inv:.{0 if inv >= 10 else 1}f}x faster to fit"
    return "about as fast to fit"


def _who(stats) -> str:
    kind = stats["kind"]
    label = KIND_TEXT.get(kind, "skad variant" if kind == "variant" else "")
    label = f" ({label})" if label and kind != "baseline" else ""
    return (
        f"**{stats['detector']}**{label} (mean ROC AUC {stats['auc']:.3f}, "
        f"fit {_secs(stats['fit'])} median)"
    )


def is_thin(summary) -> bool:
    """Too little evidence to choose by: one seed, or at least half of the
    datasets with a test split of fewer than :data:`SMALL_TEST_ANOMALIES`
    anomalies."""
    return len(summary["seeds"]) == 1 or 2 * len(summary["small"]) >= len(
        summary["datasets"]
    )


def verdict_text(c, thin=False) -> str:
    """One sentence: what to use on data like this (hedged when ``thin``)."""
    s, r = c["skad"], c["reference"]
    if s is None and r is None:
        return "Neither a skad detector nor a baseline has a result on every dataset."
    if s is None or r is None:
        side = "skad detector" if r is None else "baseline"
        only = s or r
        return f"Only {_who(only)} competes (no {side} ran on every dataset)."
    w, t, l_ = c["wtl"]
    diff = s["auc"] - r["auc"]
    head = (
        f"best skad detector {_who(s)} vs best baseline {_who(r)}: "
        f"{s['detector']} wins/ties/loses {w}/{t}/{l_} datasets, "
        f"{diff:+.3f} mean ROC AUC, {_ratio(s['fit'], r['fit'])}. "
    )
    if thin and c["winner"] is not None:
        lead = c[c["winner"]]["detector"]
        return head + (
            f"{lead} leads on this run, but the evidence is too thin to choose "
            "by (see above): no recommendation."
        )
    if c["winner"] == "skad":
        return head + f"**Use {s['detector']}** on data like this."
    if c["winner"] == "reference":
        return (
            head + f"**Use {r['detector']}**: skad is not the best choice on "
            "data like this."
        )
    cheap = c["default"]["detector"]
    return head + (
        f"No clear winner (|difference| <= {TIE} or as many losses as wins): "
        f"**{cheap}**, the cheaper to fit, is the sensible default."
    )


def evidence_note(summary) -> str | None:
    """A warning when the evidence is thin (one seed, small test splits)."""
    parts = []
    if len(summary["seeds"]) == 1:
        parts.append(f"one seed ({summary['seeds'][0]})")
    small = summary["small"]
    if small:
        listed = ", ".join(
            f"{ds}: {a} in {n} test rows" if n else f"{ds}: {a}" for ds, a, n in small
        )
        n_ds = len(summary["datasets"])
        parts.append(
            f"{len(small)} of {n_ds} datasets have fewer than "
            f"{SMALL_TEST_ANOMALIES} anomalies in a test split ({listed})"
        )
    if not parts:
        return None
    thin = is_thin(summary)
    note = ("**Thin evidence**: " if thin else "**Note**: ") + "; ".join(parts) + "."
    if small:
        fewest = min(a for _, a, _ in small)
        if fewest > 0:
            note += (
                f" With {fewest} test anomal{'y' if fewest == 1 else 'ies'}, one "
                "anomaly ranked differently "
                f"moves ROC AUC by up to {1 / fewest:.2f}."
            )
    if not thin:
        return note + " Per-dataset numbers of those datasets are noisy."
    return note + (
        " Read these results as a smoke test, not as a ranking: differences of "
        "this size are within noise; run the adbench suite with seeds 0 1 2 "
        "before choosing a detector."
    )


def conclusion_markdown(summary, setting=None) -> str:
    """The ``## Conclusion`` section of ``summary.md``."""
    out = ["## Conclusion", ""]
    if setting:
        out += [f"On the data of this run, {setting} setting:", ""]
    note = evidence_note(summary)
    if note:
        out += [note, ""]
    n_seeds = len(summary["seeds"])
    scopes = [("All datasets", summary["datasets"])]
    if len(summary["groups"]) > 1:
        scopes += [
            (g, [ds for ds in summary["datasets"] if summary["group_of"].get(ds) == g])
            for g in summary["groups"]
        ]
    for name, datasets in scopes:
        c = compare(summary, datasets)
        n_ds = len(c["datasets"])
        size = (
            f"{n_ds} dataset{'s' * (n_ds != 1)} x {n_seeds} seed{'s' * (n_seeds != 1)}"
        )
        out.append(f"- **{name}** ({size}): {verdict_text(c, is_thin(summary))}")
    out.append("")
    rules = (
        f"Best = highest mean ROC AUC over the datasets (a failed job counts "
        f"{FAILED_AUC}); a verdict needs a mean ahead by more than {TIE} and more "
        "wins than losses. Baselines include PyOD / DeepOD peers when they ran."
    )
    if summary["same_as"]:
        twins = ", ".join(f"{a} = {b}" for a, b in summary["same_as"].items())
        rules += (
            f" Left out as repeating another detector's results on every job "
            f"({twins}; e.g. DeepSAD without labels is DeepSVDD by construction)."
        )
    out += [rules, ""]
    return "\n".join(out)
