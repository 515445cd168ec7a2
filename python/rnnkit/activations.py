"""The one table of activations: the kernels' elementwise nonlinearities, in NumPy, with their derivatives.

A kernel activation is a triple ``(name, alpha, beta)``; the names are those of ``activations.hpp``:

=================  ==========================================  ==================================
name               y = act(a)                                   d act / d a, from y
=================  ==========================================  ==================================
tanh               tanh(a)                                      1 - y^2
sigmoid            1 / (1 + exp(-a))                            y (1 - y)
relu               max(a, 0)                                    [y > 0]
linear             a                                            1
hard_sigmoid       min(max(alpha a + beta, 0), 1)               alpha [0 < y < 1]
elu                a if a >= 0 else alpha (exp(a) - 1)          1 if y >= 0 else y + alpha
softsign           a / (1 + |a|)                                (1 - |y|)^2
softplus           log(1 + exp(a))                              1 - exp(-y)
selu               beta (a if a > 0 else alpha (exp(a) - 1))    beta if y > 0 else y + alpha beta
affine             alpha a + beta                               alpha
leaky_relu         a if a >= 0 else alpha a                     1 if y >= 0 else alpha
thresholded_relu   a if a >= alpha else 0                       [y != 0]
scaled_tanh        alpha tanh(beta a)                           alpha beta (1 - (y / alpha)^2)
=================  ==========================================  ==================================

``keras(name)`` maps Keras 3's activation names (``"tanh"``, ``"sigmoid"``, ``"hard_sigmoid"`` = relu6(a + 3) / 6,
``"relu"``, ``"linear"`` / None, ``"elu"``, ``"softsign"``, ``"softplus"``, ``"selu"``, ``"leaky_relu"``) to a
triple; ``onnx(name, alpha, beta)`` does the same for the ``activations`` attribute of ONNX's RNN, GRU and LSTM,
with ONNX's defaults for a missing alpha or beta.
"""

from __future__ import annotations

import numpy as np

__all__ = ["KERAS", "ONNX", "keras", "onnx", "onnx_list", "forward", "derivative", "keras_name"]

# Keras 3's constants
_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946


def _sigmoid(a):
    # 1 / (1 + exp(-a)), with exp never overflowing
    return np.exp(-np.logaddexp(0, -a))


# name -> (forward(a, alpha, beta), derivative(y, alpha, beta)), in the dtype of a / y
_TABLE = {
    "tanh": (lambda a, al, be: np.tanh(a), lambda y, al, be: 1 - y * y),
    "sigmoid": (lambda a, al, be: _sigmoid(a), lambda y, al, be: y * (1 - y)),
    "relu": (lambda a, al, be: np.maximum(a, 0), lambda y, al, be: (y > 0).astype(y.dtype)),
    "linear": (lambda a, al, be: a, lambda y, al, be: np.ones_like(y)),
    "hard_sigmoid": (lambda a, al, be: np.clip(al * a + be, 0, 1), lambda y, al, be: al * ((y > 0) & (y < 1))),
    "elu": (lambda a, al, be: np.where(a >= 0, a, al * np.expm1(np.minimum(a, 0))),
            lambda y, al, be: np.where(y >= 0, 1, y + al)),
    "softsign": (lambda a, al, be: a / (1 + np.abs(a)), lambda y, al, be: (1 - np.abs(y)) ** 2),
    "softplus": (lambda a, al, be: np.logaddexp(0, a), lambda y, al, be: -np.expm1(-y)),
    "selu": (lambda a, al, be: be * np.where(a > 0, a, al * np.expm1(np.minimum(a, 0))),
             lambda y, al, be: np.where(y > 0, be, y + al * be)),
    "affine": (lambda a, al, be: al * a + be, lambda y, al, be: np.full_like(y, al)),
    "leaky_relu": (lambda a, al, be: np.where(a >= 0, a, al * a), lambda y, al, be: np.where(y >= 0, 1, al)),
    "thresholded_relu": (lambda a, al, be: np.where(a >= al, a, 0), lambda y, al, be: (y != 0).astype(y.dtype)),
    "scaled_tanh": (lambda a, al, be: al * np.tanh(be * a), lambda y, al, be: al * be * (1 - (y / al) ** 2)),
}

