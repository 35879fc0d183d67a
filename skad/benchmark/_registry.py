"""Which detectors the benchmark knows, by name.

A detector is a :class:`DetectorSpec`: a callable ``spec(seed) -> estimator``
built from a class (or its dotted import path, resolved lazily) and keyword
arguments. :func:`get_registry` assembles, in this order:

* every skad detector from :func:`skad.all_estimators` (discovered at run
  time, so a new method appears automatically), with its defaults;
* the baselines ``IsolationForest``, ``LOF`` (``LocalOutlierFactor(
  novelty=True)``), ``OCSVM`` (``OneClassSVM``) and ``KNN``;
* PyOD and DeepOD detectors when those packages are importable
  (``PyOD-<Name>``, ``DeepOD-<Name>``);
* the named variants of :data:`VARIANTS`.

Every detector whose constructor takes ``random_state`` gets the seed.

To register a variant (an ablation or a non-default configuration), add one
line to :data:`VARIANTS`::

    VARIANTS = {
        "SLA2P-noperturb": ("skad.SLA2P", {"perturbation": False}),
    }

A variant whose class does not exist (yet) is skipped, and reported only when
asked for by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from skad.benchmark._adapters import resolve_target

__all__ = ["BASELINES", "DetectorSpec", "VARIANTS", "get_registry", "select"]

#: Named variants: name -> (class or dotted path, constructor keyword arguments).
#: They run only when selected by name (or with ``--detectors variants``/``all``).
VARIANTS: dict[str, tuple] = {
    # trained on every training row: the defaults before robust training
    # (ESAD and SLA2P already train on every row by default)
    **{
        f"{name}-plain": (f"skad.{name}", {"train_contamination": 0.0})
        for name in (
            "DeepSVDD",
            "DeepSAD",
            "AnoMem",
            "DiscriminatorGuidedGAN",
            "ReverseDistillation",
        )
    },
    "SLA2P-noperturb": ("skad.SLA2P", {"perturbation": False}),
    "SLA2P-l2": ("skad.SLA2P", {"normalize": True}),
    "ReverseDistillation-random": ("skad.ReverseDistillation", {"teacher": "random"}),
    "ESAD-adversarial": ("skad.ESAD", {"adversarial": True}),
    "ESAD-robust": ("skad.ESAD", {"anomaly_score": "robust_sum"}),
    "DiscriminatorGuidedGAN-reconstruction": (
        "skad.DiscriminatorGuidedGAN",
        {"generator_loss": "reconstruction"},
    ),
    "AnoMem-single-scale": ("skad.AnoMem", {"scale_weights": (0.0, 0.0, 1.0)}),
    # the one-class recipe of the AnoMem docs (larger Euclidean memories,
    # shallow scale weighted double), chosen on validation splits
    "AnoMem-wide": (
        "skad.AnoMem",
        {
            "n_prototypes": (256, 256, 256),
            "retrieval": "euclidean",
            "scale_weights": (2.0, 1.0, 1.0),
        },
    ),
}

#: The baselines every report includes.
BASELINES: dict[str, tuple] = {
    "IsolationForest": ("sklearn.ensemble.IsolationForest", {}),
    "LOF": ("sklearn.neighbors.LocalOutlierFactor", {"novelty": True}),
    "OCSVM": ("sklearn.svm.OneClassSVM", {}),
    "KNN": ("skad.benchmark._baselines.KNN", {"n_neighbors": 5}),
}

#: PyOD detectors (protocol: ECOD, KNN, AutoEncoder, DeepSVDD).
PYOD: dict[str, tuple] = {
    "PyOD-ECOD": ("pyod.models.ecod.ECOD", {}),
    "PyOD-KNN": ("pyod.models.knn.KNN", {}),
    "PyOD-AutoEncoder": ("pyod.models.auto_encoder.AutoEncoder", {}),
    "PyOD-DeepSVDD": ("pyod.models.deep_svdd.DeepSVDD", {}),
}

#: DeepOD detectors; the second group needs labels (semi-supervised setting).
DEEPOD: dict[str, tuple] = {
    "DeepOD-DeepSVDD": ("deepod.models.tabular.DeepSVDD", {}),
    "DeepOD-RDP": ("deepod.models.tabular.RDP", {}),
    "DeepOD-ICL": ("deepod.models.tabular.ICL", {}),
    "DeepOD-NeuTraL": ("deepod.models.tabular.NeuTraL", {}),
    "DeepOD-GOAD": ("deepod.models.tabular.GOAD", {}),
    "DeepOD-SLAD": ("deepod.models.tabular.SLAD", {}),
    "DeepOD-DIF": ("deepod.models.tabular.DeepIsolationForest", {}),
}
DEEPOD_SEMI: dict[str, tuple] = {
    "DeepOD-DeepSAD": ("deepod.models.tabular.DeepSAD", {}),
    "DeepOD-DevNet": ("deepod.models.tabular.DevNet", {}),
    "DeepOD-PReNet": ("deepod.models.tabular.PReNet", {}),
    "DeepOD-RoSAS": ("deepod.models.tabular.RoSAS", {}),
}


@dataclass(frozen=True)
class DetectorSpec:
    """How to build one named detector: ``spec(seed) -> estimator``.

    Parameters
    ----------
    name : str
    target : class, callable or str
        The estimator class (or a factory), or its dotted import path
        (``"skad.SLA2P"``, ``"sklearn.ensemble.IsolationForest"``), resolved
        when the detector is built.
    params : dict
        Constructor keyword arguments.
    kind : str
        ``"skad"``, ``"baseline"``, ``"pyod"``, ``"deepod"``, ``"variant"``
        or ``"custom"``.
    seed_param : str or None
        Constructor argument that receives the seed, when the estimator has
        it.
    """

    name: str
    target: object
    params: dict = field(default_factory=dict)
    kind: str = "custom"
    seed_param: str | None = "random_state"

    def resolve(self):
        """The class or factory (imports it when given as a path)."""
        return resolve_target(self.target)

    def __call__(self, seed=None):
        est = self.resolve()(**self.params)
        model = self.params.get("model")
        if isinstance(model, str):  # adapters: import the peer now, not in fit
            resolve_target(model)
        if (
            seed is not None
            and self.seed_param
            and hasattr(est, "get_params")
            and self.seed_param in est.get_params(deep=False)
            and self.seed_param not in self.params
        ):
            est.set_params(**{self.seed_param: seed})
        return est

    def __hash__(self):
        return hash((self.name, repr(self.target), self.kind))


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


_ADAPTERS = {
    "pyod": "skad.benchmark._adapters.PyODAdapter",
    "deepod": "skad.benchmark._adapters.DeepODAdapter",
}
_SEMI_ADAPTER = "skad.benchmark._adapters.DeepODSemiSupervisedAdapter"


def _adapter(name, target, params, module, semi=False):
    return DetectorSpec(
        name,
        _SEMI_ADAPTER if semi else _ADAPTERS[module],
        {"model": target, "params": dict(params)},
        kind=module,
    )


def get_registry(*, variants=True, peers=True):
    """All known detectors, name -> :class:`DetectorSpec`.

    Parameters
    ----------
    variants : bool, default=True
        Include the resolvable entries of :data:`VARIANTS`.
    peers : bool, default=True
        Include PyOD / DeepOD detectors when those packages are importable.

    Examples
    --------
    >>> from skad.benchmark import get_registry
    >>> reg = get_registry()
    >>> {"DeepSVDD", "IsolationForest", "LOF", "OCSVM", "KNN"} <= set(reg)
    True
    >>> reg["IsolationForest"](seed=3).random_state
    3
    """
    from skad import all_estimators

    reg = {}
    for name, cls in all_estimators():
        reg[name] = DetectorSpec(name, cls, {}, kind="skad")
    for name, (target, params) in BASELINES.items():
        reg[name] = DetectorSpec(name, target, dict(params), kind="baseline")
    if peers and _importable("pyod"):
        for name, (target, params) in PYOD.items():
            reg[name] = _adapter(name, target, params, "pyod")
    if peers and _importable("deepod"):
        for name, (target, params) in DEEPOD.items():
            reg[name] = _adapter(name, target, params, "deepod")
        for name, (target, params) in DEEPOD_SEMI.items():
            reg[name] = _adapter(name, target, params, "deepod", semi=True)
    if variants:
        for name, (target, params) in VARIANTS.items():
            spec = DetectorSpec(name, target, dict(params), kind="variant")
            try:
                spec.resolve()
            except (ImportError, AttributeError):
                continue
            reg[name] = spec
    return reg


_GROUPS = ("default", "all", "skad", "baselines", "peers", "pyod", "deepod", "variants")


def _is_semi(spec) -> bool:
    """Whether a peer needs labels (joins only the semi-supervised setting)."""
    return spec.target == _SEMI_ADAPTER


def select(names=None, *, setting="unsupervised", suite=None):
    """Resolve detector names (or group keywords) into specs.

    ``names`` may mix detector names, dotted class paths
    (``"sklearn.covariance.EllipticEnvelope"``), :class:`DetectorSpec`
    objects and the keywords ``default`` (skad + baselines, plus PyOD /
    DeepOD when installed, except on the demo suite), ``all``, ``skad``,
    ``baselines``, ``peers``, ``pyod``, ``deepod`` and ``variants``.
    Semi-supervised peers (DeepOD's DeepSAD, DevNet, PReNet, RoSAS) join the
    groups only in the semi-supervised setting.

    Returns
    -------
    specs : list of DetectorSpec
        Without duplicates, in the order given.
    """
    reg = get_registry()
    if names is None or (isinstance(names, str) and names == ""):
        names = ["default"]
    elif isinstance(names, str | DetectorSpec):
        names = [names]
    semi_ok = setting == "semi-supervised"

    def group(key):
        specs = list(reg.values())
        if key == "all":
            return [s for s in specs if semi_ok or not _is_semi(s)]
        if key == "default":
            out = [s for s in specs if s.kind in ("skad", "baseline")]
            if suite != "demo":
                out += [
                    s
                    for s in specs
                    if s.kind in ("pyod", "deepod") and (semi_ok or not _is_semi(s))
                ]
            return out
        kinds = {
            "skad": ("skad",),
            "baselines": ("baseline",),
            "peers": ("pyod", "deepod"),
            "pyod": ("pyod",),
            "deepod": ("deepod",),
            "variants": ("variant",),
        }[key]
        return [s for s in specs if s.kind in kinds and (semi_ok or not _is_semi(s))]

    lower = {k.lower(): k for k in reg}
    out = []
    for name in names:
        if isinstance(name, DetectorSpec):
            out.append(name)
            continue
        if callable(name) and not isinstance(name, str):
            label = getattr(name, "__name__", type(name).__name__)
            out.append(DetectorSpec(label, name, {}, kind="custom"))
            continue
        if name in _GROUPS:
            out.extend(group(name))
        elif name in reg:
            out.append(reg[name])
        elif name.lower() in lower:
            out.append(reg[lower[name.lower()]])
        elif name in VARIANTS:
            target, params = VARIANTS[name]
            spec = DetectorSpec(name, target, dict(params), kind="variant")
            spec.resolve()  # raises a clear ImportError
            out.append(spec)
        elif "." in name:
            spec = DetectorSpec(name.rsplit(".", 1)[-1], name, {}, kind="custom")
            spec.resolve()
            out.append(spec)
        else:
            raise ValueError(
                f"Unknown detector {name!r}. Known: {sorted(reg)}; keywords: "
                f"{list(_GROUPS)}; or a dotted class path."
            )
    seen, unique = set(), []
    for spec in out:
        if spec.name not in seen:
            seen.add(spec.name)
            unique.append(spec)
    return unique


def describe(spec) -> str:
    """``Class(param=value, ...)`` for the report."""
    target = spec.target
    label = target if isinstance(target, str) else getattr(target, "__name__", "?")
    args = ", ".join(f"{k}={v!r}" for k, v in spec.params.items())
    return f"{label}({args})"


#: Legend of each kind of detector in the report (skad's side first).
KIND_LABELS = {
    "skad": "skad",
    "variant": "skad variant",
    "baseline": "baseline",
    "pyod": "PyOD",
    "deepod": "DeepOD",
    "custom": "other",
}


def _takes_labels(spec) -> bool:
    from skad.utils import accepts_labels

    if spec.kind in ("pyod", "deepod"):
        return _is_semi(spec)
    try:
        return accepts_labels(spec.resolve())
    except Exception:  # noqa: BLE001 - an unresolvable custom detector
        return False


def detector_info(names, specs=None) -> dict:
    """What the report needs to know of each detector name.

    Returns ``name -> {"kind", "side", "labels"}``: ``kind`` as in
    :class:`DetectorSpec` (``"custom"`` for a name the registry does not
    know), ``side`` ``"skad"`` (skad detectors and their variants),
    ``"reference"`` (baselines, PyOD, DeepOD) or ``"other"``, and ``labels``
    whether its ``fit`` takes semi-supervised labels. ``specs`` (of a plan)
    take precedence over the registry; names of results files are looked up
    in the registry, PyOD / DeepOD names too when those packages are absent.
    """
    known = {}
    for table, kind in ((PYOD, "pyod"), (DEEPOD, "deepod"), (DEEPOD_SEMI, "deepod")):
        for name, (target, params) in table.items():
            known[name] = _adapter(name, target, params, kind, table is DEEPOD_SEMI)
    known.update(get_registry(peers=False))
    known.update({s.name: s for s in specs or ()})
    info = {}
    for name in names:
        spec = known.get(name)
        kind = spec.kind if spec is not None else "custom"
        if kind == "variant":
            target = spec.target
            where = target if isinstance(target, str) else target.__module__
            if not where.startswith("skad."):
                kind = "custom"
        side = {"skad": "skad", "variant": "skad", "custom": "other"}.get(
            kind, "reference"
        )
        labels = spec is not None and _takes_labels(spec)
        info[name] = {"kind": kind, "side": side, "labels": labels}
    return info
