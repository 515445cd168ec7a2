"""rnnkit: fast CPU recurrent neural networks (RNN, LSTM, GRU) with C++ forward and BPTT."""

from . import functional, reference
from ._core import build_info, get_num_threads, set_num_threads

__version__ = "0.1.0"

__all__ = ["functional", "reference", "build_info", "get_num_threads", "set_num_threads", "__version__"]
