"""rnnkit's version (``rnnkit.__version__``), recorded in the files rnnkit writes."""

__version__ = "0.1.0"
