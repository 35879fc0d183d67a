"""Export a fitted detector (or Pipeline) to one ONNX graph.

:func:`export_onnx` writes a model that scores rows with onnxruntime alone:
no Python, torch or skad at serving time (``pip install skad[onnx]`` to
export; ``pip install onnxruntime`` to serve). The detector's scoring hook is
exported by torch's exporter (the dynamo-based one, falling back to the
TorchScript one), the scikit-learn preprocessing steps of a Pipeline by
skl2onnx, and both are merged into one graph. Every exported graph is
checked with onnxruntime against skad's own scores before it is returned.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings

import numpy as np

from skad.inspection import _row_shape, _score_module, _split_pipeline

__all__ = ["export_onnx"]

#: ONNX operator set of the exported graphs (default domain).
OPSET = 18
#: Operator set of the ``ai.onnx.ml`` domain used by skl2onnx converters.
ML_OPSET = 3

_ONNX_HINT = (
    "skad.export_onnx needs onnx, onnxscript, skl2onnx and onnxruntime: "
    "install them with `pip install skad[onnx]`."
)


@contextlib.contextmanager
def _quiet_exporter():
    """Silence torch's exporter chatter (progress messages, deprecations)."""
    loggers = [
        logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript")
    ]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _dynamo(module, example):
    import torch

    program = torch.onnx.export(
        module,
        (example,),
        dynamo=True,
        input_names=["X"],
        output_names=["score_samples"],
        dynamic_shapes=({0: torch.export.Dim("n_samples", min=1)},),
        opset_version=OPSET,
        optimize=True,
        verbose=False,
    )
    model = program.model_proto
    # The intermediate shapes the exporter annotates are optional and some
    # disagree with onnxruntime's own inference (warnings when loading).
    del model.graph.value_info[:]
    return model


def _torchscript(module, example):
    import io

    import onnx
    import torch

    buffer = io.BytesIO()
    torch.onnx.export(
        module,
        (example,),
        buffer,
        dynamo=False,
        input_names=["X"],
        output_names=["score_samples"],
        dynamic_axes={"X": {0: "n_samples"}, "score_samples": {0: "n_samples"}},
        opset_version=OPSET,
    )
    return onnx.load_from_string(buffer.getvalue())


def _verify(model, detector, row_shape) -> str | None:
    """Score rows near the training median with onnxruntime and with skad, in
    batches of 1, 7 and one chunk plus one; the mismatch found, or None.

    The bound (1e-4 of the largest score) catches graphs that an exporter
    specialised to the example's batch size, not float32 rounding.
    """
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    center = getattr(detector, "training_median_", None)
    center = np.zeros(row_shape) if center is None else center
    n = int(detector._score_chunk_size) + 1
    rows = center + rng.normal(size=(n, *row_shape))
    expected = detector._score_samples(rows)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    bound = 1e-4 * max(float(np.abs(expected).max()), 1e-12)
    for size in (1, 7, n):
        (got,) = session.run(None, {"X": rows[:size]})
        error = float(np.abs(np.asarray(got) - expected[:size]).max())
        if not error <= bound:
            return f"batch of {size} rows: max error {error:.3g} (bound {bound:.3g})"
    return None


