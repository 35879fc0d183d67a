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
