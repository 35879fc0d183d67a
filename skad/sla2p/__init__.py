"""SLA2P: self-supervised anomaly detection with adversarial perturbation.

Wang et al., "Self-supervision Meets Adversarial Perturbation: A Novel
Framework for Anomaly Detection", CIKM 2022 (arXiv 2111.12896).

Every row ``x`` is mapped by ``K = n_transforms`` fixed Gaussian random
projections ``W_t`` (``n_features x projection_dim``); the index ``t`` of
the projection is a pseudo class. A small classifier learns to tell, from
``x W_t`` alone, which projection produced it, and training stops as soon
as the running training accuracy passes ``acc_threshold`` (normal rows are
learnt first). At scoring time each transformed row takes one gradient step
that lowers the softmax of its predicted class; the anomaly score is the
Brier-type error between the softmax on the perturbed vector and the true
projection id, averaged over the ``K`` projections.

Implementation notes:

* The ``n x K`` transformed training set is never built: a training step
  draws a few projections and a few rows and projects them on the fly.
* Projections are not stored. They are generated from ``projection_seed_``
  by a counter-based hash (:func:`gaussian_projections`) directly on the
  device, so the same seed gives the same matrices on the CPU and on a GPU.
  When ``K * n_features * projection_dim`` is small the whole tensor is kept
  in a module-level cache (never in the estimator); otherwise it is
  regenerated block by block and at most ``_PROJECTION_BUDGET`` entries
  exist at any time.
* Scoring needs no autograd: in eval mode every BatchNorm is folded into
  the Linear layer before it, the gradient of the cross-entropy at the
  predicted class is ``softmax - onehot`` carried back through the Linear
  layers and the LeakyReLU slopes, and the perturbed vector enters the
  first layer as ``a + eps g_z A`` (the first pass's pre-activations
  reused). When ``n_features`` is small the projections are folded into
  the first layer too (``x (W_t A)`` costs fewer multiply-adds than
  ``(x W_t) A``). The folded weights are derived at every call (well under
  1% of a chunk's cost) and never stored.

The package is split as anomalib's models are: ``_projections`` (the
seeded projections, their cache and blockwise regeneration), ``_net`` (the
projection classifier and its folded eval-mode form), ``_loss`` (the
training loss, the analytic perturbation and the Brier error) and
``_estimator`` (the estimator).
"""

from skad.sla2p._estimator import SLA2P
from skad.sla2p._projections import gaussian_projections

__all__ = ["SLA2P", "gaussian_projections"]
