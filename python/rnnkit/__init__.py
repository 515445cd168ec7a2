"""rnnkit: fast CPU recurrent neural networks (RNN, LSTM, GRU) with C++ forward and BPTT."""

__version__ = "0.1.0"  # before the imports: saving records it in model files

from . import (callbacks, convert, datasets, functional, generative, initializers, layers, losses, metrics, models,
               optimizers, reference, utils)
from ._isa import build_info, get_num_threads, release_memory, set_num_threads
from .models import Sequential
from .random import set_seed
from .saving import load_model

__all__ = [
    "Sequential", "load_model", "set_seed",
    "layers", "models", "utils", "optimizers", "losses", "metrics", "callbacks", "initializers", "functional",
    "reference", "convert", "generative", "datasets",
    "build_info", "get_num_threads", "set_num_threads", "release_memory", "__version__",
]
