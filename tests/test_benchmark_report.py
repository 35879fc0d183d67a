"""skad.benchmark report: stability, conclusion, repeated detectors, plots, CLI,
and the "Which detector?" generator."""

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from skad.benchmark import FIELDS, read_csv, run, summarize
from skad.benchmark._conclusion import compare, conclusion_markdown
from skad.benchmark._report import to_markdown

ROOT = Path(__file__).resolve().parents[1]


def _records(values, *, seeds=(0, 1, 2), group="Classical", setting="one-class",
             n_test_anomalies=30, fit=None):  # fmt: skip
    """Records from ``{detector: [per-dataset ROC AUC, ...]}`` (same every seed;
    None = failed)."""
    fit = fit or {}
    rows = []
    for det, aucs in values.items():
        for i, auc in enumerate(aucs):
            for seed in seeds:
                ok = auc is not None
                rows.append(
                    {
                        "suite": "adbench",
                        "group": group,
                        "dataset": f"{group}/d{i}",
                        "detector": det,
                        "seed": seed,
                        "setting": setting,
                        "status": "ok" if ok else "failed",
                        "roc_auc": auc,
                        "average_precision": None if not ok else auc / 2,
                        "fit_seconds": fit.get(det, 1.0) if ok else None,
                        "score_seconds": 0.01 if ok else None,
                        "n_test": 300,
                        "n_test_anomalies": n_test_anomalies,
                        "label_fraction": 0.1 if setting == "semi-supervised" else None,
                        "threads": 1,
                    }
                )
    return rows


# --------------------------------------------------------------- stability
def test_summary_is_byte_identical_when_rerun_without_new_jobs(tmp_path):
    kwargs = dict(
        detectors=["IsolationForest", "KNN", "LOF"],
        output=tmp_path,
        isolate=False,
        progress=False,
        plots=False,
        as_frame=False,
    )
    rows = run("synthetic", **kwargs)
    first = (tmp_path / "summary.md").read_bytes()
    # the records handed back are those of the file, to the last digit
    assert rows == read_csv(tmp_path / "results.csv")
    again = run("synthetic", **kwargs)
    assert again == rows
    assert (tmp_path / "summary.md").read_bytes() == first


def test_ranks_come_from_the_stored_values():
    # differences below the CSV's 6 decimals are ties, in every report
    from skad.benchmark._plans import EvalPlan
    from skad.benchmark._protocol import EvalRecord

    suite = {"d": (np.zeros((4, 1)), [0, 0, 1, 1])}
    plan = EvalPlan.build(suite, detectors=["LOF", "KNN"], isolate=False, threads=1)
    recs = [
        EvalRecord(dataset="d", detector=det, seed=0, setting="unsupervised",
                   status="ok", roc_auc=auc, average_precision=ap)
        for det, auc, ap in (("LOF", 0.8000001, 0.5), ("KNN", 0.8000002, 0.6))
    ]  # fmt: skip
    ranks = {o["detector"]: o["rank"] for o in plan.summarize(recs)["overall"]}
    assert ranks == {"LOF": 1.5, "KNN": 1.5}


# --------------------------------------------------------------- conclusion
def test_conclusion_names_the_winner_with_wtl_and_cost():
    recs = _records(
        {
            "IsolationForest": [0.70, 0.71, 0.72, 0.90],
            "KNN": [0.75, 0.76, 0.77, 0.95],
            "DeepSVDD": [0.85, 0.86, 0.87, 0.94],
        },
        fit={"DeepSVDD": 10.0, "KNN": 0.1, "IsolationForest": 0.2},
    )
    s = summarize(recs)
    c = compare(s)
    assert c["skad"]["detector"] == "DeepSVDD" and c["reference"]["detector"] == "KNN"
    assert c["wtl"] == (3, 1, 0) and c["winner"] == "skad"
    text = conclusion_markdown(s, "one-class")
    assert "**Use DeepSVDD**" in text and "3/1/0" in text and "100x slower" in text
    assert "Thin evidence" not in text
    md = to_markdown(s, {"suite": "adbench", "setting": "one-class"})
    assert md.rstrip().endswith(text.rstrip())  # the summary ends with it


