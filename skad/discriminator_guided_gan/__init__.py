"""Discriminator-guided GAN (Xia et al., arXiv 2107.12753, reconstructed).

A GAN whose generator learns from the discriminator's guidance instead of a
reconstruction error. The discriminator ``D`` has a real/fake head and a
pretext head that names which of ``K`` transformations was applied to its
input. The generator ``G`` (an encoder-decoder with a bottleneck) receives a
transformed row ``T_k(x)`` and must produce an output whose transformation
``D`` still recognises (``pretext_target="preserve"``, or the identity with
``"restore"``), whose ``D`` features match those of its input and that ``D``
finds real. The anomaly score averages, over the transformations, the
pretext classification error of ``D`` on ``G(T_k x)`` and the feature
mismatch ``||f(T_k x) - f(G(T_k x))||^2``.

Only the paper's abstract was available: the losses, weights, networks and
score are the reconstruction of ``shared/methods/discriminator_guided_gan.md``
and every choice is a named parameter. ``generator_loss="reconstruction"``
trains the generator GANomaly-style (L1 reconstruction, no pretext guidance)
as the baseline the paper improves on.

Rows are feature vectors (transformations: feature permutations with sign
flips, or random orthogonal maps) or images of shape (n, C, H, W)
(transformations: rotations by multiples of 90 degrees and flips, with small
convolutional networks).

The package is split as anomalib's models are: ``_transforms`` (the
transformation banks), ``_net`` (generators and discriminators), ``_loss``
(losses and score terms) and ``_estimator`` (the estimator).
"""

from skad.discriminator_guided_gan._estimator import DiscriminatorGuidedGAN

__all__ = ["DiscriminatorGuidedGAN"]
