"""rnnkit's Keras-style layers against Keras 3 itself (its NumPy backend) with the same weights.

Each rnnkit layer gets random weights (biases included); ``rnnkit.convert.to_keras_*`` turns them into Keras'
layout and they are set on the matching Keras layer; both run on the same random float32 inputs, and the
outputs must agree to float32 rounding. Masks come from an ``Embedding(mask_zero=True)`` in front, on ids
padded at the end (rnnkit's layers take right-padded masks only). Sequence outputs are compared at every
step, padded ones included: a one-way layer repeats its last valid output there, and with ``go_backwards``
returns the whole padded sequence reversed, as Keras 3 does.

Keras is an optional peer: the module skips when it cannot be imported, unless ``RNNKIT_REQUIRE_KERAS=1``
(CI sets it), which makes a missing Keras an error. Keras' NumPy backend imports jax for some of its ops, so
it needs ``pip install keras jax``.
"""

import pytest

from helpers import import_keras

keras = import_keras()

import numpy as np  # noqa: E402
from numpy.testing import assert_allclose, assert_array_equal  # noqa: E402

import rnnkit  # noqa: E402
from rnnkit import convert  # noqa: E402
from rnnkit import layers as rl  # noqa: E402
from rnnkit.utils import pad_sequences, to_categorical  # noqa: E402

N, T, C, H, V = 5, 7, 4, 6, 11  # batch, steps, features, units, vocabulary (id 0 is padding)
LENGTHS = np.array([7, 4, 1, 6, 0])  # right padding; 0: a sequence of padding only


def assert_close(actual, expected):
    """float32 on both sides, the same products summed in other orders over T steps: ~1e-6 relative."""
    expected = np.asarray(expected)
    assert actual.shape == expected.shape
    assert_allclose(actual, expected, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(expected).max(initial=0))))


# ---- building both sides --------------------------------------------------------------------------------

# cell id -> (rnnkit class, Keras class, shared constructor options)
CELLS = {
    "rnn_tanh": (rl.SimpleRNN, "SimpleRNN", {"activation": "tanh"}),
    "rnn_relu": (rl.SimpleRNN, "SimpleRNN", {"activation": "relu"}),
    "lstm": (rl.LSTM, "LSTM", {}),
    "gru": (rl.GRU, "GRU", {"reset_after": True}),
    "gru_reset_before": (rl.GRU, "GRU", {"reset_after": False}),
}


def randomize(layer, rng, scale=0.5):
    """Gives an rnnkit layer uniform(-scale, scale) values in every weight, biases included."""
    layer.set_weights([rng.uniform(-scale, scale, w.shape).astype(w.dtype) for w in layer.weights])


def keras_weights(layer):
    """A built rnnkit SimpleRNN / LSTM / GRU layer's weights in Keras 3's layout (``rnnkit.convert``)."""
    W = layer.get_weights()
    if isinstance(layer, rl.GRU):
        return list(convert.to_keras_gru(*W, reset_after=layer.reset_after))
    return list((convert.to_keras_lstm if isinstance(layer, rl.LSTM) else convert.to_keras_rnn)(*W))


def recurrent_pair(cell, rng, **options):
    """(rnnkit layer, Keras layer) of ``cell`` for inputs [N, T, C], with the same random weights."""
    cls, keras_name, cell_options = CELLS[cell]
    ours = cls(H, **cell_options, **options)
    ours.ensure_built((None, T, C))
    randomize(ours, rng)
    theirs = getattr(keras.layers, keras_name)(H, **cell_options, **options)
    theirs.build((None, T, C))
    theirs.set_weights(keras_weights(ours))
    return ours, theirs


def embedding_pair(rng, mask_zero=True, output_dim=C):
    ours = rl.Embedding(V, output_dim, mask_zero=mask_zero)
    ours.ensure_built((None, T))
    randomize(ours, rng, scale=1.0)
    theirs = keras.layers.Embedding(V, output_dim, mask_zero=mask_zero)
    theirs.build((None, T))
    theirs.set_weights(ours.get_weights())
    return ours, theirs


def padded_ids(rng, lengths=LENGTHS):
    """ids: [N, T] int32 in [1, V) for each sequence's first lengths[n] steps, 0 (padding) after them."""
    ids = rng.integers(1, V, (len(lengths), T))
    return np.where(np.arange(T) < lengths[:, None], ids, 0).astype(np.int32)


def run_both(ours, theirs, rng, masked):
    """(rnnkit output, Keras output) of the layers on random inputs [N, T, C], or with ``masked`` on the output
    of an Embedding(mask_zero=True) pair over right-padded ids, each side passing its embedding's mask on."""
    if not masked:
        x = rng.standard_normal((N, T, C)).astype(np.float32)
        return ours(x), np.asarray(theirs(x))
    emb, kemb = embedding_pair(rng)
    ids = padded_ids(rng)
    mask, kmask = emb.compute_mask(ids), np.asarray(kemb.compute_mask(ids))
    assert_array_equal(mask, kmask)
    return ours(emb(ids), mask=mask), np.asarray(theirs(kemb(ids), mask=kmask))


