"""rnnkit's functional and subclassed models, custom layers and ``RNN(cell)`` against Keras 3 itself (its NumPy
backend) with the same weights.

Each program is written once, as a function of ``lib`` (the ``rnnkit`` or the ``keras`` module), with explicit
layer names; rnnkit's side gets random weights (biases included), which are copied into Keras' side by layer
name (recurrent layers and built-in cells through ``rnnkit.convert.to_keras_*``; a user's layer or cell has
Keras' layout already), and both run on the same float32 inputs: ``model.predict`` (lists of outputs for several
outputs), a subclassed model's ``model(x)``, or an ``RNN`` layer's call with an explicit mask. Outputs must agree
to float32 rounding (``assert_close`` of test_keras_parity.py).

Masks: rnnkit's kernels (built-in layers and cells) take right- or left-padded masks (one run of valid steps per
sequence); a user's cell runs step by step and takes any mask, holes included, as Keras does. At a masked step
an RNN's output repeats the previous output (zeros before the first step) and its states are carried: Keras'
unrolled loop (``unroll=True``) and its TensorFlow and PyTorch backends do exactly that, but its NumPy (and JAX)
scan takes the cell's first state for the previous output (for stacked cells the last cell's first state, or the
first cell's when that one is a bare array), which differs with initial states and with stacked user cells. So
masked ``RNN`` cases compare with Keras' ``RNN(..., unroll=True)`` (rnnkit accepts ``unroll`` and ignores it).

States: Keras returns and takes the states of stacked cells nested per cell; rnnkit returns them flat (every
cell's states in order) and takes either; they are compared flattened.

Keras is an optional peer, as in test_keras_parity.py: the module skips without it unless
``RNNKIT_REQUIRE_KERAS=1``.
"""

import pytest

from helpers import import_keras  # noqa: E402

keras = import_keras()

import numpy as np  # noqa: E402
from numpy.testing import assert_array_equal  # noqa: E402

import rnnkit  # noqa: E402
from rnnkit import convert  # noqa: E402
from rnnkit import layers as rl  # noqa: E402
from rnnkit.engine.functional import flatten  # noqa: E402
from rnnkit.utils import pad_sequences  # noqa: E402

# the same checks of the Keras import, and the shared helpers
from test_keras_parity import LENGTHS, C, H, N, T, V, assert_close, keras_weights, padded_ids, randomize  # noqa: E402


def assert_all_close(actual, expected):
    """The leaves of two output structures (arrays, or lists / tuples of them, nested), pairwise, in order."""
    actual, expected = flatten(actual), flatten(expected)
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert isinstance(a, np.ndarray)
        assert_close(a, np.asarray(e))


# ---- copying weights by layer name ----------------------------------------------------------------------

def cells_of(layer):
    """The cells of an RNN layer (either library's), in order: its cell, or the cells it stacks."""
    cell = layer.cell
    return list(cell.cells) if isinstance(cell, (rl.StackedRNNCells, keras.layers.StackedRNNCells)) else [cell]


def keras_cell_weights(cell):
    """A built rnnkit cell's weights in Keras' layout: the converters for the built-in cells (PyTorch layout);
    a user's cell as it is."""
    W = cell.get_weights()
    if isinstance(cell, rl.LSTMCell):
        return list(convert.to_keras_lstm(*W))
    if isinstance(cell, rl.GRUCell):
        return list(convert.to_keras_gru(*W, reset_after=cell.get_config().get("reset_after", True)))
    if isinstance(cell, rl.SimpleRNNCell):
        return list(convert.to_keras_rnn(*W))
    return W


def randomize_cells(layer, rng):
    """Random weights in every cell of a built rnnkit RNN layer."""
    for cell in cells_of(layer):
        assert cell.weights
        randomize(cell, rng)


def copy_cells(ours, theirs):
    """Every cell's weights of an rnnkit RNN layer into the Keras RNN layer's cell at the same position."""
    pairs = list(zip(cells_of(ours), cells_of(theirs)))
    assert len(pairs) == len(cells_of(theirs))
    for cell, kcell in pairs:
        kcell.set_weights(keras_cell_weights(cell))


