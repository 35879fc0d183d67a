"""The version of skad (its own module, so that nothing imports upward)."""

__version__ = "0.1.0"