def _export_detector(detector, row_shape):
    """ONNX model ``X (float64) -> score_samples (float64)`` of the detector.

    Tries, in turn, the dynamo exporter, the dynamo exporter with one chunk
    of zero rows appended to every batch (for hooks whose work split depends
    on the number of rows), and the TorchScript exporter; the first graph
    that onnxruntime scores like skad (:func:`_verify`) is returned.
    """
    import torch

    device = detector.device_
    example = torch.zeros((2, *row_shape), dtype=torch.float64, device=device)
    chunk = int(detector._score_chunk_size)
    attempts = [
        ("dynamo exporter", _dynamo, 0),
        (f"dynamo exporter, {chunk} rows appended", _dynamo, chunk),
        ("TorchScript exporter", _torchscript, 0),
    ]
    errors = []
    for what, export, extra in attempts:
        module = _score_module(detector, score_samples=True, extra_rows=extra)
        try:
            with _quiet_exporter(), torch.no_grad():
                model = export(module, example)
        except Exception as exc:  # noqa: BLE001 - try the next, report all
            errors.append(f"{what}: {type(exc).__name__}: {str(exc)[:1500]}")
            continue
        mismatch = _verify(model, detector, row_shape)
        if mismatch is None:
            return model
        errors.append(f"{what}: the graph scores differently from skad ({mismatch})")
    mode = "image" if len(row_shape) == 3 else "vector"
    raise RuntimeError(
        f"torch could not export the scoring of this {type(detector).__name__} "
        f"({mode} mode, rows of shape {row_shape}) to ONNX:\n" + "\n".join(errors)
    )


def _add_outputs(model, offset: float):
    """Append ``decision_function`` and ``predict`` to the graph's outputs."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    score = graph.output[0].name
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array(offset, dtype=np.float64), "skad_offset"),
            numpy_helper.from_array(np.array(0.0, dtype=np.float64), "skad_zero"),
            numpy_helper.from_array(np.array(1, dtype=np.int64), "skad_inlier"),
            numpy_helper.from_array(np.array(-1, dtype=np.int64), "skad_outlier"),
        ]
    )
    graph.node.extend(
        [
            helper.make_node(
                "Sub", [score, "skad_offset"], ["decision_function"], name="skad_sub"
            ),
            helper.make_node(
                "Less", ["decision_function", "skad_zero"], ["skad_is_outlier"]
            ),
            helper.make_node(
                "Where",
                ["skad_is_outlier", "skad_outlier", "skad_inlier"],
                ["predict"],
                name="skad_where",
            ),
        ]
    )
    graph.output.extend(
        [
            helper.make_tensor_value_info(
                "decision_function", TensorProto.DOUBLE, ["n_samples"]
            ),
            helper.make_tensor_value_info("predict", TensorProto.INT64, ["n_samples"]),
        ]
    )
    return model


def _convert_steps(fitted, steps, n_features):
    """skl2onnx model of the preprocessing: ``X (float64) -> float64 rows``."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType
    from sklearn.pipeline import Pipeline

    pre = Pipeline(steps)
    try:
        return convert_sklearn(
            pre,
            initial_types=[("X", DoubleTensorType([None, n_features]))],
            target_opset={"": OPSET, "ai.onnx.ml": ML_OPSET},
        )
    except Exception as exc:  # noqa: BLE001 - skl2onnx raises many types
        kinds = ", ".join(f"{n!r} ({type(s).__name__})" for n, s in steps)
        raise ValueError(
            f"skl2onnx could not convert the preprocessing steps {kinds}: "
            f"{type(exc).__name__}: {str(exc)[:500]}. Use steps skl2onnx "
            "supports (scalers, imputers, PCA, ...; see its list of supported "
            "scikit-learn models), or export the detector alone and apply the "
            "preprocessing yourself."
        ) from exc


