"""``--suite speed``: training and scoring throughput of DeepSVDD vs peers.

skad's :class:`~skad.DeepSVDD` against PyOD's and DeepOD's DeepSVDD (when
installed) with the same network widths (``n_features -> hidden -> latent``),
epochs, batch size and device, on synthetic Gaussian data: ``fit_rows`` rows
for training, ``score_rows`` rows for scoring. Each measurement runs in a
fresh child process that inherits the thread settings.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

__all__ = ["run_speed"]

logger = logging.getLogger("skad.benchmark")

#: Targets of the issue: skad / fastest peer.
TARGETS = {"fit": 2.0, "score": 5.0}


def _data(n, d, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d))


def _build(name, cfg):
    hidden, latent = cfg["hidden"], cfg["latent"]
    if name == "skad.DeepSVDD":
        from skad import DeepSVDD

        return DeepSVDD(
            hidden_layer_sizes=(hidden,),
            latent_dim=latent,
            max_iter=cfg["epochs"],
            batch_size=cfg["batch_size"],
            device=cfg["device"],
            random_state=0,
        )
    if name == "PyOD.DeepSVDD":
        from pyod.models.deep_svdd import DeepSVDD

        return DeepSVDD(
            n_features=cfg["n_features"],
            hidden_neurons=[hidden, latent],
            epochs=cfg["epochs"],
            batch_size=cfg["batch_size"],
            verbose=0,
            random_state=0,
        )
    if name == "DeepOD.DeepSVDD":
        from deepod.models.tabular import DeepSVDD

        return DeepSVDD(
            hidden_dims=str(hidden),
            rep_dim=latent,
            epochs=cfg["epochs"],
            batch_size=cfg["batch_size"],
            device=cfg["device"],
            verbose=0,
            random_state=0,
        )
    raise ValueError(name)


def _measure(name, cfg):
    """Child process: fit on fit_rows, score score_rows; seconds of each."""
    import warnings

    import torch

    from skad.benchmark._runner import _warm_up_torch

    torch.set_num_threads(cfg["threads"])
    warnings.simplefilter("ignore")
    _warm_up_torch()
    X_fit = _data(cfg["fit_rows"], cfg["n_features"], 0)
    X_score = _data(cfg["score_rows"], cfg["n_features"], 1)
    est = _build(name, cfg)
    t0, c0 = time.perf_counter(), time.process_time()
    est.fit(X_fit)
    fit_s, fit_cpu = time.perf_counter() - t0, time.process_time() - c0
    # skad: higher = more normal; peers: anomaly score. Only the time matters.
    score = est.score_samples if name == "skad.DeepSVDD" else est.decision_function
    score(X_score[:1000])  # warm-up (allocations, lazy set-up)
    t0, c0 = time.perf_counter(), time.process_time()
    scores = score(X_score)
    score_s, score_cpu = time.perf_counter() - t0, time.process_time() - c0
    assert np.asarray(scores).shape == (cfg["score_rows"],)
    return {
        "fit_seconds": fit_s,
        "score_seconds": score_s,
        "fit_cpu_seconds": fit_cpu,
        "score_cpu_seconds": score_cpu,
    }


def _available(name):
    import importlib.util

    module = {"PyOD.DeepSVDD": "pyod", "DeepOD.DeepSVDD": "deepod"}.get(name)
    return module is None or importlib.util.find_spec(module) is not None


def run_speed(
    *,
    fit_rows=100_000,
    score_rows=1_000_000,
    n_features=64,
    epochs=10,
    batch_size=256,
    hidden=64,
    latent=32,
    threads=None,
    device=None,
    output=None,
    detectors=None,
    print_table=True,
):
    """Measure rows per second for fit and scoring; returns the records.

    Fit throughput is ``fit_rows * epochs / fit seconds`` (training rows
    processed per second); scoring throughput is ``score_rows / score
    seconds``. Ratios are skad's throughput over each peer's.
    """
    import torch

    from skad.benchmark._runner import resolve_threads, set_thread_env

    n_threads, reason = resolve_threads(threads)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    names = detectors or ["skad.DeepSVDD", "PyOD.DeepSVDD", "DeepOD.DeepSVDD"]
    names = [n for n in names if _available(n)]
    cfg = dict(
        fit_rows=fit_rows,
        score_rows=score_rows,
        n_features=n_features,
        epochs=epochs,
        batch_size=batch_size,
        hidden=hidden,
        latent=latent,
        threads=n_threads,
        device=device,
    )
    saved = dict(os.environ)
    records = []
    try:
        set_thread_env(n_threads)
        for name in names:
            with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
                try:
                    res = pool.submit(_measure, name, cfg).result()
                    status, error = "ok", ""
                except Exception as exc:  # noqa: BLE001 - reported
                    res, status, error = {}, "failed", f"{type(exc).__name__}: {exc}"
            rec = {"detector": name, "status": status, "error": error[:300], **cfg}
            rec.update(res)
            if status == "ok":
                rec["fit_rows_per_s"] = fit_rows * epochs / res["fit_seconds"]
                rec["score_rows_per_s"] = score_rows / res["score_seconds"]
                rec["fit_rows_per_cpu_s"] = fit_rows * epochs / res["fit_cpu_seconds"]
                rec["score_rows_per_cpu_s"] = score_rows / res["score_cpu_seconds"]
            records.append(rec)
            logger.info("speed %s: %s", name, rec)
    finally:
        os.environ.clear()
        os.environ.update(saved)

    text = speed_markdown(records, cfg, reason)
    if output is not None:
        out = Path(output)
        out.mkdir(parents=True, exist_ok=True)
        (out / "speed.md").write_text(text + "\n")
        import csv

        keys = list(dict.fromkeys(k for r in records for k in r))
        with open(out / "speed.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, keys)
            writer.writeheader()
            writer.writerows(records)
    if print_table:
        print(text)
    return records


def speed_markdown(records, cfg, reason="") -> str:
    ok = {r["detector"]: r for r in records if r["status"] == "ok"}
    skad_rec = ok.get("skad.DeepSVDD")
    peers = [r for r in ok.values() if r["detector"] != "skad.DeepSVDD"]
    lines = [
        "# skad speed suite: DeepSVDD throughput",
        "",
        f"- fit: {cfg['fit_rows']:,} x {cfg['n_features']} rows, {cfg['epochs']} "
        f"epochs, batch {cfg['batch_size']}; scoring: {cfg['score_rows']:,} rows",
        f"- network: {cfg['n_features']} -> {cfg['hidden']} -> {cfg['latent']}; "
        f"device {cfg['device']}; {cfg['threads']} torch thread(s) ({reason}), "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}",
        "- fit rows/s = rows x epochs / fit seconds; score rows/s = rows / seconds",
        "",
        "| detector | fit s | fit rows/s | score s | score rows/s | skad fit ratio "
        "| skad score ratio |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        if r["status"] != "ok":
            lines.append(f"| {r['detector']} | failed: {r['error'][:80]} | | | | | |")
            continue
        fit_ratio = score_ratio = "-"
        if skad_rec is not None and r is not skad_rec:
            fit_ratio = f"{skad_rec['fit_rows_per_s'] / r['fit_rows_per_s']:.2f}x"
            score_ratio = f"{skad_rec['score_rows_per_s'] / r['score_rows_per_s']:.2f}x"
        lines.append(
            f"| {r['detector']} | {r['fit_seconds']:.1f} | {r['fit_rows_per_s']:,.0f} "
            f"| {r['score_seconds']:.2f} | {r['score_rows_per_s']:,.0f} | {fit_ratio} "
            f"| {score_ratio} |"
        )
    lines += [
        "",
        "Per CPU second of the measuring process (time.process_time; steadier "
        "than wall time on a shared machine):",
        "",
        "| detector | fit CPU s | fit rows/CPU s | score CPU s | score rows/CPU s "
        "| skad fit ratio | skad score ratio |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in ok.values():
        fit_ratio = score_ratio = "-"
        if skad_rec is not None and r is not skad_rec:
            fit_ratio = (
                f"{skad_rec['fit_rows_per_cpu_s'] / r['fit_rows_per_cpu_s']:.2f}x"
            )
            score_ratio = (
                f"{skad_rec['score_rows_per_cpu_s'] / r['score_rows_per_cpu_s']:.2f}x"
            )
        lines.append(
            f"| {r['detector']} | {r['fit_cpu_seconds']:.1f} "
            f"| {r['fit_rows_per_cpu_s']:,.0f} | {r['score_cpu_seconds']:.2f} "
            f"| {r['score_rows_per_cpu_s']:,.0f} | {fit_ratio} | {score_ratio} |"
        )
    if skad_rec is not None and peers:
        best_fit = max(p["fit_rows_per_s"] for p in peers)
        best_score = max(p["score_rows_per_s"] for p in peers)
        rf = skad_rec["fit_rows_per_s"] / best_fit
        rs = skad_rec["score_rows_per_s"] / best_score
        rfc = skad_rec["fit_rows_per_cpu_s"] / max(
            p["fit_rows_per_cpu_s"] for p in peers
        )
        rsc = skad_rec["score_rows_per_cpu_s"] / max(
            p["score_rows_per_cpu_s"] for p in peers
        )
        lines += [
            "",
            f"skad vs the faster peer: fit {rf:.2f}x (target {TARGETS['fit']:g}x, "
            f"{'met' if rf >= TARGETS['fit'] else 'NOT met'}), scoring {rs:.2f}x "
            f"(target {TARGETS['score']:g}x, "
            f"{'met' if rs >= TARGETS['score'] else 'NOT met'}) in wall time; "
            f"per CPU second: fit {rfc:.2f}x, scoring {rsc:.2f}x.",
        ]
    elif skad_rec is not None:
        lines += [
            "",
            "No peer installed (pip install pyod; pip install deepod --no-deps).",
        ]
    return "\n".join(lines)
