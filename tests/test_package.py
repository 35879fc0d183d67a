"""The package surface: lazy imports, public names, version."""

import subprocess
import sys

import skad


def _run(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def test_import_skad_loads_neither_torch_nor_sklearn():
    """``import skad`` is cheap: detectors, torch and scikit-learn load on
    first use (the import cost is then torch's and scikit-learn's own)."""
    loaded = _run(
        "import sys, skad; print(sorted(m for m in "
        "('torch', 'sklearn', 'skad.base') if m in sys.modules))"
    )
    assert loaded == "[]"


def test_submodules_are_attributes_after_import_skad():
    assert _run("import skad; print(skad.metrics.roc_auc_scorer is not None)") == "True"
    assert _run("import skad; print(callable(skad.datasets.load_adbench))") == "True"


def test_every_public_name_resolves():
    for name in skad.__all__:
        assert getattr(skad, name) is not None
    assert set(skad.__all__) <= set(dir(skad))
    assert skad.__version__ == skad._version.__version__


def test_unknown_attribute_raises_attribute_error():
    try:
        skad.not_a_name  # noqa: B018
    except AttributeError as exc:
        assert "not_a_name" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def _imports(path):
    import ast

    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            for alias in node.names:
                yield f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def test_only_the_base_imports_the_engine():
    """Detectors talk to skad.base; the engine stays an implementation detail
    (a method module importing skad._engine fails here)."""
    from pathlib import Path

    root = Path(skad.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root).as_posix()
        if rel in ("__init__.py", "base.py") or rel.startswith("_engine/"):
            continue
        engine = ("skad._engine", "skad._engine.")
        if any(m == engine[0] or m.startswith(engine[1]) for m in _imports(path)):
            offenders.append(rel)
    assert not offenders, f"modules importing skad._engine: {offenders}"


def test_no_module_over_500_lines():
    from pathlib import Path

    root = Path(skad.__file__).parent
    long = {
        path.relative_to(root).as_posix(): n
        for path in root.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > 500
    }
    assert not long, long