def copy_by_name(model, kmodel):
    """Sets each Keras layer's weights from the rnnkit layer of the same name; every Keras layer with weights must
    get them."""
    copied = set()
    for ours in model.layers:
        if isinstance(ours, rl.RNN):
            copy_cells(ours, kmodel.get_layer(ours.name))
        elif not ours.weights:
            continue
        theirs = kmodel.get_layer(ours.name)
        if isinstance(ours, rl.Bidirectional):
            theirs.forward_layer.set_weights(keras_weights(ours.forward_layer))
            theirs.backward_layer.set_weights(keras_weights(ours.backward_layer))
        elif isinstance(ours, rl.Recurrent):
            theirs.set_weights(keras_weights(ours))
        elif not isinstance(ours, rl.RNN):
            theirs.set_weights(ours.get_weights())
        copied.add(ours.name)
    assert copied == {layer.name for layer in kmodel.layers if layer.weights}


def build_both(program, rng):
    """(rnnkit model, Keras model) of ``program(lib)``, the rnnkit one with random weights, copied into Keras'."""
    model, kmodel = program(rnnkit), program(keras)
    for layer in model.layers:
        if isinstance(layer, rl.RNN):
            randomize_cells(layer, rng)
        else:
            randomize(layer, rng)
    copy_by_name(model, kmodel)
    return model, kmodel


def predict_both(model, kmodel, x):
    return model.predict(x, batch_size=2), kmodel.predict(x, batch_size=2, verbose=0)


def features(rng, n=N, t=T, c=C):
    return rng.standard_normal((n, t, c)).astype(np.float32)


# ---- 1. functional models -------------------------------------------------------------------------------

def lstm_dense(lib):
    inputs = lib.Input(shape=(T, C), name="sequence")
    h = lib.layers.LSTM(H, name="lstm")(inputs)
    return lib.Model(inputs, lib.layers.Dense(3, name="head")(h))


def shared_gru_two_heads(lib):
    """Two inputs of different lengths through one GRU (one set of weights, two nodes), a Dense head each."""
    a, b = lib.Input(shape=(T, C), name="a"), lib.Input(shape=(T - 3, C), name="b")
    shared = lib.layers.GRU(H, name="shared_gru")
    out_a = lib.layers.Dense(2, name="head_a")(shared(a))
    out_b = lib.layers.Dense(3, activation="softmax", name="head_b")(shared(b))
    return lib.Model([a, b], [out_a, out_b])


def test_functional_lstm_dense(rng):
    model, kmodel = build_both(lstm_dense, rng)
    assert_close(*predict_both(model, kmodel, features(rng)))


def test_functional_shared_gru_two_inputs_two_outputs(rng):
    model, kmodel = build_both(shared_gru_two_heads, rng)
    assert len(model.get_layer("shared_gru").weights) == 4  # shared: one set of weights
    actual, expected = predict_both(model, kmodel, [features(rng), features(rng, t=T - 3)])
    assert isinstance(actual, list) and len(actual) == len(expected) == 2
    assert [a.shape for a in actual] == [(N, 2), (N, 3)]
    assert_all_close(actual, expected)


# ---- 2. encoder-decoder through initial_state -----------------------------------------------------------

def encoder_decoder(lib):
    """(full model, encoder sub-model) of the seq2seq program: the encoder's [h, c] start the decoder."""
    encoder_inputs = lib.Input(shape=(None, C), name="encoder_inputs")
    decoder_inputs = lib.Input(shape=(None, C + 1), name="decoder_inputs")
    _, h, c = lib.layers.LSTM(H, return_state=True, name="encoder")(encoder_inputs)
    y = lib.layers.LSTM(H, return_sequences=True, name="decoder")(decoder_inputs, initial_state=[h, c])
    probabilities = lib.layers.Dense(V, activation="softmax", name="head")(y)
    return lib.Model([encoder_inputs, decoder_inputs], probabilities), lib.Model(encoder_inputs, [h, c])


