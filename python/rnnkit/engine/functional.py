"""The functional graph: symbolic tensors (``rnnkit.Input``), the nodes layers make when called on them, and the
ordered graph a functional ``Model`` runs.

Calling a layer on symbolic tensors builds the layer for their shapes (a built-in layer from its
``compute_output_shape``; a user's layer by one call on small zero arrays, twice with different sizes for the
axes the inputs leave unknown) and returns symbolic tensors of its outputs' shapes, each remembering the node that
made it. ``Graph(inputs, outputs)`` walks back from the outputs to the inputs and orders the nodes so that each
runs after the nodes it reads; running it calls each node's layer on the values (eager tensors), so a layer
called at several nodes (a shared layer) is one set of weights.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from .calls import _bind, accepts, input_shapes, own_backward
from .tape import Operand, Tensor, not_recording

__all__ = ["KerasTensor", "Input", "Graph", "symbolic_call", "symbolic_op", "flatten", "pack_like"]

_names = itertools.count()
# values of the zero arrays a layer is tried on while a model is rebuilt from a file, and of what a trial of one of
# rnnkit's layers or ops may make (at most 32 MB each, in float64)
TRIAL_LIMIT = 2**22
TRIAL_OUTPUTS = 2**12  # arrays an op of a file's graph may make (rnnkit.ops.split's pieces: each costs a trial)


class KerasTensor(Operand):
    """A symbolic tensor: a shape (None for an axis of any size), a dtype, and the graph node that makes it."""

    _symbolic = True

    def __init__(self, shape, dtype="float32", name=None, node=None, index=0):
        self._shape = tuple(None if d is None else int(d) for d in shape)
        self._dtype = str(np.dtype(dtype))
        self.name = name or f"keras_tensor_{next(_names)}"
        self.node, self.index = node, index

    shape = property(lambda self: self._shape)
    dtype = property(lambda self: self._dtype)
    ndim = property(lambda self: len(self._shape))

    def __repr__(self):
        return f"<KerasTensor shape={self.shape}, dtype={self.dtype}, name={self.name}>"

    def _converts(self):
        raise TypeError(f"{self.name}: a symbolic tensor (rnnkit.Input, or a layer's output on one) has no values; "
                        "call a model built from it on data, or use rnnkit.ops on it inside the graph")


class GraphNode:
    """One call of ``layer`` on symbolic tensors: its arguments (symbolic tensors inside) and its outputs."""

    def __init__(self, layer, args, kwargs, outputs, returns_list):
        self.layer, self.args, self.kwargs = layer, args, kwargs
        self.inputs = [t for t in flatten((args, kwargs)) if isinstance(t, KerasTensor)]
        self.outputs, self.returns_list = outputs, returns_list
        for i, t in enumerate(outputs):
            t.node, t.index = self, i
        layer.__dict__.setdefault("_inbound_nodes", []).append(self)


def _get_input_layer():
    from ..layers.core import InputLayer

    return InputLayer


def Input(shape=None, batch_size=None, dtype=None, sparse=None, batch_shape=None, name=None, tensor=None,
          optional=False):
    """A symbolic input of a functional model: ``shape`` without the batch axis (None for any size), or
    ``batch_shape`` with it; ``dtype`` "float32" by default (an integer dtype for an Embedding's ids)."""
    if sparse:
        raise ValueError("sparse: rnnkit takes dense inputs only")
    if tensor is not None:
        raise ValueError("tensor: rnnkit's Input makes its own symbolic tensor; pass shape= instead")
    if batch_shape is None:
        if shape is None:
            raise ValueError("shape: Input needs shape= (without the batch axis) or batch_shape=")
        shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        batch_shape = (batch_size, *shape)
    for d in batch_shape:
        if d is not None and (isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 0):
            raise ValueError(f"shape: expected non-negative integers or None, got {tuple(batch_shape)}")
    dtype = "float32" if dtype is None else str(np.dtype(dtype))
    if np.dtype(dtype).kind not in "fiub":
        raise ValueError(f"dtype: expected a numeric dtype, got {dtype!r}")
    layer = _get_input_layer()(batch_shape=batch_shape, dtype=dtype, name=name)
    return layer.output


# ---- calling layers on symbolic tensors ------------------------------------------------------------------
def symbolic_call(layer, args, kwargs):
    """The node of ``layer`` called on symbolic tensors; returns its symbolic outputs."""
    x = args[0] if args else next(iter(kwargs.values()))
    shapes = input_shapes(x)
    if own_backward(type(layer)):
        _, bound = _bind(layer, args, kwargs)  # a call the layer takes (its positional and keyword arguments)
        unknown = [k for k in bound if not accepts(type(layer), k)]
        if unknown:
            raise TypeError(f"layer {layer.name!r}: its call takes no argument {unknown[0]!r}")
        layer.ensure_built(shapes)
        out_shapes = layer.compute_output_shape(shapes)
        returns_list = isinstance(out_shapes, list)
        out_shapes = out_shapes if returns_list else [out_shapes]
        dtypes = [layer.dtype] * len(out_shapes)
    elif hasattr(layer, "symbolic_outputs"):  # a functional model used as a layer
        out_shapes, dtypes, returns_list = layer.symbolic_outputs(shapes)
    elif _defines_output_shape(type(layer)):
        if all(d is not None for t in flatten((args, kwargs)) if isinstance(t, KerasTensor) for d in t.shape[1:]):
            if _loading() and type(layer).__module__.startswith("rnnkit."):  # a file's layer: what it makes bounded
                check_trial_size(layer, layer.compute_output_shape(shapes), "outputs")
            _trial_outputs(layer, args, kwargs, fills=(2,))  # the call's own checks, with its own messages
        elif not layer.built:
            layer.build_from_shape(shapes)
        out_shapes = layer.compute_output_shape(shapes)
        returns_list = isinstance(out_shapes, list) and all(isinstance(o, (list, tuple)) for o in out_shapes)
        out_shapes = out_shapes if returns_list else [out_shapes]
        dtypes = [layer.dtype] * len(out_shapes)
    else:
        out_shapes, dtypes, returns_list = _trial_outputs(layer, args, kwargs)
    outputs = [KerasTensor(s, d, name=f"{layer.name}/output_{i}" if len(out_shapes) > 1 else None)
               for i, (s, d) in enumerate(zip(out_shapes, dtypes))]
    GraphNode(layer, args, kwargs, outputs, returns_list)
    return outputs if returns_list else outputs[0]


def _loading():
    from ..layers.base import loading

    return loading()


def check_trial_size(layer, shapes, what, fill=2):
    """ValueError unless ``shapes`` (a shape, or a list of them; None for an axis of any size, counted as ``fill``)
    hold at most TRIAL_LIMIT values together: what a layer of a file's graph may be tried on, or make."""
    shapes = shapes if isinstance(shapes, list) and all(isinstance(s, (list, tuple)) for s in shapes) else [shapes]
    values = sum(math.prod(fill if d is None else d for d in s) for s in shapes)
    if values > TRIAL_LIMIT:
        raise ValueError(f"layer {layer.name!r}: {what} of shapes {[tuple(s) for s in shapes]} are too large to "
                         f"rebuild the model from a file (at most {TRIAL_LIMIT} values)")


def _defines_output_shape(cls):
    from ..layers.base import Layer

    return cls.compute_output_shape is not Layer.compute_output_shape and not hasattr(cls, "symbolic_outputs")


def _trial_outputs(layer, args, kwargs, fills=(2, 3)):
    """(output shapes, dtypes, returns a list) of a user's layer, from calls on zero arrays: an unknown input axis
    is given size 2, then 3, and an output axis whose size differs between the two calls is unknown."""
    from ..layers.base import loading, no_backward

    results = []
    for fill in fills:
        shapes = [tuple(fill if d is None else d for d in t.shape) for t in flatten((args, kwargs))
                  if isinstance(t, KerasTensor)]
        if loading():  # a file's architecture: bounded
            check_trial_size(layer, shapes, "inputs")

        def concrete(t, fill=fill):
            if isinstance(t, KerasTensor):
                return np.zeros(tuple(fill if d is None else d for d in t.shape), t.dtype)
            return t
        c_args, c_kwargs = pack_like((args, kwargs), [concrete(t) for t in flatten((args, kwargs))])
        with not_recording(), no_backward():
            try:
                out = layer(*c_args, **c_kwargs)
            except Exception as e:
                message = (f"layer {layer.name!r} called on symbolic inputs of shape "
                           f"{input_shapes(args[0] if args else next(iter(kwargs.values())))}: {e}")
                try:
                    again = type(e)(message)
                except Exception:  # an exception type that takes other arguments
                    again = ValueError(message)
                raise again from e
        results.append(out)
    returns_list = isinstance(results[0], (list, tuple))
    first = list(results[0]) if returns_list else [results[0]]
    second = list(results[-1]) if returns_list else [results[-1]]
    shapes = [tuple(a if a == b else None for a, b in zip(np.shape(_value(o1)), np.shape(_value(o2))))
              for o1, o2 in zip(first, second)]
    dtypes = [str(np.asarray(_value(o)).dtype) for o in first]
    return shapes, dtypes, returns_list


def _value(x):
    return x.value if isinstance(x, Tensor) else x


def symbolic_op(op, args, kwargs):
    """``op`` (an rnnkit.ops function) called on symbolic tensors: a node of an ``OpLayer`` that calls it."""
    from ..layers.core import OpLayer

    tensors = [t for t in flatten((args, kwargs)) if isinstance(t, KerasTensor)]
    layer = OpLayer(op, args, kwargs)
    return layer(tensors)


# ---- nested structures ------------------------------------------------------------------------------
def flatten(x):
    """The leaves of nested lists, tuples and dicts (dicts in key order as given), in order."""
    out = []
    stack = [x]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)):
            stack.extend(reversed(item))
        elif isinstance(item, dict):
            stack.extend(reversed(list(item.values())))
        else:
            out.append(item)
    return out


