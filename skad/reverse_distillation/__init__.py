"""Reverse Distillation with a one-class bottleneck embedding (Deng & Li, CVPR 2022).

A frozen teacher encoder produces features at several depths ("scales"). A
trainable one-class bottleneck embedding (OCBE: multi-scale feature fusion and
a narrow residual block) compresses them into one embedding, and a student
decoder restores the teacher's features at every scale from it. Loss and
anomaly score are ``1 - cos`` between teacher and student features, summed
over scales: normal rows pass the narrow bottleneck, anomalies do not, so the
student fails to restore their features.

Vector mode (``X`` of shape ``(n, d)``) uses an MLP teacher whose hidden layer
outputs are the scales; image mode (``X`` of shape ``(n, C, H, W)`` with a
user-supplied convolutional teacher) uses a convolutional OCBE and decoder and
scores with the Gaussian-smoothed anomaly map of the paper.

The package follows anomalib's split: :mod:`._net` (torch modules),
:mod:`._loss` (loss, distances and anomaly maps as functions of tensors) and
:mod:`._estimator` (the scikit-learn class).
"""

from skad.reverse_distillation._estimator import ReverseDistillation

__all__ = ["ReverseDistillation"]