def test_encoder_decoder_and_encoder_sub_model(rng):
    (model, encoder), (kmodel, kencoder) = encoder_decoder(rnnkit), encoder_decoder(keras)
    for layer in model.layers:
        randomize(layer, rng)
    copy_by_name(model, kmodel)
    x_enc, x_dec = features(rng), features(rng, t=T - 2, c=C + 1)
    actual, expected = predict_both(model, kmodel, [x_enc, x_dec])
    assert actual.shape == (N, T - 2, V)
    assert_close(actual, expected)
    states, kstates = predict_both(encoder, kencoder, x_enc)  # the sub-model shares the encoder's weights
    assert isinstance(states, list) and [s.shape for s in states] == [(N, H), (N, H)]
    assert_all_close(states, kstates)


# ---- 3. masks along a functional graph ------------------------------------------------------------------

def masked_ids_stack(lib):
    ids = lib.Input(shape=(T,), dtype="int32", name="ids")
    x = lib.layers.Embedding(V, C, mask_zero=True, name="embedding")(ids)
    x = lib.layers.Bidirectional(lib.layers.LSTM(H, return_sequences=True), name="bidirectional")(x)
    x = lib.layers.LSTM(H, name="lstm")(x)
    return lib.Model(ids, lib.layers.Dense(3, name="head")(x))


def left_padded_ids(rng, lengths=LENGTHS):
    """pad_sequences' default (padding="pre"): each sequence's ids at the end of its row, zeros before."""
    sequences = [list(rng.integers(1, V, n)) for n in lengths]
    return pad_sequences(sequences, maxlen=T).astype(np.int32)


@pytest.mark.parametrize("padding", ["post", "pre"])
def test_masked_ids_through_bidirectional_and_lstm(rng, padding):
    model, kmodel = build_both(masked_ids_stack, rng)
    ids = padded_ids(rng) if padding == "post" else left_padded_ids(rng)
    assert (ids == 0).any(axis=1).sum() == 4  # four sequences padded, one of them all padding
    assert_close(*predict_both(model, kmodel, ids))


# ---- 4. RNN(cell) with the built-in cells ---------------------------------------------------------------

CELL_PROGRAMS = {
    "lstm": lambda lib: lib.layers.LSTMCell(H),
    "gru": lambda lib: lib.layers.GRUCell(H),
    "gru_reset_before": lambda lib: lib.layers.GRUCell(H, reset_after=False),
    "rnn": lambda lib: lib.layers.SimpleRNNCell(H),
    "stacked": lambda lib: [lib.layers.LSTMCell(H), lib.layers.GRUCell(H)],
}


def right_padded_mask(lengths=LENGTHS):
    """mask: [N, T] bool, True on each sequence's first lengths[n] steps."""
    return np.arange(T) < lengths[:, None]


def left_padded_mask(lengths=LENGTHS):
    """mask: [N, T] bool, True on each sequence's last lengths[n] steps (pad_sequences' padding="pre")."""
    return np.arange(T) >= T - lengths[:, None]


def mask_with_holes(rng):
    """mask: [N, T] bool with masked steps between valid ones (and a row of padding only)."""
    mask = rng.random((N, T)) < 0.6
    mask[0] = [True, False, True, True, False, False, True]
    mask[1] = False
    return mask


def rnn_pair(make_cell, rng, x, **flags):
    """(rnnkit RNN, Keras RNN) of ``make_cell(lib)`` with ``flags``, built on x, the same random weights (masked
    cases pass ``unroll=True``: Keras' loop that carries the previous output, see the module docstring)."""
    ours, theirs = rl.RNN(make_cell(rnnkit), **flags), keras.layers.RNN(make_cell(keras), **flags)
    ours(x), theirs(x)  # builds the layers and their cells
    randomize_cells(ours, rng)
    copy_cells(ours, theirs)
    return ours, theirs


def run_rnn_both(ours, theirs, x, mask=None, **kwargs):
    if mask is None:
        return ours(x, **kwargs), theirs(x, **kwargs)
    return ours(x, mask=mask, **kwargs), theirs(x, mask=mask, **kwargs)