def pack_like(structure, leaves):
    """``structure`` with its leaves replaced, in order, by ``leaves``."""
    it = iter(leaves)

    def pack(s):
        if isinstance(s, list):
            return [pack(i) for i in s]
        if isinstance(s, tuple):
            return tuple(pack(i) for i in s)
        if isinstance(s, dict):
            return {k: pack(v) for k, v in s.items()}
        return next(it)
    return pack(structure)


# ---- the graph of a functional model --------------------------------------------------------------------
class Graph:
    """The nodes between ``inputs`` and ``outputs`` (nested structures of symbolic tensors), in an order where
    each runs after the nodes it reads. ValueError when an output depends on an input not among ``inputs``."""

    def __init__(self, inputs, outputs):
        self.inputs, self.outputs = inputs, outputs
        self.flat_inputs, self.flat_outputs = flatten(inputs), flatten(outputs)
        self.single_output = isinstance(outputs, KerasTensor)  # not in a list or dict
        for what, tensors in (("inputs", self.flat_inputs), ("outputs", self.flat_outputs)):
            for t in tensors:
                if not isinstance(t, KerasTensor):
                    raise TypeError(f"{what}: expected symbolic tensors (from rnnkit.Input and layers called on "
                                    f"them), got {type(t).__name__}")
        for t in self.flat_inputs:
            if not isinstance(t.node.layer, _get_input_layer()):
                raise ValueError(f"inputs: {t.name} is not an rnnkit.Input; a model's inputs are Input tensors")
        given = {id(t) for t in self.flat_inputs}
        order, done, stack = [], set(), [(t, False) for t in reversed(self.flat_outputs)]
        while stack:  # depth-first, each node after its inputs' nodes
            t, expanded = stack.pop()
            node = t.node
            if id(node) in done:
                continue
            if isinstance(node.layer, _get_input_layer()):
                if id(t) not in given:
                    raise ValueError(
                        f"Graph disconnected: the outputs depend on input {t.name!r} (shape {t.shape}), which is not "
                        f"among the model's inputs {[i.name for i in self.flat_inputs]}; pass it in inputs=")
                done.add(id(node))
                continue
            if expanded:
                done.add(id(node))
                order.append(node)
                continue
            stack.append((t, True))
            stack.extend((i, False) for i in reversed(node.inputs) if id(i.node) not in done)
        self.nodes = order

    def layers(self):
        """Every layer of the graph once, inputs first, in the order of the nodes."""
        found, seen = [], set()
        for t in self.flat_inputs:
            seen.add(id(t.node.layer))
            found.append(t.node.layer)
        for node in self.nodes:
            if id(node.layer) not in seen:
                seen.add(id(node.layer))
                found.append(node.layer)
        return found

    def plain_plan(self):
        """[(layer, input, state inputs, training, returns a list, outputs)] when every node calls a built-in layer
        (one that differentiates itself) on one tensor, with only ``initial_state`` and ``training`` besides: then
        inference can pass arrays from layer to layer (``run_plain``). None otherwise. Worked out once."""
        plan = getattr(self, "_plain", False)
        if plan is not False:
            return plan
        from ..layers.base import Layer

        plan = []
        for node in self.nodes:
            kwargs, args = node.kwargs, node.args
            states = kwargs.get("initial_state")
            states = [] if states is None else states if isinstance(states, (list, tuple)) else [states]
            if not own_backward(type(node.layer)) or len(args) != 1 or not isinstance(args[0], KerasTensor) \
                    or set(kwargs) - {"initial_state", "training"} \
                    or not all(isinstance(t, KerasTensor) for t in states):
                plan = None
                break
            passes_mask = type(node.layer).compute_mask is Layer.compute_mask  # its input's mask, or none
            plan.append((node.layer, id(args[0]), [id(t) for t in states], kwargs.get("training"),
                         node.returns_list, [id(t) for t in node.outputs], passes_mask))
        self._plain = plan
        return plan

    def run_plain(self, values, training):
        """(flat output arrays, their masks) for ``values`` (arrays, one per flat input), along ``plain_plan``."""
        env = {id(t): (v, None) for t, v in zip(self.flat_inputs, values)}
        for layer, x, states, train, returns_list, outputs, passes_mask in self._plain:
            xv, mask = env[x]
            if not layer.supports_masking:
                mask = None
            training_now = bool(training if train is None else train)
            if states:
                out = layer._run(xv, mask=mask, training=training_now, initial_state=[env[t][0] for t in states])
            else:
                out = layer._run(xv, mask=mask, training=training_now)
            out_mask = mask if passes_mask else layer.compute_mask(xv, mask)
            if returns_list:
                masks = out_mask if isinstance(out_mask, list) else [out_mask] + [None] * (len(out) - 1)
                for t, v, m in zip(outputs, out, masks):
                    env[t] = (v, m)
            else:
                env[outputs[0]] = (out, out_mask[0] if isinstance(out_mask, list) else out_mask)
        found = [env[id(t)] for t in self.flat_outputs]
        return [v for v, _ in found], [m for _, m in found]

    def run(self, values):
        """The flat outputs for ``values`` (one per flat input: eager tensors), calling each node's layer."""
        env = {id(t): v for t, v in zip(self.flat_inputs, values)}
        for node in self.nodes:
            args, kwargs = pack_like((node.args, node.kwargs),
                                     [env[id(t)] if isinstance(t, KerasTensor) else t
                                      for t in flatten((node.args, node.kwargs))])
            out = node.layer(*args, **kwargs)
            outs = list(out) if node.returns_list else [out]
            for t, v in zip(node.outputs, outs):
                env[id(t)] = v
        return [env[id(t)] for t in self.flat_outputs]
