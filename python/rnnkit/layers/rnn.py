"""``RNN(cell)``, the built-in cells (SimpleRNNCell, LSTMCell, GRUCell) and StackedRNNCells, as in Keras 3.

The cell contract (Keras'): a layer with ``state_size`` (an int, or a list of ints for several states), optionally
``output_size`` and ``get_initial_state(batch_size)``, and ``call(inputs, states, training=None) -> (output,
new_states)`` for one step: ``inputs: [N, C]``, ``states`` a list of ``[N, state_size]`` arrays.

A built-in cell, alone or stacked, runs inside ``RNN`` on the C++ kernels over whole sequences: ``RNN(LSTMCell(u))``
is an ``LSTM(u)`` sharing the cell's weights (the recurrent layers' weights: ``W_ih, W_hh, bias``; GRU with
``reset_after`` ``b_ih, b_hh``).
Any other cell runs step by step in Python, each step recorded on the tape: a Python loop over T steps costs
roughly 20-50 µs per step for a small cell, against well under 1 µs per step on the kernels. Called on its own, a
built-in cell computes one step (on the kernels, as a sequence of one step).

Masks ([N, T] bool): at a padded step the states are carried unchanged and the output repeats the previous one
(zeros with ``zero_output_for_mask``), as Keras 3 does. ``go_backwards`` reads each sequence from its last step
and returns the outputs in that order.
"""

from __future__ import annotations

import numpy as np

from .. import ops
from ..cells import CELLS
from ..engine.functional import flatten
from ..engine.tape import value_of
from .base import Layer, weights_from
from .registry import deserialize, serialize
from .recurrent import GRU, LSTM, SimpleRNN

__all__ = ["RNN", "SimpleRNNCell", "LSTMCell", "GRUCell", "StackedRNNCells"]


class _KernelCell(Layer):
    """A built-in cell: the configuration of its sequence layer (``layer_class``) and that layer's weights."""

    layer_class = None
    _transient = Layer._transient

    @property
    def n_states(self):
        return len(CELLS[self.layer_class.cell].states)

    def __init__(self, units, **options):
        layer_keys = {"name", "dtype", "trainable"}
        base = {k: options.pop(k) for k in list(options) if k in layer_keys}
        super().__init__(**base)
        self.options = dict(options)
        self.units = int(units)
        self._probe = self.layer_class(self.units, **self.options, dtype=self.dtype)  # checks the options now
        self._layer = None

    @property
    def state_size(self):
        sizes = self._probe._state_sizes  # [H] or [H, H]; an LSTM with proj_size P: [P, H]
        return sizes[0] if self.n_states == 1 else list(sizes)

    @property
    def output_size(self):
        return self._probe._state_sizes[0]

    def build(self, input_shape):
        layer = self.layer_class(self.units, return_state=True, **self.options, dtype=self.dtype,
                                 name=f"{self.name}_step")
        layer.ensure_built((None, 1, input_shape[-1]))
        self._layer = layer
        self.weights, self.weight_names, self._n_trainable = layer.weights, layer.weight_names, layer._n_trainable
        self.built = True

    def sequence_layer(self, input_shape, **flags):
        """A ``layer_class`` layer with ``flags`` (return_sequences, go_backwards, ...) over this cell's weights."""
        if not self.built:
            self.build_from_shape(input_shape)
        own = dict(zip(self.weight_names, self.weights))
        with weights_from(lambda layer, name, shape, owners: own[name]):
            layer = self.layer_class(self.units, **self.options, **flags, dtype=self.dtype,
                                     name=f"{self.name}_sequence")
            layer.ensure_built((None, None, input_shape[-1]))
        layer.trainable = self.trainable
        return layer

    def get_initial_state(self, batch_size=None):
        return [np.zeros((batch_size, size), self.dtype) for size in self._probe._state_sizes]

    def call(self, inputs, states, training=None):
        """One step: inputs: [N, C], states: [h] ([h, c] for LSTM) -> (h_t, [h_t] or [h_t, c_t])."""
        states = list(states) if isinstance(states, (list, tuple)) else [states]
        out = self._layer(ops.expand_dims(inputs, 1), initial_state=states, training=training)
        return out[0], list(out[1:])

    def get_config(self):
        return {**super().get_config(), "units": self.units, **self.options}


class SimpleRNNCell(_KernelCell):
    """One step of SimpleRNN: ``h_t = activation(x_t W_ih^T + b_ih + h_prev W_hh^T + b_hh)``."""

    layer_class = SimpleRNN


class LSTMCell(_KernelCell):
    """One step of LSTM (gates i, f, g, o); states [h, c]."""

    layer_class = LSTM


