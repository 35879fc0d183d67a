"""AnoMem: anomaly detection via multi-scale contrasted memory.

Jezequel et al., "Anomaly Detection via Multi-Scale Contrasted Memory"
(arXiv 2211.09041). Two stages:

1. An encoder and one memory of normal prototypes per encoder depth (a modern
   Hopfield layer) are learned together with a contrastive loss between two
   augmented views, where the memory retrieval of one view is contrasted with
   the features of the other view. A variance term keeps the prototypes from
   collapsing.
2. With encoder and memories frozen, the deviations between each depth's
   features and their memory retrieval form a deviation map; a detector
   scores it: a per-scale weighted sum of standardised deviations
   (one-class), or a small head trained with a Deep-SVDD / Deep-SAD objective
   (with a few labelled anomalies).

The full text was not available; every choice not confirmed by the abstract
and reviews is *reconstructed*. The reconstructed choices a user may want to
change are parameters; the others, kept by a selection on validation splits
(``scripts/select_anomem_defaults.py``), are documented module constants:
``_net`` (``MEMORY_TEMPERATURE``, ``PROJECTION_DIM``), ``_loss``
(``TEMPERATURE``, ``VARIANCE_WEIGHT``, ``MEMORY_FIT_WEIGHT``,
``ANOMALY_MARGIN`` and the augmentation strengths) and ``_detector`` (the
learned head's widths and epochs).

The package is split as anomalib's models are: ``_net`` (modules), ``_loss``
(stage-1 and head losses, augmentations), ``_detector`` (stage-2 statistics,
memory health, head initialisation) and ``_estimator`` (the estimator).
"""

from skad.anomem._estimator import AnoMem

__all__ = ["AnoMem"]
