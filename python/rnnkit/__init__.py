"""rnnkit: fast CPU recurrent neural networks (RNN, LSTM, GRU) with C++ forward and BPTT."""

from . import (activations, callbacks, cells, convert, datasets, functional, generative, initializers, layers, losses,
               metrics, models, ops, optimizers, reference, saving, utils)
from ._isa import build_info, get_num_threads, release_memory, set_num_threads
from .engine.functional import Input, KerasTensor
from .engine.tape import Tensor, Variable
from .models import Model, Sequential
from .random import set_seed
from .saving import load_model
from .version import __version__

__all__ = [
    "Input", "Model", "Sequential", "load_model", "set_seed", "Tensor", "Variable", "KerasTensor",
    "layers", "models", "ops", "saving", "utils", "optimizers", "losses", "metrics", "callbacks", "initializers", "functional",
    "reference", "convert", "generative", "datasets", "activations", "cells",
    "build_info", "get_num_threads", "set_num_threads", "release_memory", "__version__",
]
