"""The Markdown report of the speed suite (``speed.md``)."""

from __future__ import annotations

import math

from skad.benchmark._speed import COMPARED, FIT_FLOPS_FACTOR, SLOW_FACTOR, TARGETS

__all__ = ["comparison_ratios", "speed_markdown"]


def _rate(v):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v / 1e6:.2f} M" if v >= 1e6 else f"{v:,.0f}"


def _pct(v):
    return "-" if v is None else f"{100 * v:.1f}%"


def _ratio(a, b):
    return "-" if not a or not b else f"{a / b:.2f}x"


def comparison_ratios(records, score="score_rows_per_cpu_s"):
    """skad.DeepSVDD over the faster peer, by CPU time: ``(fit, score)`` or None.

    ``score`` names the scoring rate compared (the best pass by default,
    ``"score_first_rows_per_cpu_s"`` for the first one).
    """
    ok = {
        r.detector: r
        for r in records
        if r.status == "ok" and r.measurement == "fit+score"
    }
    mine = ok.get(COMPARED[0])
    peers = [r for name, r in ok.items() if name != COMPARED[0]]
    if mine is None or not peers:
        return None
    fit = mine.fit_rows_per_cpu_s / max(p.fit_rows_per_cpu_s for p in peers)
    best_peer = max(getattr(p, score) or 0.0 for p in peers)
    mine_score = getattr(mine, score)
    return fit, (mine_score / best_peer if mine_score and best_peer else math.nan)


def speed_markdown(records, meta=None) -> str:
    """The speed report (Markdown), as printed and written to ``speed.md``.

    Parameters
    ----------
    records : list of SpeedRecord
    meta : dict, default=None
        ``key -> text`` lines of the header (machine, threads, date, ...).
    """
    meta = meta or {}
    lines = ["# skad speed suite", ""]
    lines += [f"- **{k}**: {v}" for k, v in meta.items()]
    gemm = [r.sgemm_gflops for r in records if r.sgemm_gflops]
    if gemm:
        lines.append(
            f"- **sgemm** (float32 square matmul 256-1024, best per job): "
            f"{max(gemm):.1f} GFLOP/s per CPU second (jobs: {min(gemm):.1f}-"
            f"{max(gemm):.1f})"
        )
    lines += [
        "- rows/s are per CPU second of the measuring process "
        "(time.process_time); scoring: the best of "
        f"{max((r.score_repeats or 1) for r in records)} passes; wall times are "
        "in speed.csv",
        "",
    ]
    compared = [r for r in records if r.measurement == "fit+score"]
    if compared:
        lines += _comparison_section(compared)
    scored = [r for r in records if r.measurement == "score"]
    if scored:
        lines += _scoring_section(scored)
    return "\n".join(lines).rstrip() + "\n"