class GRUCell(_KernelCell):
    """One step of GRU (gates r, z, n); ``reset_after`` as the GRU layer."""

    layer_class = GRU


class StackedRNNCells(Layer):
    """Cells applied one after the other at each step; the states are every cell's, in order."""

    def __init__(self, cells, **kwargs):
        super().__init__(**kwargs)
        self.cells = list(cells)
        for cell in self.cells:
            _check_cell(cell)

    @property
    def state_size(self):
        return [cell.state_size for cell in self.cells]

    @property
    def output_size(self):
        last = self.cells[-1]
        return getattr(last, "output_size", None) or _sizes(last.state_size)[0]

    def build(self, input_shape):
        shape = tuple(input_shape)
        for cell in self.cells:
            if not cell.built:
                cell.build_from_shape(shape)
            shape = (shape[0], getattr(cell, "output_size", None) or _sizes(cell.state_size)[0])
        self.built = True

    def get_initial_state(self, batch_size=None):
        return [s for cell in self.cells for s in _initial_states(cell, batch_size, self.dtype)]

    def call(self, inputs, states, training=None):
        states, new_states, x = list(states), [], inputs
        for cell in self.cells:
            n = len(_sizes(cell.state_size))
            x, cell_states = _step(cell, x, states[:n], training)
            states = states[n:]
            new_states.extend(cell_states)
        return x, new_states

    def get_config(self):
        return {**super().get_config(), "cells": [serialize(cell) for cell in self.cells]}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls([deserialize(c) for c in config.pop("cells")], **config)