def recurrent_cases():
    for cell in CELLS:
        for return_sequences in (True, False):
            for go_backwards in (False, True):
                for masked in (False, True):
                    yield pytest.param(cell, return_sequences, go_backwards, masked, id="-".join(
                        [cell, "seq" if return_sequences else "last", "backwards" if go_backwards else "forwards",
                         "masked" if masked else "unmasked"]))


@pytest.mark.parametrize("cell, return_sequences, go_backwards, masked", list(recurrent_cases()))
def test_recurrent_layer(rng, cell, return_sequences, go_backwards, masked):
    ours, theirs = recurrent_pair(cell, rng, return_sequences=return_sequences, go_backwards=go_backwards)
    actual, expected = run_both(ours, theirs, rng, masked)
    assert_close(actual, expected)


KERAS_ACTIVATIONS = ["tanh", "sigmoid", "hard_sigmoid", "relu", "linear", "elu", "softsign", "softplus", "selu",
                     "leaky_relu"]


def activation_cases():
    """Every Keras activation as ``activation`` and as ``recurrent_activation`` of each layer, the other at its
    default (SimpleRNN has only ``activation``)."""
    for cell in ("rnn_tanh", "lstm", "gru", "gru_reset_before"):
        arguments = ("activation",) if cell.startswith("rnn") else ("activation", "recurrent_activation")
        for argument in arguments:
            for name in KERAS_ACTIVATIONS:
                yield pytest.param(cell, {argument: name}, id=f"{cell}-{argument}-{name}")


@pytest.mark.parametrize("cell, activations", list(activation_cases()))
def test_recurrent_layer_activations(rng, cell, activations):
    """Keras' ``LSTM(activation=..., recurrent_activation=...)`` (and SimpleRNN's, GRU's) with the same weights."""
    options = {k: v for k, v in CELLS[cell][2].items() if k != "activation"}
    cls, keras_name = CELLS[cell][:2]
    ours = cls(H, return_sequences=True, **options, **activations)
    ours.ensure_built((None, T, C))
    randomize(ours, rng)
    theirs = getattr(keras.layers, keras_name)(H, return_sequences=True, **options, **activations)
    theirs.build((None, T, C))
    theirs.set_weights(keras_weights(ours))
    for argument, name in activations.items():
        assert ours.get_config()[argument] == name
    actual, expected = run_both(ours, theirs, rng, masked=True)
    assert_close(actual, expected)


@pytest.mark.parametrize("cell", CELLS)
def test_recurrent_layer_return_state(rng, cell):
    ours, theirs = recurrent_pair(cell, rng, return_sequences=True, return_state=True)
    x = rng.standard_normal((N, T, C)).astype(np.float32)
    actual, expected = ours(x), theirs(x)
    assert len(actual) == len(expected) == (3 if cell == "lstm" else 2)
    for a, e in zip(actual, expected):
        assert_close(a, np.asarray(e))


# ---- Bidirectional --------------------------------------------------------------------------------------

@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
@pytest.mark.parametrize("return_sequences", [True, False], ids=["seq", "last"])
@pytest.mark.parametrize("merge_mode", ["concat", "sum", "ave", "mul"])
@pytest.mark.parametrize("cell", CELLS)
def test_bidirectional(rng, cell, merge_mode, return_sequences, masked):
    forward, _ = recurrent_pair(cell, rng, return_sequences=return_sequences)
    ours = rl.Bidirectional(forward, merge_mode=merge_mode)
    ours.ensure_built((None, T, C))
    randomize(ours, rng)
    cls_name, cell_options = CELLS[cell][1], CELLS[cell][2]
    theirs = keras.layers.Bidirectional(
        getattr(keras.layers, cls_name)(H, return_sequences=return_sequences, **cell_options), merge_mode=merge_mode)
    theirs.build((None, T, C))
    theirs.forward_layer.set_weights(keras_weights(ours.forward_layer))
    theirs.backward_layer.set_weights(keras_weights(ours.backward_layer))
    actual, expected = run_both(ours, theirs, rng, masked)
    assert_close(actual, expected)


# ---- Dense and Embedding --------------------------------------------------------------------------------

@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("rank", [2, 3])
@pytest.mark.parametrize("activation", [None, "linear", "relu", "tanh", "sigmoid", "softmax", "softplus", "elu",
                                        "softsign", "selu", "hard_sigmoid", "leaky_relu"])