def test_conclusion_says_when_skad_is_not_the_best_choice_and_ties():
    worse = _records({"LOF": [0.9, 0.9, 0.9], "ESAD": [0.8, 0.8, 0.95]})
    c = compare(summarize(worse))
    assert c["winner"] == "reference"
    assert "skad is not the best choice" in conclusion_markdown(summarize(worse))
    tie = _records(
        {"LOF": [0.90, 0.80], "ESAD": [0.905, 0.80]}, fit={"ESAD": 5.0, "LOF": 0.5}
    )
    c = compare(summarize(tie))
    assert c["winner"] is None and c["default"]["detector"] == "LOF"
    assert "No clear winner" in conclusion_markdown(summarize(tie))


def test_failed_jobs_count_as_random_and_groups_get_their_own_line():
    recs = _records({"KNN": [0.8, 0.8], "SLA2P": [0.95, None]}) + _records(
        {"KNN": [0.7], "SLA2P": [0.9]}, group="CV_by_ViT"
    )
    s = summarize(recs)
    assert compare(s, ["Classical/d0", "Classical/d1"])["skad"]["auc"] == pytest.approx(
        0.725
    )
    text = conclusion_markdown(s)
    assert "**Classical** (2 datasets x 3 seeds)" in text
    assert "**CV_by_ViT** (1 dataset x 3 seeds)" in text


def test_thin_evidence_is_flagged_and_gives_no_recommendation():
    recs = _records(
        {"LOF": [0.95, 0.9], "DeepSVDD": [0.7, 0.6]}, seeds=(0,), n_test_anomalies=3
    )
    s = summarize(recs)
    assert s["small"] == [("Classical/d0", 3, 300), ("Classical/d1", 3, 300)]
    text = conclusion_markdown(s)
    assert "Thin evidence" in text and "one seed (0)" in text
    assert "Classical/d0: 3 in 300 test rows" in text
    assert "no recommendation" in text and "**Use LOF**" not in text


# -------------------------------------------------------- repeated results
def test_a_detector_repeating_another_is_marked_and_left_out():
    recs = _records(
        {
            "DeepSAD": [0.61, 0.72, 0.93],  # listed first, takes labels: the repeat
            "DeepSVDD": [0.61, 0.72, 0.93],
            "IsolationForest": [0.6, 0.7, 0.9],
            "KNN": [1.0, 1.0, 1.0],
            "LOF": [1.0, 1.0, 1.0],  # equal, but trivially: not a repeat
        }
    )
    s = summarize(recs)
    assert s["same_as"] == {"DeepSAD": "DeepSVDD"}
    by = {o["detector"]: o for o in s["overall"]}
    assert math.isnan(by["DeepSAD"]["rank"]) and by["DeepSAD"]["same_as"] == "DeepSVDD"
    assert by["DeepSVDD"]["rank"] == 3.0  # ranked among 4, not 5
    md = to_markdown(s, {})
    assert "| DeepSAD (= DeepSVDD) |" in md
    assert compare(s)["skad"]["detector"] == "DeepSVDD"
    # with labels DeepSAD's results differ: no repeat
    recs[0]["roc_auc"] = 0.62
    assert summarize(recs)["same_as"] == {}
    # a single equal job may be chance: no repeat either
    one = _records({"DeepSAD": [0.61], "DeepSVDD": [0.61]}, seeds=(0,))
    assert summarize(one)["same_as"] == {}