MASKS = {"unmasked": None, "right_padded": lambda rng: right_padded_mask(),
         "left_padded": lambda rng: left_padded_mask(), "holes": mask_with_holes}


def rnn_cases():
    for cell in CELL_PROGRAMS:
        for return_sequences in (True, False):
            for go_backwards in (False, True):
                for mask in ("unmasked", "right_padded", "left_padded"):
                    yield pytest.param(cell, return_sequences, go_backwards, mask, id="-".join(
                        [cell, "seq" if return_sequences else "last", "backwards" if go_backwards else "forwards",
                         mask]))


@pytest.mark.parametrize("cell, return_sequences, go_backwards, mask", list(rnn_cases()))
def test_rnn_with_builtin_cells(rng, cell, return_sequences, go_backwards, mask):
    x = features(rng)
    masked = MASKS[mask] is not None
    ours, theirs = rnn_pair(CELL_PROGRAMS[cell], rng, x, return_sequences=return_sequences,
                            go_backwards=go_backwards, unroll=masked)
    actual, expected = run_rnn_both(ours, theirs, x, MASKS[mask](rng) if masked else None)
    assert actual.shape == ((N, T, H) if return_sequences else (N, H))
    assert_close(actual, expected)


@pytest.mark.xfail(strict=True, raises=ValueError,
                   reason="the kernels take one run of valid steps per sequence (right or left padding), so a "
                          "built-in cell does not take a mask with holes, which Keras' RNN takes")
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_rnn_with_builtin_cell_mask_with_holes(rng, cell):
    x = features(rng)
    ours, theirs = rnn_pair(CELL_PROGRAMS[cell], rng, x, return_sequences=True, unroll=True)
    assert_close(*run_rnn_both(ours, theirs, x, mask_with_holes(rng)))


@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
@pytest.mark.parametrize("cell", CELL_PROGRAMS)
def test_rnn_with_builtin_cells_return_state(rng, cell, masked):
    x = features(rng)
    ours, theirs = rnn_pair(CELL_PROGRAMS[cell], rng, x, return_sequences=True, return_state=True,
                            unroll=masked)
    actual, expected = run_rnn_both(ours, theirs, x, right_padded_mask() if masked else None)
    n_states = {"lstm": 2, "stacked": 3}.get(cell, 1)
    assert isinstance(actual, list) and len(actual) == 1 + n_states
    assert_all_close(actual, expected)


def nested_per_cell(states, sizes):
    """Keras' structure of stacked cells' states: the flat ``states`` grouped per cell (``sizes``: how many each
    cell has); one cell's states as they are."""
    if len(sizes) == 1:
        return states
    groups, at = [], 0
    for n in sizes:
        groups.append(states[at:at + n])
        at += n
    return groups


STATES_PER_CELL = {"lstm": [2], "stacked": [2, 1], "minimal_then_lstm": [1, 2], "gru_then_minimal": [1, 1]}


@pytest.mark.parametrize("go_backwards", [False, True], ids=["forwards", "backwards"])
@pytest.mark.parametrize("cell", CELL_PROGRAMS)
def test_rnn_with_builtin_cells_initial_state(rng, cell, go_backwards):
    x = features(rng)
    ours, theirs = rnn_pair(CELL_PROGRAMS[cell], rng, x, return_sequences=True, go_backwards=go_backwards)
    sizes = STATES_PER_CELL.get(cell, [1])
    states = [rng.standard_normal((N, H)).astype(np.float32) for _ in range(sum(sizes))]
    nested = nested_per_cell(states, sizes)
    actual, expected = ours(x, initial_state=nested), theirs(x, initial_state=nested)
    assert not np.allclose(actual, ours(x))
    assert_close(actual, expected)
    assert_array_equal(ours(x, initial_state=states), actual)  # rnnkit takes them flat too


# ---- 5. a user's cell -----------------------------------------------------------------------------------