def export_onnx(fitted, path=None):
    """Export a fitted detector, or a Pipeline ending with one, to ONNX.

    The graph takes ``X`` (float64, shape ``(n_samples, n_features)``, or
    ``(n_samples, C, H, W)`` in image modes; any number of rows) and returns
    three outputs: ``score_samples`` (float64, higher = more normal, as
    skad's), ``decision_function`` (``score_samples - offset_``) and
    ``predict`` (int64, +1 inlier, -1 outlier). Serving needs onnxruntime
    only.

    Parameters
    ----------
    fitted : skad detector or sklearn.pipeline.Pipeline
        A fitted detector, or a fitted Pipeline of scikit-learn preprocessing
        steps that skl2onnx can convert (scalers, imputers, PCA, ...) ending
        with a skad detector. Rows are passed as one float matrix in the
        column order the Pipeline was fitted with.
    path : str or os.PathLike, default=None
        Where to write the ``.onnx`` file; None only returns the model.

    Returns
    -------
    model : onnx.ModelProto
        The exported graph (also written to ``path`` when given).

    Raises
    ------
    ImportError
        If onnx, onnxscript, skl2onnx or onnxruntime is not installed.
    ValueError
        If skl2onnx cannot convert a preprocessing step.
    RuntimeError
        If torch cannot export the detector's scoring, or no exported graph
        scores like skad (the message names the detector, its input mode and
        every exporter's error).

    Notes
    -----
    The network runs in float32 as in skad; ``X`` is cast after the
    preprocessing (done in float64, as scikit-learn does). onnxruntime
    scores then match ``score_samples`` within about 1e-6 relative on every
    detector (see the "Explain and serve" guide for the measured errors).
    Before returning, the graph is run with onnxruntime on batches of 1, 7
    and ``_score_chunk_size + 1`` rows near the training median and compared
    with skad; an exporter's graph that does not match (for example one
    specialised to the example's batch size) is discarded and the next way
    of exporting is tried.

    Examples
    --------
    >>> import numpy as np
    >>> import onnxruntime as ort
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> import skad
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 4))
    >>> pipe = make_pipeline(
    ...     StandardScaler(), skad.DeepSVDD(max_iter=2, device="cpu", random_state=0)
    ... ).fit(X)
    >>> model = skad.export_onnx(pipe)
    >>> session = ort.InferenceSession(
    ...     model.SerializeToString(), providers=["CPUExecutionProvider"]
    ... )
    >>> scores = session.run(["score_samples"], {"X": X[:5]})[0]
    >>> bool(np.allclose(scores, pipe.score_samples(X[:5]), rtol=1e-5))
    True
    """
    try:
        import onnx
        import onnx.compose
        import onnxruntime  # noqa: F401 - checks the exported graph
        import onnxscript  # noqa: F401 - needed by torch's dynamo exporter
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(_ONNX_HINT) from exc

    steps, detector = _split_pipeline(fitted, "skad.export_onnx")
    row_shape = _row_shape(detector)
    net = _export_detector(detector, row_shape)
    if steps:
        if len(row_shape) != 1:
            raise ValueError(
                "Pipelines with preprocessing steps are exported for 2-D rows "
                "only; this detector was fitted on images."
            )
        pre = _convert_steps(fitted, steps, getattr(fitted, "n_features_in_", None))
        pre = _match_versions(net, pre)
        net = onnx.compose.add_prefix(net, "detector/")
        model = onnx.compose.merge_models(
            pre,
            net,
            io_map=[(pre.graph.output[0].name, "detector/X")],
            outputs=["detector/score_samples"],
        )
        _rename_value(model, "detector/score_samples", "score_samples")
    else:
        model = net
    model = _add_outputs(model, float(detector.offset_))
    model.producer_name = "skad"
    model.doc_string = (
        f"skad {type(detector).__name__}: outputs score_samples (higher = more "
        "normal), decision_function (score_samples - offset_) and predict "
        "(+1 inlier, -1 outlier)."
    )
    onnx.checker.check_model(model)
    if path is not None:
        onnx.save_model(model, os.fspath(path))
    return model


def _match_versions(net, pre):
    """``pre`` converted to the IR version and default-domain opset of ``net``
    (``merge_models`` needs equal versions)."""
    from onnx import version_converter

    opset = {o.domain: o.version for o in net.opset_import}.get("", OPSET)
    if {o.domain: o.version for o in pre.opset_import}.get("", opset) != opset:
        pre = version_converter.convert_version(pre, opset)
    ir = max(net.ir_version, pre.ir_version)
    net.ir_version = pre.ir_version = ir
    return pre


def _rename_value(model, old: str, new: str) -> None:
    """Rename one value (a graph output) everywhere in the main graph."""
    graph = model.graph
    for node in graph.node:
        node.output[:] = [new if o == old else o for o in node.output]
        node.input[:] = [new if i == old else i for i in node.input]
    for out in graph.output:
        if out.name == old:
            out.name = new
