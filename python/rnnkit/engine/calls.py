"""How a layer call runs: on arrays, on eager tensors (recorded for gradients), or on symbolic tensors.

A built-in layer (one with a ``backward`` of its own) given tensors, or called while gradients are recorded, runs
its ``call`` on the arrays inside and becomes one node of the tape: the node keeps what the call left for
``backward`` (the layer's transient attributes, its inner layers' too), so a layer called several times
differentiates each call, and its weights get the sum. A user's layer (no ``backward``) runs its ``call`` on the
tensors themselves: the tape records the operations inside.

Keras' conventions: a layer whose ``call`` takes ``mask`` gets the mask its input carries (``_keras_mask``) unless
one is passed; one whose ``call`` takes ``training`` gets the value of the outermost call that set it.
"""

from __future__ import annotations

import contextvars
import functools
import inspect

import numpy as np

from .tape import Node, Tensor, Variable, is_recording, not_recording, tracked, value_of

__all__ = ["call_layer", "training_mode", "current_training"]

_TRAINING = contextvars.ContextVar("rnnkit_training", default=None)


def current_training():
    return _TRAINING.get()


class training_mode:
    """Sets the ``training`` value that layer calls inside the block get by default."""

    def __init__(self, training):
        self.training = training

    def __enter__(self):
        self.token = _TRAINING.set(self.training)

    def __exit__(self, *exc):
        _TRAINING.reset(self.token)


def call_layer(layer, args, kwargs):
    if any_symbolic(args) or any_symbolic(kwargs.values()):
        from .functional import symbolic_call

        return symbolic_call(layer, args, kwargs)
    if own_backward(type(layer)):
        x, kw = _bind(layer, args, kwargs)
        if kw.get("training") is None:
            kw["training"] = bool(_TRAINING.get())
        if is_recording() or isinstance(x, Tensor) or _any_tensor(kw.values()):
            return _tracked_call(layer, x, kw)
        return layer._run(x, **kw)
    return _user_call(layer, args, kwargs)


@functools.lru_cache(maxsize=None)
def own_backward(cls):
    """True for a layer class that differentiates itself (defines ``backward``)."""
    from ..layers.base import Layer

    return cls.backward is not Layer.backward


@functools.lru_cache(maxsize=None)
def call_parameters(cls):
    """The names ``cls.call`` accepts (all keywords when it takes ``**kwargs``)."""
    params = inspect.signature(cls.call).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return None
    return frozenset(params)


def accepts(cls, name):
    params = call_parameters(cls)
    return params is None or name in params


def any_symbolic(items):
    """True when a symbolic tensor is among ``items`` (or in a list or tuple among them)."""
    for a in items:
        if getattr(a, "_symbolic", False):
            return True
        if isinstance(a, (list, tuple)) and any_symbolic(a):
            return True
    return False


def _any_tensor(items):
    for a in items:
        if isinstance(a, Tensor):
            return True
        if isinstance(a, (list, tuple)) and _any_tensor(a):
            return True
    return False


def _bind(layer, args, kwargs):
    """(input, {keyword: value}) from a built-in layer's Keras call signature."""
    kw = dict(kwargs)
    if args:
        x, rest = args[0], args[1:]
    else:
        key = next((k for k in ("inputs", "sequences", "x") if k in kw), None)
        if key is None:
            raise TypeError(f"layer {layer.name!r}: expected an input as the first argument")
        x, rest = kw.pop(key), ()
    names = layer._call_positional
    if len(rest) > len(names):
        raise TypeError(f"layer {layer.name!r}: takes the input and at most {len(names)} more positional "
                        f"arguments ({', '.join(names)}), got {len(rest)}")
    for name, value in zip(names, rest):
        if name in kw:
            raise TypeError(f"layer {layer.name!r}: got two values for argument {name!r}")
        kw[name] = value
    return x, kw