def minimal_rnn_cell(lib):
    """Keras' documented MinimalRNNCell, written over ``lib``: output = inputs @ kernel + prev @ recurrent_kernel."""

    class MinimalRNNCell(lib.layers.Layer):
        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.units = units
            self.state_size = units

        def build(self, input_shape):
            self.kernel = self.add_weight(shape=(input_shape[-1], self.units), initializer="uniform", name="kernel")
            self.recurrent_kernel = self.add_weight(shape=(self.units, self.units), initializer="uniform",
                                                    name="recurrent_kernel")
            self.built = True

        def call(self, inputs, states):
            prev_output = states[0]
            h = lib.ops.matmul(inputs, self.kernel)
            output = h + lib.ops.matmul(prev_output, self.recurrent_kernel)
            return output, [output]

    return MinimalRNNCell


USER_CELL_PROGRAMS = {
    "minimal": lambda lib: minimal_rnn_cell(lib)(H),
    "minimal_then_lstm": lambda lib: [minimal_rnn_cell(lib)(H), lib.layers.LSTMCell(H)],
    "gru_then_minimal": lambda lib: [lib.layers.GRUCell(H), minimal_rnn_cell(lib)(H)],
}


@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize("go_backwards", [False, True], ids=["forwards", "backwards"])
@pytest.mark.parametrize("return_sequences", [True, False], ids=["seq", "last"])
@pytest.mark.parametrize("cell", USER_CELL_PROGRAMS)
def test_rnn_with_user_cell(rng, cell, return_sequences, go_backwards, mask):
    x = features(rng)
    ours, theirs = rnn_pair(USER_CELL_PROGRAMS[cell], rng, x, return_sequences=return_sequences,
                            go_backwards=go_backwards, unroll=MASKS[mask] is not None)
    if cell == "minimal":
        assert [w.shape for w in ours.cell.weights] == [(C, H), (H, H)]
        assert ours.cell.weight_names == [w.name.split("/")[-1] for w in theirs.cell.weights]
    actual, expected = run_rnn_both(ours, theirs, x, None if MASKS[mask] is None else MASKS[mask](rng))
    assert actual.shape == ((N, T, H) if return_sequences else (N, H))
    assert_close(actual, expected)


@pytest.mark.parametrize("cell", USER_CELL_PROGRAMS)
def test_rnn_with_user_cell_return_state_and_initial_state(rng, cell):
    x = features(rng)
    ours, theirs = rnn_pair(USER_CELL_PROGRAMS[cell], rng, x, return_sequences=True, return_state=True,
                            unroll=True)
    sizes = STATES_PER_CELL.get(cell, [1])
    states = [rng.standard_normal((N, H)).astype(np.float32) for _ in range(sum(sizes))]
    nested = nested_per_cell(states, sizes)
    mask = mask_with_holes(rng)
    actual, expected = ours(x, initial_state=nested, mask=mask), theirs(x, initial_state=nested, mask=mask)
    assert isinstance(actual, list) and len(actual) == 1 + len(states)  # rnnkit: the states flat
    assert_all_close(actual, expected)


EMPTY_ROW_CELLS = {"lstm_cell": CELL_PROGRAMS["lstm"], "minimal_cell": USER_CELL_PROGRAMS["minimal"]}


@pytest.mark.parametrize("cell, return_sequences", [
    ("lstm_cell", True),
    pytest.param("lstm_cell", False, marks=pytest.mark.xfail(
        strict=True, reason="on the kernels (built-in cells and layers), an all-padding sequence's last output is its "
                            "final state, the initial state given; Keras' unrolled loop and its TensorFlow and "
                            "PyTorch backends give the previous output, zeros, as rnnkit's step loop for user cells "
                            "does (Keras' NumPy and JAX scans give the state)")),
    ("minimal_cell", True),
    ("minimal_cell", False),
], ids=["lstm_cell-seq", "lstm_cell-last", "minimal_cell-seq", "minimal_cell-last"])
def test_rnn_all_padding_sequence_with_initial_state(rng, cell, return_sequences):
    """A sequence of padding only, with a non-zero initial state: its outputs are the previous output carried from
    before the first step (zeros), its final states the initial ones."""
    x = features(rng)
    ours, theirs = rnn_pair(EMPTY_ROW_CELLS[cell], rng, x, return_sequences=return_sequences, return_state=True,
                            unroll=True)
    states = [rng.standard_normal((N, H)).astype(np.float32) for _ in range(2 if cell == "lstm_cell" else 1)]
    mask = right_padded_mask()
    assert not mask[-1].any()
    actual, expected = ours(x, initial_state=states, mask=mask), theirs(x, initial_state=states, mask=mask)
    for a, s in zip(actual[1:], states):
        assert_array_equal(a[-1], s[-1])
    assert_all_close(actual, expected)


