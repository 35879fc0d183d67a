"""The "Which detector?" page, generated from benchmark results files.

::

    python -m skad.benchmark.choose --results docs/benchmark/*.csv \\
        --rst docs/choosing.rst --readme README.md

reads ``results.csv`` files written by ``python -m skad.benchmark``, sorts
their jobs into cells of (setting, data kind) and, in each cell, compares the
best skad detector with the best baseline by the rule of the benchmark's
conclusion (:mod:`skad.benchmark._conclusion`). It writes an RST page and
rewrites the block of a README between ``<!-- choosing:start -->`` and
``<!-- choosing:end -->``. Nothing in them is typed by hand, and the output
depends only on the files (no date), so that regenerating it from the same
files changes nothing.

Settings: the CSV's ``setting`` (``unsupervised`` = unlabelled, contaminated
training rows; ``one-class`` = normal training rows only;
``semi-supervised`` = a few labelled anomalies). Data kinds: ADBench groups
``Classical`` = tabular, ``CV_by_*`` = image features, ``NLP_by_*`` = text
embeddings; other groups (the demo and synthetic suites, user data) are
listed as not used.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

from skad.benchmark._conclusion import compare, is_thin
from skad.benchmark._records import read_csv
from skad.benchmark._summary import FAILED_AUC, SMALL_TEST_ANOMALIES, TIE, summarize

__all__ = ["KINDS", "SETTINGS", "choose", "data_kind", "main", "to_markdown", "to_rst"]

#: The settings, as the CSV names them, and how the page names them.
SETTINGS = {
    "unsupervised": "Unlabelled (unsupervised)",
    "one-class": "Normal-only (one-class)",
    "semi-supervised": "A few labels (semi-supervised)",
}
#: Data kinds and the ADBench group prefixes that make them.
KINDS = {
    "tabular": ("Classical",),
    "image features": ("CV_by_",),
    "text embeddings": ("NLP_by_",),
}
#: The command that fills a cell.
COMMAND = (
    "python -m skad.benchmark --suite adbench --data-dir ../shared/data/adbench "
    "--setting SETTING --groups GROUPS --seeds 0 1 2 --output runs/NAME"
)
HOW_TO_FILL = (
    "A cell without results fills with {command}, whose ``results.csv`` "
    "goes to ``docs/benchmark/NAME.csv``; then run this generator again."
)
GROUPS = {
    "tabular": "Classical",
    "image features": "CV_by_ResNet18 CV_by_ViT",
    "text embeddings": "NLP_by_BERT NLP_by_RoBERTa",
}
START, END = "<!-- choosing:start -->", "<!-- choosing:end -->"


def data_kind(group) -> str | None:
    """``"tabular"``, ``"image features"``, ``"text embeddings"`` or None."""
    group = group or ""
    for kind, prefixes in KINDS.items():
        if any(
            group == p or (p.endswith("_") and group.startswith(p)) for p in prefixes
        ):
            return kind
    return None


def _load(paths):
    """Records of the files (a later file's job replaces an earlier one's)."""
    by_key, sources = {}, []
    for path in sorted(Path(p) for p in paths):
        rows = read_csv(path)
        for r in rows:
            r["_source"] = path.name
            key = (r["suite"], r["dataset"], r["detector"], r["seed"], r["setting"])
            by_key[key] = r
        sources.append((path, rows))
    return list(by_key.values()), sources


def _variant_text(name) -> str | None:
    from skad.benchmark._registry import VARIANTS, DetectorSpec, describe

    if name not in VARIANTS:
        return None
    target, params = VARIANTS[name]
    return describe(DetectorSpec(name, target, dict(params)))


def choose(paths) -> dict:
    """Compare the detectors of each (setting, data kind) cell.

    Returns a dict with ``cells`` (``(setting, kind) -> cell``; a cell is
    None without data, else a dict with ``compare``'s result, ``thin``,
    ``n_datasets``, ``seeds``, ``groups``, ``sources``, ``label_fractions``
    and ``same_as``), ``unused`` (``(file, suites, groups, size)`` of the
    jobs of each file that map to no data kind) and ``variants`` (variant
    name -> its configuration).
    """
    records, sources = _load(paths)
    cells = {}
    for setting in SETTINGS:
        for kind in KINDS:
            part = [
                r
                for r in records
                if r["setting"] == setting and data_kind(r.get("group")) == kind
            ]
            cells[(setting, kind)] = _cell(part) if part else None
    unused = []
    for path, rows in sources:
        rows = [r for r in rows if not data_kind(r.get("group"))]
        if rows:
            n_ds = len({r["dataset"] for r in rows})
            n_seeds = len({r["seed"] for r in rows})
            unused.append(
                (
                    path.name,
                    ", ".join(sorted({r["suite"] or "" for r in rows})),
                    ", ".join(sorted({r.get("group") or "-" for r in rows})),
                    _size(n_ds, n_seeds),
                )
            )
    variants = {}
    for cell in cells.values():
        for side in ("skad", "reference"):
            stats = cell and cell[side]
            if stats and _variant_text(stats["detector"]):
                variants[stats["detector"]] = _variant_text(stats["detector"])
    return {"cells": cells, "unused": unused, "variants": variants}


def _cell(records) -> dict:
    summary = summarize(records)
    c = compare(summary)
    c.update(
        thin=is_thin(summary),
        n_datasets=len(summary["datasets"]),
        seeds=summary["seeds"],
        groups=summary["groups"],
        sources=sorted({r["_source"] for r in records}),
        label_fractions=sorted(
            {r["label_fraction"] for r in records if r.get("label_fraction")}
        ),
        same_as=summary["same_as"],
        n_small=len(summary["small"]),
        labelled_reference=any(
            i["side"] == "reference" and i["labels"] for i in summary["info"].values()
        ),
    )
    return c


# ----------------------------------------------------------------- text
def _secs(v) -> str:
    if v is None or math.isnan(v):
        return "-"
    return f"{v:.2g} s" if v < 1 else f"{v:.3g} s" if v < 100 else f"{v:.0f} s"


def _who(stats, code) -> str:
    if stats is None:
        return "none ran"
    return f"{code(stats['detector'])}: {stats['auc']:.3f}, fit {_secs(stats['fit'])}"


def _size(n_datasets, n_seeds) -> str:
    return (
        f"{n_datasets} dataset{'s' * (n_datasets != 1)} x "
        f"{n_seeds} seed{'s' * (n_seeds != 1)}"
    )


def _evidence(c) -> str:
    text = _size(c["n_datasets"], len(c["seeds"]))
    if c["label_fractions"]:
        shares = "/".join(f"{f:.0%}" for f in c["label_fractions"])
        text += f", {shares} of the training anomalies labelled"
    return text


def _verdict(c, code) -> tuple[str, str]:
    """(recommended, note) of a cell."""
    s, r = c["skad"], c["reference"]
    if s is None or r is None:
        only = s or r
        side = "skad detector" if r is None else "baseline"
        if only is None:
            return "-", (
                "Neither a skad detector nor a baseline has a result on every dataset."
            )
        return "-", f"Only {code(only['detector'])} competes: no {side} ran here."
    w, t, l_ = c["wtl"]
    diff = s["auc"] - r["auc"]
    if c["thin"]:
        return "-", (
            f"Too little evidence to recommend (one seed, or most test splits "
            f"with fewer than {SMALL_TEST_ANOMALIES} anomalies)."
        )
    ratio = s["fit"] / r["fit"] if r["fit"] and r["fit"] > 0 else math.nan
    cost = f"{ratio:.0f}x the fit time" if ratio >= 1.5 else "similar fit time"
    caveat = ""
    if c["label_fractions"] and not c["labelled_reference"]:
        caveat = (
            " No baseline here learns from the labels (the semi-supervised "
            "DeepOD peers did not run)."
        )
    if c["winner"] == "skad":
        return code(s["detector"]), (
            f"skad's {code(s['detector'])} beats {code(r['detector'])}: "
            f"{diff:+.3f} ROC AUC, W/T/L {w}/{t}/{l_}, at {cost}.{caveat}"
        )
    if c["winner"] == "reference":
        faster = ""
        if r["fit"] < s["fit"] and r["fit"] > 0:
            faster = f", and fits {s['fit'] / r['fit']:.0f}x faster"
        return code(r["detector"]), (
            f"**skad is not the best choice**: {code(r['detector'])} beats skad's "
            f"best, {code(s['detector'])} ({diff:+.3f} ROC AUC, W/T/L {w}/{t}/{l_}"
            f" for {code(s['detector'])}){faster}.{caveat}"
        )
    cheap = c["default"]["detector"]
    note = (
        f"No clear winner ({diff:+.3f} ROC AUC, W/T/L {w}/{t}/{l_}): the cheaper "
        f"{code(cheap)} is the sensible default"
    )
    if c["default"] is r:
        note += "; skad is not needed here"
    return code(cheap), note + "." + caveat


def _no_results(setting, kind, code) -> str:
    return (
        f"No results yet: {code('--setting ' + setting)} "
        f"{code('--groups ' + GROUPS[kind])}."
    )


def _rules() -> str:
    return (
        f"In each cell, the best skad detector (skad's detectors and their named "
        f"variants) and the best baseline (scikit-learn's IsolationForest, LOF, "
        f"OCSVM, the KNN baseline, and PyOD / DeepOD when they ran) are the ones "
        f"with the highest mean ROC AUC over the cell's datasets (seed means; a "
        f"failed job counts {FAILED_AUC}; only detectors with a result on every "
        f"dataset compete; a detector repeating another's results, such as "
        f"DeepSAD without labels, does not). One is recommended when its mean is "
        f"ahead by more than {TIE} and it wins more datasets than it loses "
        f"(W/T/L: per-dataset wins, ties within {TIE}, losses of the skad "
        f"detector); otherwise the cheaper to fit is the sensible default. Fit "
        f"times are medians per fit on the machine of each run (CPU, see the "
        f"``threads`` column of the files), so compare them within a row. "
        f"Evidence with one seed, or with most test splits holding fewer than "
        f"{SMALL_TEST_ANOMALIES} anomalies, gives no recommendation."
    )


def _rows(result, setting, code):
    """(kind, row) of one setting; row None for a cell without data."""
    for kind in KINDS:
        c = result["cells"][(setting, kind)]
        if c is None:
            yield kind, None
            continue
        recommended, note = _verdict(c, code)
        yield (
            kind,
            {
                "evidence": _evidence(c),
                "recommended": recommended,
                "skad": _who(c["skad"], code),
                "reference": _who(c["reference"], code),
                "note": note,
                "sources": ", ".join(code(s) for s in c["sources"]),
            },
        )


def to_rst(result, sources_dir="docs/benchmark") -> str:
    """The RST page."""

    def code(x):
        return f"``{x}``"

    out = [
        ".. Generated by python -m skad.benchmark.choose from the results files in",
        f"   {sources_dir}/; do not edit by hand.",
        "",
        "Which detector?",
        "===============",
        "",
        "Per setting and kind of data, the detector the committed benchmark results "
        "recommend, its mean ROC AUC and median fit time next to the best "
        "baseline's, and where skad is not the best choice. The numbers come from "
        f"the ``results.csv`` files under ``{sources_dir}/`` (see :doc:`benchmark`).",
        "",
        _rules(),
        "",
    ]
    for setting, setting_name in SETTINGS.items():
        out += [setting_name, "-" * len(setting_name), ""]
        out += [
            ".. list-table::",
            "   :header-rows: 1",
            "   :widths: 12 14 12 20 20 40",
            "",
            "   * - data",
            "     - evidence",
            "     - recommended",
            "     - best skad detector: mean ROC AUC, median fit",
            "     - best baseline: mean ROC AUC, median fit",
            "     - note",
        ]
        for kind, row in _rows(result, setting, code):
            if row is None:
                cells = [kind, "none", "-", "-", "-", _no_results(setting, kind, code)]
            else:
                cells = [
                    kind,
                    row["evidence"],
                    row["recommended"],
                    row["skad"],
                    row["reference"],
                    f"{row['note']} (from {row['sources']})",
                ]
            out.append(f"   * - {cells[0]}")
            out += [f"     - {c}" for c in cells[1:]]
        out.append("")
    out += [HOW_TO_FILL.format(command=f"``{COMMAND}``"), ""]
    if result["variants"]:
        out += ["Variants named above:", ""]
        out += [f"* ``{n}`` = ``{t}``" for n, t in sorted(result["variants"].items())]
        out.append("")
    if result["unused"]:
        out += [
            "Results of groups that are no ADBench kind of data (the demo and "
            "synthetic suites, user data) are not used above:",
            "",
        ]
        out += [
            f"* ``{name}``: suite {suite}, groups {groups}, {size}"
            for name, suite, groups, size in result["unused"]
        ]
        out.append("")
    return "\n".join(out)


def to_markdown(result) -> str:
    """The README table (the block between the markers, markers excluded)."""

    def code(x):
        return f"`{x}`"

    out = [
        "_Generated by `python -m skad.benchmark.choose` from `docs/benchmark/*.csv` "
        "(see `docs/choosing.rst` for the rule); do not edit by hand._",
        "",
        "| setting | data | evidence | recommended | best skad: mean ROC AUC, "
        "median fit | best baseline: mean ROC AUC, median fit | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for setting, setting_name in SETTINGS.items():
        for kind, row in _rows(result, setting, code):
            if row is None:
                cells = ["none", "-", "-", "-", _no_results(setting, kind, code)]
            else:
                cells = [row["evidence"], row["recommended"], row["skad"]]
                cells += [row["reference"], row["note"]]
            out.append("| " + " | ".join([setting_name, kind, *cells]) + " |")
    out.append("")
    if result["variants"]:
        named = "; ".join(
            f"`{n}` = `{t}`" for n, t in sorted(result["variants"].items())
        )
        out += [f"Variants: {named}.", ""]
    out.append(HOW_TO_FILL.format(command=f"`{COMMAND}`").replace("``", "`"))
    return "\n".join(out)


def replace_block(text, block) -> str:
    """``text`` with the part between the choosing markers replaced."""
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(text):
        raise ValueError(f"no {START} ... {END} block to rewrite")
    return pattern.sub(lambda _: f"{START}\n{block}\n{END}", text, count=1)


def _write(path, text) -> bool:
    path = Path(path)
    if path.exists() and path.read_text() == text:
        return False
    path.write_text(text)
    return True


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m skad.benchmark.choose",
        description="Write the 'Which detector?' page (and a README table) from "
        "benchmark results.csv files.",
    )
    p.add_argument("--results", nargs="+", required=True, help="results CSV files")
    p.add_argument("--rst", help="RST page to write, e.g. docs/choosing.rst")
    p.add_argument(
        "--readme", help=f"Markdown file whose {START} ... {END} block to rewrite"
    )
    args = p.parse_args(argv)
    result = choose(args.results)
    sources_dir = Path(args.results[0]).parent.as_posix()
    if args.rst:
        changed = _write(args.rst, to_rst(result, sources_dir) + "\n")
        print(f"{args.rst}: {'written' if changed else 'unchanged'}")
    if args.readme:
        text = replace_block(Path(args.readme).read_text(), to_markdown(result))
        changed = _write(args.readme, text)
        print(f"{args.readme}: {'written' if changed else 'unchanged'}")
    if not args.rst and not args.readme:
        print(to_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