# -------------------------------------------------------------------- plots
def test_plots_colour_skad_apart_and_show_values_below_one_half(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.axes import Axes

    from skad.benchmark._plots import KIND_COLORS, write_plots

    seen = {"barh": [], "imshow": [], "text": [], "legend": []}
    for name in seen:
        original = getattr(Axes, name)

        def spy(self, *args, _name=name, _original=original, **kwargs):
            seen[_name].append((args, kwargs))
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(Axes, name, spy)
    s = summarize(_records({"LOF": [0.27, 0.9], "DeepSVDD": [0.8, 0.9]}))
    paths = write_plots(s, tmp_path)
    assert paths == [str(tmp_path / "rank.png"), str(tmp_path / "heatmap.png")]
    (names, _), kwargs = seen["barh"][0][0], seen["barh"][0][1]
    colours = dict(zip(names, kwargs["color"]))
    assert colours == {"LOF": KIND_COLORS["baseline"], "DeepSVDD": KIND_COLORS["skad"]}
    assert seen["legend"][0][0][1] == ["skad", "baseline"]
    kwargs = seen["imshow"][0][1]
    assert (kwargs["vmin"], kwargs["vmax"]) == (0.0, 1.0)  # centred on 0.5
    assert "0.27" in [args[2] for args, _ in seen["text"]]


# ---------------------------------------------------------------------- CLI
def test_cli_prints_every_output_file(tmp_path, capsys):
    from skad.benchmark.__main__ import main

    out = tmp_path / "out"
    args = ["--suite", "synthetic", "--detectors", "IsolationForest", "KNN",
            "--output", str(out), "--in-process", "--quiet", "--threads",
            "1"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    names = ["results.csv", "summary.md", "run-info.json"]
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        pass
    else:
        names += ["rank.png", "heatmap.png"]
    for name in names:
        assert str(out / name) in printed and (out / name).exists()
    assert "## Conclusion" in printed


# ---------------------------------------------------------- which detector?
def _write_csv(path, rows):
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, FIELDS, restval="", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(
            {k: ("" if v is None else v) for k, v in r.items()} for r in rows
        )


def test_choose_page_and_readme_block_from_small_csvs(tmp_path):
    from skad.benchmark import choose

    _write_csv(
        tmp_path / "a.csv",
        _records({"KNN": [0.9, 0.9, 0.9], "DeepSVDD": [0.8, 0.8, 0.8]})
        + _records(
            {"KNN": [0.7, 0.7], "AnoMem": [0.9, 0.8]},
            group="CV_by_ViT",
            fit={"AnoMem": 20.0},
        )  # fmt: skip
        + _records({"KNN": [0.7], "DeepSVDD": [0.9]}, group="sklearn"),
    )
    _write_csv(
        tmp_path / "b.csv",
        _records(
            {"IsolationForest": [0.7, 0.7], "AnoMem": [0.9, 0.9]},
            group="NLP_by_BERT",
            setting="semi-supervised",
        )  # fmt: skip
        + _records(
            {"LOF": [0.8, 0.8], "DeepSVDD": [0.81, 0.8]},
            group="Classical",
            setting="unsupervised",
        ),  # fmt: skip
    )
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{choose.START}\nold\n{choose.END}\n\ntail\n")
    rst = tmp_path / "choosing.rst"
    paths = [str(tmp_path / "a.csv"), str(tmp_path / "b.csv")]
    assert (
        choose.main(["--results", *paths, "--rst", str(rst), "--readme", str(readme)])
        == 0
    )
    page = rst.read_text()
    assert "Which detector?" in page
    # one-class tabular: KNN, and skad is not the best choice
    assert (
        "**skad is not the best choice**: ``KNN`` beats skad's best, ``DeepSVDD``"
        in page
    )
    # one-class image features: AnoMem
    assert "skad's ``AnoMem`` beats ``KNN``" in page and "20x the fit time" in page
    assert "labels" in page and "No baseline here learns from the labels" in page
    assert "No clear winner" in page  # unsupervised tabular: within the tie
    assert page.count("No results yet") == 5
    assert "``a.csv``: suite adbench, groups sklearn, 1 dataset x 3 seeds" in page
    text = readme.read_text()
    assert text.startswith("# x\n\n<!-- choosing:start -->\n_Generated")
    assert text.endswith("<!-- choosing:end -->\n\ntail\n") and "old" not in text
    assert (
        "| Normal-only (one-class) | image features | 2 datasets x 3 seeds | `AnoMem` |"
        in text
    )
    # the same files give the same bytes
    before = (rst.read_bytes(), readme.read_bytes())
    choose.main(["--results", *paths[::-1], "--rst", str(rst), "--readme", str(readme)])
    assert (rst.read_bytes(), readme.read_bytes()) == before


@pytest.mark.parametrize(
    "group, kind",
    [("Classical", "tabular"), ("CV_by_ResNet18", "image features"),
     ("NLP_by_RoBERTa", "text embeddings"), ("sklearn", None), (None, None)],
)  # fmt: skip
def test_data_kinds(group, kind):
    from skad.benchmark.choose import data_kind

    assert data_kind(group) == kind


def test_committed_choosing_page_is_generated_from_the_committed_csvs():
    from skad.benchmark import choose

    result = choose.choose(sorted(ROOT.glob("docs/benchmark/*.csv")))
    page = (ROOT / "docs" / "choosing.rst").read_text()
    assert page == choose.to_rst(result, "docs/benchmark") + "\n", (
        "regenerate: python -m skad.benchmark.choose --results docs/benchmark/*.csv "
        "--rst docs/choosing.rst --readme README.md"
    )
    readme = (ROOT / "README.md").read_text()
    assert choose.replace_block(readme, choose.to_markdown(result)) == readme
