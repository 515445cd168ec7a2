"""Keras-style layers on rnnkit's C++ kernels. Batch-major arrays: sequences are ``x: [N, T, C]``.

``serialize(layer)`` / ``deserialize(data)`` (``rnnkit.layers.registry``) turn a layer into plain JSON data
``{"class_name", "config"}`` and back; only the classes entered in the registry here can be rebuilt (nothing is
imported or executed from the data).
"""

from ..engine.functional import Input
from .base import Layer, mask_to_lengths
from .core import Activation, Dense, Dropout, Embedding, Masking
from .jordan import Jordan
from .recurrent import GRU, LSTM, Recurrent, SimpleRNN
from .registry import _CLASSES, deserialize, serialize
from .wrappers import Bidirectional
from .rnn import GRUCell, LSTMCell, RNN, SimpleRNNCell, StackedRNNCells  # noqa: E402 - after the layers it wraps

__all__ = ["Input", "Layer", "Recurrent", "SimpleRNN", "LSTM", "GRU", "Jordan", "Bidirectional", "Dense", "Embedding",
           "Masking", "Dropout", "Activation", "mask_to_lengths", "serialize", "deserialize"]

_CLASSES.update((cls.__name__, cls) for cls in (SimpleRNN, LSTM, GRU, Jordan, Bidirectional, Dense, Embedding,
                                                Masking, Dropout, Activation))


__all__ += ["RNN", "SimpleRNNCell", "LSTMCell", "GRUCell", "StackedRNNCells"]
_CLASSES.update((cls.__name__, cls) for cls in (RNN, SimpleRNNCell, LSTMCell, GRUCell, StackedRNNCells))

# the layers the tape differentiates; Lambda is left out of _CLASSES on purpose: rebuilding it would mean running
# code read from data
from .core import Identity, Lambda, OpLayer  # noqa: E402
from .merging import (Add, Average, Concatenate, Dot, Maximum, Minimum, Multiply, Subtract, add, average,  # noqa: E402
                      concatenate, dot, maximum, minimum, multiply, subtract)
from .reshaping import Flatten, Permute, RepeatVector, Reshape  # noqa: E402
from .wrappers import TimeDistributed  # noqa: E402

__all__ += ["Concatenate", "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Dot", "concatenate", "add",
            "subtract", "multiply", "average", "maximum", "minimum", "dot", "RepeatVector", "Flatten", "Reshape",
            "Permute", "Lambda", "Identity", "OpLayer", "TimeDistributed"]
_CLASSES.update((cls.__name__, cls) for cls in (Concatenate, Add, Subtract, Multiply, Average, Maximum, Minimum, Dot,
                                                RepeatVector, Flatten, Reshape, Permute, Identity, OpLayer,
                                                TimeDistributed))

