"""Sphinx configuration of the skad documentation.

Build with ``make -C docs html`` (warnings are errors). The API pages are
generated from the docstrings of every name in ``__all__`` of ``skad``,
``skad.metrics``, ``skad.utils``, ``skad.datasets`` and ``skad.benchmark``
(whichever exist), so new detectors appear without editing the docs; the
gallery runs every ``examples/plot_*.py`` script.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import skad  # noqa: E402

project = "skad"
author = "skad developers"
copyright = "skad developers"
version = release = skad.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "*.inc", "**/*.inc", "benchmark/*.md"]
html_theme = "alabaster"
html_static_path: list[str] = []
html_title = f"skad {release}"

# The API list is generated into an include file (see _write_api below);
# autosummary is told to read it so that it writes the stub pages.
source_suffix = {".rst": "restructuredtext", ".inc": "restructuredtext"}
autosummary_generate = ["api.rst", "api_list.inc"]
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

# scikit-learn's metadata-routing helpers refer to labels of its own docs.
_SKIPPED_MEMBERS = re.compile(r"^(set_\w+_request|get_metadata_routing)$")


def _skip_member(app, what, name, obj, skip, options):
    if _SKIPPED_MEMBERS.match(name):
        return True
    return None


# ``n_features_in_`` written without backticks (as in numpydoc type lines such
# as "ndarray of shape (n_features_in_,)") is reST reference syntax; quote
# such names as literals outside inline literals, roles and doctests.
_TRAILING_UNDERSCORE = re.compile(r"(?<![\w*|:.`])([A-Za-z]\w*_)(?![\w`])")
_LITERALS = re.compile(r"(``.*?``|`[^`]*`)")


def _quote_trailing_underscores(app, what, name, obj, options, lines):
    for i, line in enumerate(lines):
        if line.lstrip().startswith((">>>", "...")):
            continue
        parts = _LITERALS.split(line)
        for j in range(0, len(parts), 2):
            parts[j] = _TRAILING_UNDERSCORE.sub(r"``\1``", parts[j])
        lines[i] = "".join(parts)


def setup(app):
    app.connect("autodoc-skip-member", _skip_member)
    # after numpydoc (priority 500) has turned the sections into reST
    app.connect("autodoc-process-docstring", _quote_trailing_underscores, 900)


# Matplotlib must not try to open windows while the gallery runs.
os.environ.setdefault("MPLBACKEND", "Agg")
warnings.filterwarnings("ignore", message="Matplotlib is currently using agg")

sphinx_gallery_conf = {
    "examples_dirs": ["../examples"],
    "gallery_dirs": ["auto_examples"],
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": False,
    "only_warn_on_example_error": False,
    "min_reported_time": 0,
    "show_memory": False,
}

# --------------------------------------------------------------------------
# API listing generated from __all__ (docs/api_list.inc, git-ignored)
# --------------------------------------------------------------------------

_API_MODULES = [
    ("skad", "Detectors and top-level functions"),
    ("skad.metrics", "Metrics and scorers"),
    ("skad.utils", "Utilities"),
    ("skad.persistence", "Persistence"),
    ("skad.datasets", "Datasets"),
    ("skad.benchmark", "Benchmark"),
]


def _api_entries(module_name: str) -> list[str]:
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return []
    names = [n for n in getattr(module, "__all__", []) if not n.startswith("__")]
    out = []
    for name in names:
        obj = getattr(module, name, None)
        # document each object once, under the module that defines it
        home = getattr(obj, "__module__", module_name) or module_name
        if module_name == "skad" and home.startswith(("skad.utils", "skad.persist")):
            continue
        out.append(name)
    return out


def _write_api() -> None:
    gen = HERE / "gen_modules"
    gen.mkdir(exist_ok=True)
    lines = []
    for module_name, title in _API_MODULES:
        entries = _api_entries(module_name)
        if not entries:
            continue
        lines += [
            title,
            "-" * len(title),
            "",
            f".. currentmodule:: {module_name}",
            "",
            ".. autosummary::",
            "   :toctree: gen_modules/",
            "",
        ]
        lines += [f"   {name}" for name in entries]
        lines.append("")
    text = "\n".join(lines) + "\n"
    # next to api.rst, so that ":toctree: gen_modules/" means the same
    # directory to autosummary's generator and to its directive
    target = HERE / "api_list.inc"
    if not target.exists() or target.read_text() != text:
        target.write_text(text)


# --------------------------------------------------------------------------
# Benchmark tables from committed results (docs/benchmark/*.csv, written by
# ``python -m skad.benchmark``), summarised by skad.benchmark itself
# --------------------------------------------------------------------------


def _list_table(title: str, headers, rows, underline: str | None) -> list[str]:
    out = [title] + ([underline * len(title)] if underline else []) + [""]
    out += [".. list-table::", "   :header-rows: 1", ""]
    for row in [headers, *rows]:
        out.append(f"   * - {row[0]}")
        out += [f"     - {c}" for c in row[1:]]
    out.append("")
    return out


def _benchmark_section(title: str, summary) -> list[str]:
    from skad.benchmark._report import overall_rows

    return _list_table(title, *overall_rows(summary), "~")


#: Columns of the per-group tables (ROC AUC and the F1 of predict).
_GROUP_COLUMNS = ("detector", "ROC AUC", "F1 auto", "F1 true", "flagged auto")


def _group_section(title: str, summary) -> list[str]:
    """ROC AUC and the F1 of predict at both thresholds, for one group."""
    from skad.benchmark._report import overall_rows

    headers, rows = overall_rows(summary)
    keep = [headers.index(c) for c in _GROUP_COLUMNS]
    return _list_table(
        title, _GROUP_COLUMNS, [[row[i] for i in keep] for row in rows], None
    )


def _write_benchmark_table() -> None:
    target = HERE / "gen_modules" / "benchmark_table.inc"
    target.parent.mkdir(exist_ok=True)
    sources = sorted((HERE / "benchmark").glob("*.csv"))
    lines: list[str] = []
    if sources:
        from skad.benchmark import read_csv, summarize

        for source in sources:
            records = read_csv(source)
            keys = dict.fromkeys((r["suite"], r["setting"]) for r in records)
            for suite, setting in keys:
                part = [
                    r for r in records if (r["suite"], r["setting"]) == (suite, setting)
                ]
                summary = summarize(part)
                seeds = sorted({int(r["seed"]) for r in part})
                title = (
                    f"{suite} suite, {setting} setting: "
                    f"{len(summary['datasets'])} datasets, seeds "
                    f"{', '.join(map(str, seeds))} (``{source.name}``)"
                )
                lines += _benchmark_section(title, summary)
                groups = summary["groups"]
                for group in groups if len(groups) > 1 else []:
                    rows = [
                        r
                        for r in part
                        if summary["group_of"].get(r["dataset"]) == group
                    ]
                    n = len({r["dataset"] for r in rows})
                    lines += _group_section(
                        f"*{group}* ({n} datasets, ``{source.name}``):",
                        summarize(rows),
                    )
    else:
        lines = [
            ".. note::",
            "",
            "   No benchmark results are committed yet (``docs/benchmark/*.csv``);",
            "   run the command above and copy its ``results.csv`` there.",
            "",
        ]
    text = "\n".join(lines) + "\n"
    if not target.exists() or target.read_text() != text:
        target.write_text(text)


_write_api()
_write_benchmark_table()