# Keras 3 name -> kernel triple
KERAS = {
    "tanh": ("tanh", 0.0, 0.0),
    "sigmoid": ("sigmoid", 0.0, 0.0),
    "hard_sigmoid": ("hard_sigmoid", 1 / 6, 0.5),
    "relu": ("relu", 0.0, 0.0),
    "linear": ("linear", 0.0, 0.0),
    "elu": ("elu", 1.0, 0.0),
    "softsign": ("softsign", 0.0, 0.0),
    "softplus": ("softplus", 0.0, 0.0),
    "selu": ("selu", _SELU_ALPHA, _SELU_SCALE),
    "leaky_relu": ("leaky_relu", 0.2, 0.0),
}

# ONNX name -> (kernel name, default alpha or None when it takes none, default beta or None)
ONNX = {
    "Tanh": ("tanh", None, None),
    "Sigmoid": ("sigmoid", None, None),
    "Relu": ("relu", None, None),
    "Affine": ("affine", 1.0, 0.0),
    "LeakyRelu": ("leaky_relu", 0.01, None),
    "ThresholdedRelu": ("thresholded_relu", 1.0, None),
    "ScaledTanh": ("scaled_tanh", 1.0, 1.0),
    "HardSigmoid": ("hard_sigmoid", 0.2, 0.5),
    "Elu": ("elu", 1.0, None),
    "Softsign": ("softsign", None, None),
    "Softplus": ("softplus", None, None),
}


def keras(name, argument="activation"):
    """The kernel triple of Keras' activation ``name`` (None is "linear"); ValueError naming ``argument``."""
    name = "linear" if name is None else name
    if not isinstance(name, str) or name not in KERAS:
        raise ValueError(f"{argument}: expected one of {sorted(KERAS)} or None, got {name!r}")
    return KERAS[name]


def keras_name(triple):
    """The Keras name of a kernel triple made by ``keras``."""
    for name, t in KERAS.items():
        if tuple(t) == tuple(triple):
            return name
    raise ValueError(f"activation {triple!r} has no Keras name")


def _onnx_entry(name):
    if isinstance(name, bytes):
        name = name.decode()
    for key, entry in ONNX.items():
        if isinstance(name, str) and key.lower() == name.lower():  # case-insensitive, as ONNX Runtime reads them
            return entry
    raise ValueError(f"activations: expected ONNX activations among {sorted(ONNX)}, got {name!r}")


def onnx(name, alpha=None, beta=None):
    """The kernel triple of ONNX's activation ``name``, with ONNX's defaults for a missing alpha or beta."""
    kernel, a0, b0 = _onnx_entry(name)
    alpha = a0 if alpha is None else alpha
    beta = b0 if beta is None else beta
    return (kernel, float(alpha or 0.0), float(beta or 0.0))


def onnx_list(names, alphas=(), betas=()):
    """The kernel triples of an ONNX node's ``activations`` with its ``activation_alpha`` / ``activation_beta``:
    each value goes to the next activation that takes one, in order (as ONNX Runtime reads them); an activation
    left without one takes ONNX's default."""
    alphas, betas = list(alphas), list(betas)
    out = []
    for name in names:
        _, a0, b0 = _onnx_entry(name)
        alpha = alphas.pop(0) if a0 is not None and alphas else None
        beta = betas.pop(0) if b0 is not None and betas else None
        out.append(onnx(name, alpha, beta))
    return out


def check(triple, argument="activations"):
    """``triple`` as the kernels take it: ``(name, float alpha, float beta)``; ValueError naming ``argument``."""
    try:
        name, alpha, beta = triple
        triple = (str(name), float(alpha), float(beta))
    except (TypeError, ValueError):
        raise ValueError(f"{argument}: expected (name, alpha, beta) triples, got {triple!r}") from None
    if triple[0] not in _TABLE:
        raise ValueError(f"{argument}: unknown activation {triple[0]!r}, expected one of {sorted(_TABLE)}")
    return triple


def forward(triple, a):
    """act(a), elementwise, in a's dtype."""
    name, alpha, beta = triple
    return np.asarray(_TABLE[name][0](a, alpha, beta), dtype=a.dtype)


def derivative(triple, y):
    """d act / d a at the output y = act(a), elementwise, in y's dtype."""
    name, alpha, beta = triple
    return np.asarray(_TABLE[name][1](y, alpha, beta), dtype=y.dtype)