def _tracked_call(layer, x, kw):
    recording_now = is_recording()
    mask = kw.get("mask")
    if mask is None and isinstance(x, Tensor) and layer.supports_masking:
        mask = x._keras_mask
    mask = kw["mask"] = value_of(mask)
    states = kw.get("initial_state")
    if states is not None:
        states = [states] if not isinstance(states, (list, tuple)) else list(states)
        kw["initial_state"] = [value_of(s) for s in states]
    xv = value_of(x)
    with not_recording():  # the layers a built-in layer calls inside are part of its own backward
        out = layer._run(xv, **kw)
    out_mask = layer.compute_mask(xv, mask)
    outs = out if isinstance(out, list) else [out]
    masks = out_mask if isinstance(out_mask, list) else [out_mask] + [None] * (len(outs) - 1)
    node = None
    if recording_now:
        inputs = [tracked(x), *(tracked(s) for s in states or ())]
        if layer.trainable_weights or any(t is not None for t in inputs):
            node = _layer_node(layer, inputs, len(outs))
    wrapped = [Tensor(o, node, i, m) for i, (o, m) in enumerate(zip(outs, masks))]
    return wrapped if isinstance(out, list) else wrapped[0]


def _layer_node(layer, inputs, n_outputs):
    saved = _transient_state(layer)
    n_states = len(inputs) - 1

    def backward(grads, sink):
        for attributes, values in saved:
            attributes.update(values)
        dx = layer.backward(grads)
        if layer.trainable:
            for weight, grad in zip(layer.weights, layer.grads):
                sink(weight, grad)
        state_grads = list(getattr(layer, "state_grads", None) or [])[:n_states]
        return [dx, *state_grads, *[None] * (n_states - len(state_grads))]

    return Node(inputs, backward, n_outputs=n_outputs, name=layer.name)


def _transient_state(layer):
    """[(the __dict__ of the layer or an inner layer, {transient attribute: value})]: what its last call left."""
    saved, stack = [], [layer]
    while stack:
        current = stack.pop()
        attributes = current.__dict__
        saved.append((attributes, {k: attributes[k] for k in current._transient if k in attributes}))
        stack.extend(v for v in attributes.values() if hasattr(v, "_transient") and v is not current)
    return saved


def _user_call(layer, args, kwargs):
    """A user's layer: built on first call from its input's shape, then its ``call`` on the values given."""
    kwargs = dict(kwargs)
    x = args[0] if args else next(iter(kwargs.values()), None)
    cls = type(layer)
    mask = kwargs.get("mask")
    if mask is None and isinstance(x, Tensor) and x._keras_mask is not None and "mask" in (call_parameters(cls) or ()):
        mask = kwargs["mask"] = x._keras_mask
    if kwargs.get("training") is None and "training" in (call_parameters(cls) or ()):
        kwargs["training"] = _TRAINING.get()
    if not layer.built:
        layer.build_from_shape(input_shapes(x))
    token = _TRAINING.set(kwargs["training"]) if kwargs.get("training") is not None else None
    try:
        out = layer.call(*args, **kwargs)
    finally:
        if token is not None:
            _TRAINING.reset(token)
    if isinstance(out, Tensor):
        out_mask = layer.compute_mask(x, value_of(mask)) if layer.supports_masking else None
        if any(out is t for t in (x if isinstance(x, (list, tuple)) else [x])):
            out = Tensor(out.value, out.node, out.index)  # the input keeps its own mask
        out._keras_mask = out_mask
    return out


def input_shapes(x):
    """The shape of x (a tuple), or a list / dict of shapes for a list / dict of inputs."""
    if isinstance(x, (list, tuple)):
        return [input_shapes(i) for i in x]
    if isinstance(x, dict):
        return {k: input_shapes(v) for k, v in x.items()}
    if isinstance(x, (Tensor, Variable)) or getattr(x, "_symbolic", False):
        return tuple(x.shape)
    return tuple(np.shape(x))
