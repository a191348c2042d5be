"""sparsecheck: debug PyTorch classifiers through a sparse decision layer."""

from sparsecheck._version import __version__

__all__ = ["__version__"]