def test_dense(rng, activation, rank, use_bias):
    shape = (N, C) if rank == 2 else (N, T, C)
    ours = rl.Dense(H, activation=activation, use_bias=use_bias)
    ours.ensure_built((None, *shape[1:]))
    randomize(ours, rng, scale=1.0)
    theirs = keras.layers.Dense(H, activation=activation, use_bias=use_bias)
    theirs.build((None, *shape[1:]))
    theirs.set_weights(ours.get_weights())  # the same layout: kernel [C, units], bias [units]
    x = (3 * rng.standard_normal(shape)).astype(np.float32)  # both signs and the saturated ends
    assert_close(ours(x), np.asarray(theirs(x)))


@pytest.mark.parametrize("mask_zero", [False, True], ids=["no_mask", "mask_zero"])
def test_embedding(rng, mask_zero):
    ours, theirs = embedding_pair(rng, mask_zero=mask_zero, output_dim=3)
    ids = padded_ids(rng)
    assert_array_equal(ours(ids), np.asarray(theirs(ids)))
    mask = theirs.compute_mask(ids)
    if mask_zero:
        assert_array_equal(ours.compute_mask(ids), np.asarray(mask))
    else:
        assert mask is None and ours.compute_mask(ids) is None


# ---- Sequential: model.predict --------------------------------------------------------------------------

def copy_into_keras(model, kmodel):
    """Sets each Keras layer's weights from the rnnkit layer at the same position."""
    assert len(model.layers) == len(kmodel.layers)
    for ours, theirs in zip(model.layers, kmodel.layers):
        if isinstance(ours, rl.Bidirectional):
            theirs.forward_layer.set_weights(keras_weights(ours.forward_layer))
            theirs.backward_layer.set_weights(keras_weights(ours.backward_layer))
        elif isinstance(ours, rl.Recurrent):
            theirs.set_weights(keras_weights(ours))
        else:
            theirs.set_weights(ours.get_weights())


def predict_both(rng, make_layers, x):
    """rnnkit's and Keras' ``predict(x)`` of ``make_layers(lib)`` (lib: rnnkit.layers or keras.layers)."""
    model = rnnkit.Sequential(make_layers(rl))
    model.build((None, *x.shape[1:]))
    for layer in model.layers:
        randomize(layer, rng)
    kmodel = keras.Sequential([keras.Input(shape=x.shape[1:], dtype=x.dtype), *make_layers(keras.layers)])
    copy_into_keras(model, kmodel)
    return model.predict(x, batch_size=2), kmodel.predict(x, batch_size=2, verbose=0)


def test_sequential_stack_on_sequences(rng):
    def make_layers(lib):
        return [lib.SimpleRNN(H, return_sequences=True), lib.Bidirectional(lib.GRU(H, return_sequences=True)),
                lib.LSTM(H), lib.Dense(3, activation="softmax")]

    x = rng.standard_normal((N, T, C)).astype(np.float32)
    assert_close(*predict_both(rng, make_layers, x))


def test_sequential_stack_on_masked_ids(rng):
    def make_layers(lib):
        return [lib.Embedding(V, C, mask_zero=True),
                lib.Bidirectional(lib.LSTM(H, return_sequences=True), merge_mode="sum"),
                lib.GRU(H, go_backwards=True), lib.Dense(2, activation="sigmoid")]

    assert_close(*predict_both(rng, make_layers, padded_ids(rng)))


def test_sequential_sequence_output_on_masked_ids(rng):
    def make_layers(lib):
        return [lib.Embedding(V, C, mask_zero=True), lib.LSTM(H, return_sequences=True), lib.Dense(3)]

    assert_close(*predict_both(rng, make_layers, padded_ids(rng)))


# ---- rnnkit.utils against keras.utils -------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [
    {}, {"maxlen": 2}, {"maxlen": 5, "padding": "post", "truncating": "post", "value": -1},
    {"dtype": "float32", "value": 0.5}, {"maxlen": 3, "truncating": "post"},
], ids=["default", "maxlen", "post", "float32", "truncating_post"])
def test_pad_sequences_matches_keras(kwargs):
    sequences = [[1], [2, 3], [], [4, 5, 6, 7]]
    actual, expected = pad_sequences(sequences, **kwargs), keras.utils.pad_sequences(sequences, **kwargs)
    assert actual.dtype == expected.dtype
    assert_array_equal(actual, expected)


@pytest.mark.parametrize("x, num_classes", [
    ([0, 2, 1], None), ([[1], [3]], None), ([[0, 1], [2, 2]], 4), ([1.0, 0.0], 3), ([], 2),
], ids=["ids", "column", "2d", "whole_floats", "empty"])
def test_to_categorical_matches_keras(x, num_classes):
    # lists: Keras' NumPy path, float64 as rnnkit's (a NumPy array on Keras' NumPy backend counts as a tensor and
    # gets its one_hot, in float32 on that backend only; the values are the same)
    actual, expected = to_categorical(x, num_classes), keras.utils.to_categorical(x, num_classes)
    assert actual.dtype == expected.dtype
    assert_array_equal(actual, expected)