class RNN(Layer):
    """RNN(cell, return_sequences=False, return_state=False, go_backwards=False, stateful=False, unroll=False,
    zero_output_for_mask=False): a cell (or a list of cells, stacked) over sequences ``x: [N, T, C]``.

    Output ``[N, T, units]`` with ``return_sequences``, else ``[N, units]``; with ``return_state`` a list
    ``[output, *states]`` (every cell's states, in order). ``initial_state``: a list of ``[N, size]`` arrays, flat or
    nested per cell (Keras' structure for stacked cells).
    ``unroll`` is accepted for Keras programs and changes nothing.
    """

    supports_masking = True
    _call_positional = ("initial_state", "mask", "training")

    def __init__(self, cell, return_sequences=False, return_state=False, go_backwards=False, stateful=False,
                 unroll=False, zero_output_for_mask=False, **kwargs):
        if isinstance(cell, (list, tuple)):
            cell = StackedRNNCells(cell)
        _check_cell(cell)
        kwargs.setdefault("dtype", cell.dtype)
        super().__init__(**kwargs)
        self.cell = cell
        self.return_sequences, self.return_state = bool(return_sequences), bool(return_state)
        self.go_backwards, self.stateful, self.unroll = bool(go_backwards), bool(stateful), bool(unroll)
        self.zero_output_for_mask = bool(zero_output_for_mask)
        self.states = None
        self._sequence_layers = None

    def _kernel_cells(self):
        """The built-in cells of a kernel path (in order), or None when a step must run in Python."""
        cells = self.cell.cells if isinstance(self.cell, StackedRNNCells) else [self.cell]
        if not all(isinstance(c, _KernelCell) for c in cells) or self.zero_output_for_mask:
            return None
        if len(cells) > 1 and self.go_backwards:
            return None
        return cells

    def build(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"x: layer {self.name!r} expects inputs [N, T, C], got shape {tuple(input_shape)}")
        cells = self._kernel_cells()
        if cells is not None:
            layers, shape = [], tuple(input_shape)
            for i, cell in enumerate(cells):
                last = i == len(cells) - 1
                layer = cell.sequence_layer(shape, return_sequences=self.return_sequences or not last,
                                            return_state=True, go_backwards=self.go_backwards,
                                            stateful=self.stateful)
                layers.append(layer)
                shape = (shape[0], shape[1], cell.output_size)
            self._sequence_layers = layers
        elif not self.cell.built:
            self.cell.build_from_shape((input_shape[0], input_shape[-1]))
            self.cell.built = True
        # the cells' weights are the layer's (as in Keras): count_params, get_weights, Sequential's optimizer
        cells = self.cell.cells if isinstance(self.cell, StackedRNNCells) else [self.cell]
        if cells[0].built:
            pairs = [(name if len(cells) == 1 else f"{cell.name}/{name}", w, i < cell._n_trainable)
                     for cell in cells for i, (name, w) in enumerate(zip(cell.weight_names, cell.weights))]
            pairs.sort(key=lambda p: not p[2])
            self.weights = [w for _, w, _ in pairs]
            self.weight_names = [n for n, _, _ in pairs]
            self._n_trainable = sum(t for _, _, t in pairs)
        self.built = True

    def compute_output_shape(self, input_shape):
        N, T = input_shape[0], input_shape[1]
        sizes = _sizes(self.cell.state_size)
        units = getattr(self.cell, "output_size", None) or sizes[0]
        output = (N, T, units) if self.return_sequences else (N, units)
        return [output, *((N, s) for s in sizes)] if self.return_state else output

    def get_initial_state(self, batch_size):
        return _initial_states(self.cell, batch_size, self.dtype)

    def reset_states(self, states=None):
        for layer in self._sequence_layers or []:
            layer.reset_states()
        self.states = None if states is None else list(states)

    def call(self, sequences, initial_state=None, mask=None, training=None):
        if initial_state is not None:  # flat, or nested per cell as Keras' stacked cells take them
            initial_state = flatten(initial_state)
        if self._sequence_layers is not None:
            return self._run_kernels(sequences, initial_state, mask, training)
        return self._run_steps(sequences, initial_state, mask, training)

    def _run_kernels(self, x, initial_state, mask, training):
        states_out, given = [], list(initial_state) if initial_state is not None else None
        for layer in self._sequence_layers:
            init = None
            if given is not None:
                init, given = given[:layer.n_states], given[layer.n_states:]
            out = layer(x, initial_state=init, mask=mask, training=training)
            x, states = out[0], list(out[1:])
            states_out.extend(states)
        return [x, *states_out] if self.return_state else x

    def _run_steps(self, x, initial_state, mask, training):
        N, T = x.shape[0], x.shape[1]
        if initial_state is None:
            initial_state = self.states if self.stateful and self.states is not None else \
                self.get_initial_state(N)
        states = list(initial_state)
        steps = range(T - 1, -1, -1) if self.go_backwards else range(T)
        mask = None if mask is None else np.asarray(value_of(mask), dtype=bool)
        outputs, previous = [], None
        for t in steps:
            output, new_states = _step(self.cell, x[:, t], states, training)
            if mask is not None:
                keep = mask[:, t][:, None]
                new_states = [ops.where(keep, new, old) for new, old in zip(new_states, states)]
                if previous is None:
                    previous = np.zeros(output.shape, self.dtype)
                output = ops.where(keep, output, 0.0 if self.zero_output_for_mask else previous)
            states, previous = new_states, output
            outputs.append(output)
        if self.stateful:
            self.states = [np.array(value_of(s)) for s in states]
        result = ops.stack(outputs, axis=1) if self.return_sequences else previous
        return [result, *states] if self.return_state else result

    def compute_mask(self, x, mask=None):
        if not self.return_sequences:
            return None
        return [mask] + [None] * len(_sizes(self.cell.state_size)) if self.return_state else mask

    def get_config(self):
        return {**super().get_config(), "cell": serialize(self.cell), "return_sequences": self.return_sequences,
                "return_state": self.return_state, "go_backwards": self.go_backwards, "stateful": self.stateful,
                "unroll": self.unroll, "zero_output_for_mask": self.zero_output_for_mask}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(deserialize(config.pop("cell")), **config)


def _check_cell(cell):
    if isinstance(cell, (list, tuple)):
        for c in cell:
            _check_cell(c)
        return
    if not hasattr(cell, "state_size") or not callable(getattr(cell, "call", None)):
        raise ValueError(f"cell: expected a layer with a state_size attribute and call(inputs, states), got "
                         f"{type(cell).__name__}")
    _sizes(cell.state_size)


def _sizes(state_size):
    """state_size as a flat list of ints; ValueError for anything else."""
    sizes = flatten(state_size) if isinstance(state_size, (list, tuple)) else [state_size]
    if not sizes or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 for s in sizes):
        raise ValueError(f"cell: state_size must be a positive integer or a list of them, got {state_size!r}")
    return [int(s) for s in sizes]


def _initial_states(cell, batch_size, dtype):
    fn = getattr(cell, "get_initial_state", None)
    if fn is not None:
        states = fn(batch_size=batch_size)
        return list(states) if isinstance(states, (list, tuple)) else [states]
    return [np.zeros((batch_size, s), dtype) for s in _sizes(cell.state_size)]


def _step(cell, x_t, states, training):
    """One step of ``cell``: (output, new states as a list)."""
    kwargs = {}
    from ..engine.calls import accepts

    if accepts(type(cell), "training"):
        kwargs["training"] = training
    output, new_states = cell(x_t, states, **kwargs)
    new_states = list(new_states) if isinstance(new_states, (list, tuple)) else [new_states]
    return output, new_states
