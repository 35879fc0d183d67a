"""The Markdown report: ``summary.md`` and the table the command line prints.

Numbers come from :func:`~skad.benchmark._summary.summarize`, the conclusion
from :mod:`skad.benchmark._conclusion`, the plots from
:mod:`skad.benchmark._plots`.
"""

from __future__ import annotations

import math

from skad.benchmark._conclusion import conclusion_markdown
from skad.benchmark._plots import write_plots
from skad.benchmark._registry import KIND_LABELS
from skad.benchmark._summary import TIE, summarize

__all__ = ["overall_table", "summarize", "to_markdown", "write_plots"]


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


def _name(summary, det) -> str:
    twin = summary.get("same_as", {}).get(det)
    return f"{det} (= {twin})" if twin else det


def overall_table(summary) -> str:
    """The main table (printed to the terminal)."""
    return _table(*overall_rows(summary))


def overall_rows(summary):
    """Headers and formatted rows of the main table (the terminal report and
    the documentation's tables render the same cells)."""
    base = summary["baseline"]
    rows = []
    for o in summary["overall"]:
        wtl = "-" if o["wtl"] is None else "/".join(map(str, o["wtl"]))
        failed = o["n_failed"] + o["n_timeout"]
        flagged = o.get("auto_flagged")
        rows.append(
            [
                _name(summary, o["detector"]),
                KIND_LABELS.get(o.get("kind"), "other"),
                _fmt(o["roc_auc"]),
                _fmt(o["average_precision"]),
                _fmt(o.get("f1_auto")),
                _fmt(o.get("f1_true")),
                "-" if flagged is None or math.isnan(flagged) else f"{flagged:.1%}",
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
        "kind",
        "ROC AUC",
        "AP",
        "F1 auto",
        "F1 true",
        "flagged auto",
        "avg rank",
        f"W/T/L vs {base}",
        "fit s (median)",
        "score s (median)",
        "failed jobs",
    ]
    return headers, rows


def _explanation(summary) -> str:
    text = (
        f"Mean ROC AUC / average precision over datasets of the per-dataset seed "
        f"means (test split, anomaly = positive class, score = -score_samples); "
        f"F1 of predict on the test rows at the label-free contamination='auto' "
        f"threshold (Tukey's fence of the training anomaly scores) and at the "
        f"true training contamination, and the share of test rows the auto "
        f"threshold flags (same fitted model, seed means); average rank (1 = best) "
        f"over {summary['n_cells']} dataset x seed cells, a failed or timed-out "
        f"job ranking last; wins / ties / losses against {summary['baseline']} on "
        f"per-dataset seed means, tie = |difference| <= {TIE}; median fit and "
        f"score seconds per job. All from the values as stored in results.csv."
    )
    if summary.get("same_as"):
        twins = "; ".join(
            f"{a} repeats {b}'s ROC AUC and AP on every job"
            for a, b in summary["same_as"].items()
        )
        text += (
            f" '(= X)' marks a detector whose results equal X's ({twins}; "
            "DeepSAD without labels is DeepSVDD by construction): it is left out "
            "of the ranks and the conclusion."
        )
    return text


def to_markdown(summary, meta=None) -> str:
    """The full Markdown report, ending with its conclusion."""
    meta = dict(meta or {})
    failures = meta.pop("_failures", None)
    out = ["# skad benchmark", ""]
    for key, value in meta.items():
        out.append(f"- **{key}**: {value}")
    out += ["", _explanation(summary), "", "## Overall", "", overall_table(summary), ""]
    dets = summary["detectors"]
    names = [_name(summary, det) for det in dets]
    if len(summary["groups"]) > 1 or meta.get("suite") == "adbench":
        for metric, idx in (("ROC AUC", 0), ("Average precision", 1)):
            out += [f"## {metric} per group", ""]
            headers = ["detector"] + [
                f"{g} ({summary['per_group'][g]['_n']})" for g in summary["groups"]
            ]
            rows = [
                [name]
                + [_fmt(summary["per_group"][g][det][idx]) for g in summary["groups"]]
                for det, name in zip(dets, names)
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
    out += [_table(["dataset"] + names, rows), ""]
    if failures:
        out += [
            "## Failed jobs",
            "",
            _table(["dataset", "detector", "seed", "status", "error"], failures),
            "",
        ]
    setting = meta.get("setting")
    out.append(conclusion_markdown(summary, setting))
    return "\n".join(out)
