"""The training engine shared by every skad detector.

Everything generic about training a torch model the scikit-learn way lives
here, once: local random generators (:mod:`._random`), tensors and
mini-batches on the device and the one fixed-shape scoring path
(:mod:`._data`), and the training plan of phases run by one loop
(:mod:`._training`). Detectors never import it: they talk to
:class:`skad.base.BaseDeepDetector`, which uses it.
"""

from skad._engine._data import (
    _OOM_ERRORS,
    SCORE_CHUNK_SIZE,
    iter_minibatches,
    predict_in_chunks,
    to_tensor,
    train_validation_split,
)
from skad._engine._random import (
    RandomState,
    make_random_state,
    private_default_generator,
)
from skad._engine._services import TrainingServices
from skad._engine._training import History, Phase, make_optimizer, run_phases

__all__ = [
    "SCORE_CHUNK_SIZE",
    "History",
    "Phase",
    "RandomState",
    "TrainingServices",
    "_OOM_ERRORS",
    "iter_minibatches",
    "make_optimizer",
    "make_random_state",
    "predict_in_chunks",
    "private_default_generator",
    "run_phases",
    "to_tensor",
    "train_validation_split",
]
