"""ESAD: End-to-end Deep Semi-supervised Anomaly Detection (Huang et al., 2021).

An encoder-decoder-encoder ``x -> E1 -> z -> Dec -> x^ -> E2 -> z^``
trained end to end with one loss (arXiv:2012.04905, BMVC 2021). A KL
objective splits into the mutual information between data and code (E1 and
the decoder: reconstruction) and the entropy of the code (E2: the code of the
reconstruction is pulled to the origin); a consistency term ties ``z^`` to
``z``. Labelled anomalies get the opposite pressure: they are reconstructed
towards a corrupted target and their ``z^`` is pushed away from the origin.

The paper's method section was not available. The losses follow the
reconstruction in ``shared/methods/esad.md`` (a third-party reimplementation
plus Deep SAD's conventions); every reconstructed choice is a named
parameter, documented as such in :class:`ESAD`.

The package is split as anomalib's models are: ``_net`` (the networks),
``_loss`` (the loss terms, as functions of tensors) and ``_estimator`` (the
estimator).
"""

from skad.esad._estimator import ESAD

__all__ = ["ESAD"]