def _comparison_section(records):
    ref = next(iter(records))
    mine = next(
        (r for r in records if r.detector == COMPARED[0] and r.status == "ok"), None
    )
    flops = mine.flops_per_row if mine is not None else None
    lines = [
        "## DeepSVDD against PyOD and DeepOD",
        "",
        f"Fit on {ref.fit_rows:,} x {ref.n_features} rows for {ref.epochs} epochs, "
        f"batch {ref.batch_size}; scoring {ref.score_rows:,} rows; the same "
        f"network widths for all"
        + (
            f" ({flops:,.0f} forward FLOPs per row measured on skad's network, "
            f"fit counted as {FIT_FLOPS_FACTOR:g}x that); % of peak = rows/s x "
            "FLOPs per row / sgemm rate."
            if flops
            else "."
        )
        + " Scoring: the best of the passes; first pass = the first "
        f"{ref.score_rows:,}-row pass after a 1,000-row warm-up.",
        "",
        "| detector | fit CPU s | fit rows/s | fit % of peak | score CPU s "
        "| score rows/s | score % of peak | first pass rows/s | skad fit ratio "
        "| skad score ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        if r.status != "ok":
            lines.append(
                f"| {r.detector} | {r.status}: {(r.error or '')[:80]} | | | | | | | | |"
            )
            continue
        fit_peak = score_peak = None
        if flops and r.sgemm_gflops:
            peak = r.sgemm_gflops * 1e9
            fit_peak = r.fit_rows_per_cpu_s * FIT_FLOPS_FACTOR * flops / peak
            score_peak = r.score_rows_per_cpu_s * flops / peak
        fit_ratio = score_ratio = "-"
        if mine is not None and r is not mine:
            fit_ratio = _ratio(mine.fit_rows_per_cpu_s, r.fit_rows_per_cpu_s)
            score_ratio = _ratio(mine.score_rows_per_cpu_s, r.score_rows_per_cpu_s)
        lines.append(
            f"| {r.detector} | {r.fit_cpu_seconds:.1f} "
            f"| {_rate(r.fit_rows_per_cpu_s)} | {_pct(fit_peak)} "
            f"| {r.score_cpu_seconds:.2f} | {_rate(r.score_rows_per_cpu_s)} "
            f"| {_pct(score_peak)} | {_rate(r.score_first_rows_per_cpu_s)} "
            f"| {fit_ratio} | {score_ratio} |"
        )
    ratios = comparison_ratios(records)
    lines.append("")
    if ratios is not None:
        fit, score = ratios
        first = comparison_ratios(records, "score_first_rows_per_cpu_s")[1]
        verdict = {True: "met", False: "NOT met"}
        lines.append(
            f"skad.DeepSVDD vs the faster peer, by CPU time: fit {fit:.2f}x "
            f"(target {TARGETS['fit']:g}x: {verdict[fit >= TARGETS['fit']]}), "
            f"scoring {score:.2f}x (target {TARGETS['score']:g}x: "
            f"{verdict[score >= TARGETS['score']]})"
            + ("." if math.isnan(first) else f"; on the first pass {first:.2f}x.")
        )
    elif mine is not None:
        lines.append(
            "No peer measured (pip install pyod; pip install deepod --no-deps)."
        )
    return lines + [""]


def _scoring_section(records):
    ref = next(iter(records))
    lines = [
        "## Scoring throughput of every skad detector",
        "",
        f"Defaults, {ref.n_features} features, fitted on {ref.fit_rows:,} rows for "
        f"{ref.epochs} epochs, {ref.score_rows:,} rows scored. Predicted rows/s = "
        "sgemm rate / forward FLOPs per row (matrix products only); flagged when "
        f"the measured rate is more than {SLOW_FACTOR:g}x below it.",
        "",
        "| detector | rows/s | FLOPs/row | predicted rows/s | % of prediction | flag |",
        "|---|---:|---:|---:|---:|---|",
    ]
    order = sorted(
        records, key=lambda r: (r.status != "ok", -(r.score_rows_per_cpu_s or 0))
    )
    for r in order:
        if r.status != "ok":
            error = (r.error or "")[:80]
            lines.append(f"| {r.detector} | {r.status}: {error} | | | | |")
            continue
        flag = ""
        if r.fraction_of_prediction is not None:
            if r.fraction_of_prediction < 1.0 / SLOW_FACTOR:
                factor = 1.0 / r.fraction_of_prediction
                flag = f"**{factor:.0f}x below prediction**"
        elif r.note:
            flag = r.note.split(":", 2)[0] + f" ({r.note.split(':', 2)[1].strip()})"
        flops = "-" if r.flops_per_row is None else f"{r.flops_per_row:,.0f}"
        lines.append(
            f"| {r.detector} | {_rate(r.score_rows_per_cpu_s)} | {flops} "
            f"| {_rate(r.predicted_rows_per_s)} | {_pct(r.fraction_of_prediction)} "
            f"| {flag} |"
        )
    return lines + [""]
