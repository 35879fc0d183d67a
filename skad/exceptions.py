"""Exceptions and warnings raised by skad."""

__all__ = ["TrainingDivergedError", "TrainingWarning"]


class TrainingDivergedError(FloatingPointError):
    """Raised when a training loss becomes NaN or infinite.

    A model whose loss diverged would score NaN; skad never returns one.

    Examples
    --------
    >>> from skad import TrainingDivergedError
    >>> issubclass(TrainingDivergedError, FloatingPointError)
    True
    """


class TrainingWarning(UserWarning):
    """Warning about the outcome of training (for example a GAN generator
    that collapsed), in the spirit of scikit-learn's ``ConvergenceWarning``.

    Examples
    --------
    >>> import warnings
    >>> from skad.exceptions import TrainingWarning
    >>> issubclass(TrainingWarning, UserWarning)
    True
    """