def test_user_cell_rnn_in_a_functional_model(rng):
    def program(lib):
        inputs = lib.Input(shape=(T, C), name="sequence")
        y = lib.layers.RNN(minimal_rnn_cell(lib)(H), return_sequences=True, name="minimal_rnn")(inputs)
        return lib.Model(inputs, lib.layers.Dense(2, name="head")(lib.layers.LSTM(H, name="lstm")(y)))

    model, kmodel = build_both(program, rng)
    assert_close(*predict_both(model, kmodel, features(rng)))


# ---- 6. a subclassed model ------------------------------------------------------------------------------

def states_model(lib):
    """A subclassed model over ``lib``: call(inputs, states=None) -> Dense of the LSTM's sequence."""

    class StatesModel(lib.Model):
        def __init__(self, units, outputs, **kwargs):
            super().__init__(**kwargs)
            self.lstm = lib.layers.LSTM(units, return_sequences=True, return_state=True, name="lstm")
            self.dense = lib.layers.Dense(outputs, name="dense")

        def call(self, inputs, states=None):
            outputs, h, c = self.lstm(inputs, initial_state=states)
            return self.dense(outputs)

    return StatesModel(H, 3)


@pytest.mark.parametrize("with_states", [False, True], ids=["zero_states", "given_states"])
def test_subclassed_model(rng, with_states):
    model, kmodel = states_model(rnnkit), states_model(keras)
    x = features(rng)
    model(x), kmodel(x)  # builds both
    for layer in (model.lstm, model.dense):
        randomize(layer, rng)
    kmodel.lstm.set_weights(keras_weights(model.lstm))
    kmodel.dense.set_weights(model.dense.get_weights())
    if with_states:
        states = [rng.standard_normal((N, H)).astype(np.float32) for _ in range(2)]
        actual, expected = model(x, states), np.asarray(kmodel(x, states))
        assert not np.allclose(actual, model(x))
    else:
        actual, expected = model(x), np.asarray(kmodel(x))
    assert isinstance(actual, np.ndarray) and actual.shape == (N, T, 3)
    assert_close(actual, expected)


# ---- 7. a custom layer inside a functional model --------------------------------------------------------

def tanh_dense_layer(lib):
    class TanhDense(lib.layers.Layer):
        """y = tanh(x @ w + b) over the last axis."""

        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.units = units

        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1], self.units), initializer="random_normal", name="w")
            self.b = self.add_weight(shape=(self.units,), initializer="zeros", name="b")

        def call(self, x):
            return lib.ops.tanh(x @ self.w + self.b)

    return TanhDense


def custom_layer_then_gru(lib):
    inputs = lib.Input(shape=(T, C), name="sequence")
    x = tanh_dense_layer(lib)(5, name="tanh_dense")(inputs)
    return lib.Model(inputs, lib.layers.GRU(H, return_sequences=True, name="gru")(x))


def test_custom_layer_then_gru(rng):
    # Keras infers the custom layer's output shape by calling it on uninitialised arrays: their garbage may be NaN
    with np.errstate(invalid="ignore", over="ignore"):
        model, kmodel = build_both(custom_layer_then_gru, rng)
    assert [w.shape for w in model.get_layer("tanh_dense").weights] == [(C, 5), (5,)]
    actual, expected = predict_both(model, kmodel, features(rng))
    assert actual.shape == (N, T, H)
    assert_close(actual, expected)

