"""The layers the tape differentiates: merging (Concatenate, Add, Subtract, Multiply, Average, Maximum, Minimum,
Dot), reshaping (RepeatVector, Flatten, Reshape, Permute), Lambda, Identity, OpLayer and TimeDistributed.

Forward against Keras 3 itself (its NumPy backend), masks included; whole-model gradients through each layer against
central finite differences in float64; functional models with several inputs; configurations through JSON and
back; and the errors a user meets first.

Keras is an optional peer, as in test_keras_parity.py: the Keras tests skip when it cannot be imported, unless
``RNNKIT_REQUIRE_KERAS=1`` (CI sets it), which makes a missing Keras an error; the other tests run either way.
"""

import json

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal


import rnnkit  # noqa: E402
from rnnkit import convert, ops  # noqa: E402
from rnnkit import layers as L  # noqa: E402
from rnnkit.engine.functional import flatten  # noqa: E402
from rnnkit.engine.tape import Tensor, Variable, recording  # noqa: E402

from helpers import check_model_gradients, import_keras  # noqa: E402

F64 = "float64"
N, T, C, H, V = 3, 4, 5, 6, 9  # batch, steps, features, units, vocabulary (id 0 is padding)


@pytest.fixture(scope="module")
def keras():
    """Keras 3 on its NumPy backend (skips without it, unless RNNKIT_REQUIRE_KERAS=1)."""
    return import_keras()


def assert_close32(actual, expected):
    """float32 on both sides, the same operations in maybe another order: ~1e-6 relative."""
    expected = np.asarray(expected)
    assert np.shape(actual) == expected.shape and np.asarray(actual).dtype == expected.dtype
    assert_allclose(actual, expected, rtol=1e-5, atol=1e-6 * max(1.0, float(np.abs(expected).max(initial=0))))


def check_gradients(model, x, rng, entries=12):
    return check_model_gradients(model, x, rng, entries)


class Affine(L.Layer):
    """A user's layer: tanh(x @ w + b), differentiated by the tape."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], self.units), name="w")
        self.b = self.add_weight(shape=(self.units,), initializer="random_normal", name="b")

    def call(self, x):
        return ops.tanh(x @ self.w + self.b)


# ---- forward against Keras ------------------------------------------------------------------------------

# (class name, constructor arguments, input shapes)
MERGES = [
    ("Concatenate", {}, [(N, T, 3), (N, T, 5)]),
    ("Concatenate", {"axis": 1}, [(N, 2, C), (N, 4, C), (N, 1, C)]),
    ("Concatenate", {"axis": 0}, [(N, C), (2, C)]),
    ("Concatenate", {}, [(N, C)]),
    ("Add", {}, [(N, T, C)] * 3),
    ("Add", {}, [(N, T, C), (N, 1, C)]),
    ("Add", {}, [(N, C), (N, T, C)]),
    ("Add", {}, [(N, T, C)]),
    ("Subtract", {}, [(N, T, C)] * 2),
    ("Multiply", {}, [(N, T, C)] * 3),
    ("Average", {}, [(N, T, C)] * 3),
    ("Average", {}, [(N, T, 1), (N, T, C)]),
    ("Maximum", {}, [(N, T, C)] * 3),
    ("Minimum", {}, [(N, T, C)] * 3),
    ("Dot", {"axes": 2}, [(N, T, C), (N, 2, C)]),
    ("Dot", {"axes": (1, 1)}, [(N, T, C), (N, T, H)]),
    ("Dot", {"axes": -1}, [(N, C), (N, C)]),
    ("Dot", {"axes": (2, 1)}, [(N, T, C), (N, C, 2)]),
    ("Dot", {"axes": (1, 2)}, [(N, C), (N, T, C)]),
    ("Dot", {"axes": (3, 1)}, [(N, 2, T, C), (N, C, 2, 3)]),
    ("Dot", {"axes": (1, 3)}, [(N, C, 2), (N, T, 2, C)]),
    ("Dot", {"axes": 1, "normalize": True}, [(N, C), (N, C)]),
    ("Dot", {"axes": (1, 2), "normalize": True}, [(N, T, C), (N, 2, T)]),
]


@pytest.mark.parametrize("name, options, shapes", MERGES,
                         ids=[f"{n}-{o}-{len(s)}x{len(s[-1])}d" for n, o, s in MERGES])
def test_merge_layers_equal_keras(keras, rng, name, options, shapes):
    inputs = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    ours = getattr(L, name)(**options)(inputs)
    theirs = getattr(keras.layers, name)(**options)(inputs)
    assert_close32(ours, theirs)
    shortcut = getattr(L, name.lower())(inputs, **options)  # the functional shortcut: the same layer
    assert_array_equal(shortcut, ours)


def test_dot_of_a_zero_sample_normalized_is_zero_as_in_keras(keras, rng):
    x, y = rng.standard_normal((N, C)).astype(np.float32), rng.standard_normal((N, C)).astype(np.float32)
    x[1] = 0
    ours = L.Dot(1, normalize=True)([x, y])
    assert_close32(ours, keras.layers.Dot(1, normalize=True)([x, y]))
    assert ours[1, 0] == 0


def test_merge_layers_cast_to_their_dtype_as_keras(keras, rng):
    x = rng.standard_normal((N, C))  # float64
    for name in ("Add", "Concatenate"):
        assert getattr(L, name)()([x, x]).dtype == getattr(keras.layers, name)()([x, x]).dtype == np.float32
        assert getattr(L, name)(dtype=F64)([x, x]).dtype == np.float64
    ids = rng.integers(0, 5, (N, C)).astype(np.int32)
    assert L.Concatenate()([ids, ids]).dtype == keras.layers.Concatenate()([ids, ids]).dtype == np.int32


def twin_models(K, merge, mask_b, recurrent):
    """ids_a, ids_b: [N, T] -> Embedding each (a's with mask_zero; b's as ``mask_b``) -> ``merge`` -> an LSTM over
    the merged steps (reads the merged mask) when ``recurrent``, built with K = rnnkit or keras."""
    ids_a, ids_b = K.Input(shape=(T,), dtype="int32"), K.Input(shape=(T,), dtype="int32")
    ea = K.layers.Embedding(V, C, mask_zero=True, name="emb_a")(ids_a)
    eb = K.layers.Embedding(V, C, mask_zero=mask_b, name="emb_b")(ids_b)
    out = getattr(K.layers, merge)(name="merge")([ea, eb])
    if recurrent:
        out = K.layers.LSTM(H, return_sequences=True, name="lstm")(out)
    return K.Model([ids_a, ids_b], out)


def copy_weights(ours, theirs):
    """Every rnnkit layer's weights onto the Keras layer of the same name (LSTMs converted to Keras' layout)."""
    for layer in ours.layers:
        if layer.weights:
            weights = layer.get_weights()
            if isinstance(layer, L.LSTM):
                weights = list(convert.to_keras_lstm(*weights))
            theirs.get_layer(layer.name).set_weights(weights)


def right_padded_ids(rng, lengths):
    ids = rng.integers(1, V, (len(lengths), T))
    return np.where(np.arange(T) < np.asarray(lengths)[:, None], ids, 0).astype(np.int32)


@pytest.mark.parametrize("merge", ["Multiply", "Maximum", "Minimum", "Add", "Subtract", "Average", "Concatenate"])
@pytest.mark.parametrize("mask_b", [True, False], ids=["both_masked", "one_masked"])
@pytest.mark.parametrize("recurrent", [False, True], ids=["merge", "merge_lstm"])
def test_masked_merges_equal_keras(keras, rng, merge, mask_b, recurrent):
    """Multiply, Maximum and Minimum read the masks in their values (Keras 3); every merge's output mask (the OR, or
    None; Concatenate's own) reaches the LSTM after it."""
    ours, theirs = twin_models(rnnkit, merge, mask_b, recurrent), twin_models(keras, merge, mask_b, recurrent)
    for layer in ours.layers:
        if layer.weights:
            layer.set_weights([rng.uniform(-1, 1, w.shape) for w in layer.weights])
    copy_weights(ours, theirs)
    ids = [right_padded_ids(rng, [4, 2, 0]), right_padded_ids(rng, [3, 3, 1])]
    assert_close32(ours.predict(ids), theirs.predict(ids, verbose=0))


@pytest.mark.parametrize("merge, options", [("Add", {}), ("Maximum", {}), ("Concatenate", {}),
                                            ("Concatenate", {"axis": 1}), ("Dot", {"axes": 2})])
def test_compute_mask_equals_keras(keras, rng, merge, options):
    xs = [rng.standard_normal((N, T, C)).astype(np.float32) for _ in range(2)]
    masks = [rng.random((N, T)) > 0.4, rng.random((N, T)) > 0.4]
    for pair in (masks, [masks[0], None], [None, None]):
        ours = getattr(L, merge)(**options).compute_mask(xs, pair)
        theirs = getattr(keras.layers, merge)(**options).compute_mask(xs, pair)
        assert (ours is None) == (theirs is None)
        if ours is not None:
            assert_array_equal(ours, theirs)


RESHAPES = [
    ("RepeatVector", {"n": 3}, (N, C)),
    ("Flatten", {}, (N, T, C)),
    ("Flatten", {}, (N, 2, T, C)),
    ("Flatten", {}, (N,)),
    ("Flatten", {"data_format": "channels_first"}, (N, 2, T, C)),
    ("Reshape", {"target_shape": (-1, 2)}, (N, T, C * 2)),
    ("Reshape", {"target_shape": (2, 5, 2)}, (N, T, C)),
    ("Reshape", {"target_shape": (20,)}, (N, T, C)),
    ("Permute", {"dims": (2, 1)}, (N, T, C)),
    ("Permute", {"dims": (3, 1, 2)}, (N, 2, T, C)),
]


@pytest.mark.parametrize("name, options, shape", RESHAPES, ids=[f"{n}-{o}-{len(s)}d" for n, o, s in RESHAPES])
def test_reshaping_layers_equal_keras(keras, rng, name, options, shape):
    x = rng.standard_normal(shape).astype(np.float32)
    layer = getattr(L, name)(**options)
    ours = layer(x)
    assert_array_equal(ours, getattr(keras.layers, name)(**options)(x))
    assert layer.compute_output_shape((None, *shape[1:])) == (None, *ours.shape[1:])


def test_lambda_and_identity_equal_keras(keras, rng):
    x = rng.standard_normal((N, T, C)).astype(np.float32)
    ours = L.Lambda(lambda t, scale: ops.tanh(t) * scale + t[:, :1], arguments={"scale": 2.0})(x)
    theirs = keras.layers.Lambda(lambda t, scale: keras.ops.tanh(t) * scale + t[:, :1], arguments={"scale": 2.0})(x)
    assert_close32(ours, theirs)
    assert_array_equal(L.Identity()(x), keras.layers.Identity()(x))
    assert L.Identity()(x.astype(np.float64)).dtype == keras.layers.Identity()(x.astype(np.float64)).dtype


@pytest.mark.parametrize("shape", [(N, T, C), (N, T, 2, C)], ids=["3d", "4d"])
def test_time_distributed_dense_equals_keras(keras, rng, shape):
    x = rng.standard_normal(shape).astype(np.float32)
    ours = L.TimeDistributed(L.Dense(H, activation="tanh"))
    ours(x)
    ours.set_weights([rng.uniform(-1, 1, w.shape) for w in ours.weights])
    theirs = keras.layers.TimeDistributed(keras.layers.Dense(H, activation="tanh"))
    theirs.build((None, *shape[1:]))
    theirs.set_weights(ours.get_weights())
    assert_close32(ours(x), theirs(x))


def test_time_distributed_masks_pass_through_as_in_keras(keras, rng):
    """Embedding(mask_zero) -> TimeDistributed(Dense) -> LSTM: the LSTM reads the embedding's mask."""
    def build(K):
        ids = K.Input(shape=(T,), dtype="int32")
        x = K.layers.Embedding(V, C, mask_zero=True, name="emb")(ids)
        x = K.layers.TimeDistributed(K.layers.Dense(H, name="dense"), name="td")(x)
        return K.Model(ids, K.layers.LSTM(4, name="lstm")(x))
    ours, theirs = build(rnnkit), build(keras)
    for layer in ours.layers:
        if layer.weights:
            layer.set_weights([rng.uniform(-1, 1, w.shape) for w in layer.weights])
    copy_weights(ours, theirs)
    ids = right_padded_ids(rng, [4, 1, 2])
    assert_close32(ours.predict(ids), theirs.predict(ids, verbose=0))


def test_sequential_autoencoder_equals_keras(keras, rng):
    """The classic sequence autoencoder, as a Sequential: LSTM -> RepeatVector -> LSTM -> TimeDistributed(Dense),
    then a Lambda, a Reshape and a Flatten."""
    def build(K):
        return K.Sequential([K.Input(shape=(T, C)), K.layers.LSTM(H, name="enc"), K.layers.RepeatVector(T),
                             K.layers.LSTM(H, return_sequences=True, name="dec"),
                             K.layers.TimeDistributed(K.layers.Dense(C, name="dense"), name="td"),
                             K.layers.Lambda(lambda t: t * 2.0), K.layers.Reshape((-1, 2 * C)), K.layers.Flatten()])
    ours, theirs = build(rnnkit), build(keras)
    for layer in ours.layers:
        if layer.weights:
            layer.set_weights([rng.uniform(-1, 1, w.shape) for w in layer.weights])
    copy_weights(ours, theirs)
    x = rng.standard_normal((N, T, C)).astype(np.float32)
    assert_close32(ours.predict(x), theirs.predict(x, verbose=0))


# ---- masks (rnnkit's own tensors) -------------------------------------------------------------------------

def test_merge_output_masks_on_tensors(rng):
    a, b = rng.standard_normal((N, T, C)), rng.standard_normal((N, T, C))
    ma, mb = rng.random((N, T)) > 0.5, rng.random((N, T)) > 0.5
    ta, tb, tc = Tensor(a, mask=ma), Tensor(b, mask=mb), Tensor(b)
    assert_array_equal(L.Add()([ta, tb])._keras_mask, ma | mb)
    assert L.Add()([ta, tc])._keras_mask is None  # an input without a mask: none (Keras)
    assert_array_equal(L.Concatenate()([ta, tc])._keras_mask, np.ones((N, T), bool))
    assert_array_equal(L.Concatenate(axis=1)([ta, tb])._keras_mask, np.concatenate([ma, mb], axis=1))
    assert L.Dot(axes=2)([ta, tb])._keras_mask is None
    # a mask passed to the call replaces the inputs' own
    assert_array_equal(L.Maximum()([ta, tb], mask=[mb, mb])._keras_mask, mb)
    # Multiply: a masked value counts as 1, a step masked everywhere is 0
    out = L.Multiply(dtype=F64)([ta, tb]).value
    expected = np.where(ma[..., None], a, 1) * np.where(mb[..., None], b, 1) * (ma | mb)[..., None]
    assert_allclose(out, expected, rtol=1e-15)


def test_identity_time_distributed_and_lambda_masks(rng):
    x = Tensor(rng.standard_normal((N, T, C)), mask=rng.random((N, T)) > 0.5)
    assert_array_equal(L.Identity(dtype=F64)(x)._keras_mask, x._keras_mask)
    assert_array_equal(L.Identity()(x)._keras_mask, x._keras_mask)  # cast to float32, mask kept
    assert_array_equal(L.TimeDistributed(L.Dense(2))(x)._keras_mask, x._keras_mask)
    assert L.Lambda(lambda t: t * 2)(x)._keras_mask is None  # no mask= argument: none, as in Keras
    shifted = L.Lambda(lambda t: t * 2, mask=lambda t, m: ~m)(x)
    assert_array_equal(shifted._keras_mask, ~x._keras_mask)
    assert L.Flatten()(x)._keras_mask is None


# ---- gradients --------------------------------------------------------------------------------------------

def two_sequences():
    a, b = rnnkit.Input(shape=(T, 3), dtype=F64), rnnkit.Input(shape=(T, 2), dtype=F64)
    return [a, b], L.Dense(C, activation="tanh", dtype=F64)(a), L.Dense(C, dtype=F64)(b)


MERGE_GRADIENTS = {
    "concatenate": lambda x, y: L.Concatenate(dtype=F64)([x, y, x]),
    "concatenate_time": lambda x, y: L.Concatenate(axis=1, dtype=F64)([x, y]),
    "add": lambda x, y: L.Add(dtype=F64)([x, y, x]),
    "add_broadcast": lambda x, y: L.Add(dtype=F64)([x[:, :1], y]),
    "subtract": lambda x, y: L.Subtract(dtype=F64)([x, y]),
    "multiply": lambda x, y: L.Multiply(dtype=F64)([x, y, y]),
    "average": lambda x, y: L.Average(dtype=F64)([x, y]),
    "maximum": lambda x, y: L.Maximum(dtype=F64)([x, y, x * 0.5]),
    "minimum": lambda x, y: L.Minimum(dtype=F64)([x, y]),
    "dot": lambda x, y: L.Dot(axes=2, dtype=F64)([x, y]),
    "dot_axes": lambda x, y: L.Dot(axes=(1, 1), dtype=F64)([x, y]),
    "dot_normalize": lambda x, y: L.Dot(axes=-1, normalize=True, dtype=F64)([x, y]),
    "dot_2d": lambda x, y: L.Dot(axes=1, normalize=True, dtype=F64)([x[:, 0], y[:, -1]]),
}


@pytest.mark.parametrize("case", sorted(MERGE_GRADIENTS))
def test_merge_gradients(rng, case):
    inputs, x, y = two_sequences()
    out = L.Dense(2, dtype=F64)(MERGE_GRADIENTS[case](x, y))
    model = rnnkit.Model(inputs, out)
    check_gradients(model, [rng.standard_normal((N, T, 3)), rng.standard_normal((N, T, 2))], rng)


@pytest.mark.parametrize("merge", ["Multiply", "Maximum", "Minimum", "Concatenate", "Add"])
def test_masked_merge_gradients(rng, merge):
    """Embeddings with masks -> a merge that reads them -> LSTM over the merged mask: every gradient."""
    ids_a, ids_b = rnnkit.Input(shape=(T,), dtype="int64"), rnnkit.Input(shape=(T,), dtype="int64")
    ea = L.Embedding(V, C, mask_zero=True, embeddings_initializer="random_normal", dtype=F64)(ids_a)
    eb = L.Embedding(V, C, mask_zero=True, embeddings_initializer="random_normal", dtype=F64)(ids_b)
    merged = getattr(L, merge)(dtype=F64)([ea, eb])
    model = rnnkit.Model([ids_a, ids_b], L.LSTM(3, dtype=F64)(merged))
    ids = [right_padded_ids(rng, [4, 2, 1]).astype(np.int64), right_padded_ids(rng, [1, 3, 0]).astype(np.int64)]
    grads = check_gradients(model, ids, rng, entries=20)
    assert all(np.abs(g).max() > 0 for g in grads[:2])


RESHAPE_GRADIENTS = {
    "flatten": lambda x: L.Flatten(dtype=F64)(x),
    "flatten_channels_first": lambda x: L.Flatten(data_format="channels_first", dtype=F64)(x),
    "reshape": lambda x: L.LSTM(3, dtype=F64)(L.Reshape((-1, 2), dtype=F64)(x)),
    "permute": lambda x: L.LSTM(3, dtype=F64)(L.Permute((2, 1), dtype=F64)(x)),
    "repeat_vector": lambda x: L.LSTM(3, return_sequences=True, dtype=F64)(
        L.RepeatVector(3, dtype=F64)(L.LSTM(4, dtype=F64)(x))),
    "identity": lambda x: L.Identity(dtype=F64)(x),
    "lambda": lambda x: L.Lambda(lambda t, scale: ops.tanh(t) * scale + t[:, :1], arguments={"scale": 2.0},
                                 dtype=F64)(x),
    "time_distributed_dense": lambda x: L.TimeDistributed(L.Dense(3, activation="tanh", dtype=F64))(x),
    "time_distributed_user_layer": lambda x: L.TimeDistributed(Affine(3, dtype=F64))(x),
    "time_distributed_lstm": lambda x: L.TimeDistributed(L.LSTM(3, dtype=F64))(
        L.Reshape((T, 2, C), dtype=F64)(L.Concatenate(dtype=F64)([x, x * 2.0]))),
    "ops": lambda x: ops.concatenate([x[:, -1], ops.sum(x * x, axis=1)], axis=-1) + 1.0,
}


@pytest.mark.parametrize("case", sorted(RESHAPE_GRADIENTS))
def test_reshaping_core_and_wrapper_gradients(rng, case):
    inp = rnnkit.Input(shape=(T, 3), dtype=F64)
    x = L.Dense(C, activation="tanh", dtype=F64)(inp)
    model = rnnkit.Model(inp, L.Dense(2, dtype=F64)(RESHAPE_GRADIENTS[case](x)))
    check_gradients(model, rng.standard_normal((N, T, 3)), rng)


def test_time_distributed_shares_the_inner_layers_weights(rng):
    dense = L.Dense(3, dtype=F64)
    td = L.TimeDistributed(dense)
    x = rng.standard_normal((N, T, C))
    y = td(x)
    assert td.weights[0] is dense.weights[0] and td.weight_names == ["kernel", "bias"]
    assert td.dtype == F64 and len(td.trainable_weights) == 2
    assert_allclose(y, np.stack([dense(x[:, t]) for t in range(T)], axis=1), rtol=1e-14)
    td.set_weights([np.ones_like(w) for w in td.weights])
    assert_array_equal(dense.weights[0], 1)
    inp = rnnkit.Input(shape=(None, C), dtype=F64)
    model = rnnkit.Model(inp, td(inp))
    assert len(model.weights) == 2  # one set of arrays, not two
    with recording():
        out = td(Tensor(x))
    assert out.node is not None


# ---- functional models -------------------------------------------------------------------------------------

def test_functional_model_with_several_inputs_and_merges(rng):
    """Two LSTM encoders -> Concatenate, Add and Dot of their codes -> one head: the values against the layers
    run by hand, the gradients against finite differences, and a training step."""
    a, b = rnnkit.Input(shape=(None, 3), dtype=F64, name="a"), rnnkit.Input(shape=(None, 2), dtype=F64, name="b")
    ha, hb = L.LSTM(4, dtype=F64, name="enc_a")(a), L.LSTM(4, dtype=F64, name="enc_b")(b)
    joined = L.concatenate([ha, hb], dtype=F64, name="joined")
    summed = L.add([ha, hb], dtype=F64)
    similarity = L.dot([ha, hb], axes=1, normalize=True, dtype=F64)
    assert joined.shape == (None, 8) and summed.shape == (None, 4) and similarity.shape == (None, 1)
    out = L.Dense(2, dtype=F64, name="head")(L.Concatenate(dtype=F64)([joined, summed, similarity]))
    model = rnnkit.Model([a, b], out)
    xa, xb = rng.standard_normal((N, 5, 3)), rng.standard_normal((N, 2, 2))
    pa, pb = model.get_layer("enc_a")(xa), model.get_layer("enc_b")(xb)
    cos = (pa * pb).sum(-1, keepdims=True) / np.linalg.norm(pa, axis=-1, keepdims=True) / np.linalg.norm(
        pb, axis=-1, keepdims=True)
    expected = model.get_layer("head")(np.concatenate([pa, pb, pa + pb, cos], axis=-1))
    assert_allclose(model.predict([xa, xb]), expected, rtol=1e-12)
    check_gradients(model, [xa, xb], rng)
    model.compile(optimizer="sgd", loss="mse")
    y = rng.standard_normal((N, 2))
    before = model.evaluate([xa, xb], y)
    for _ in range(5):
        model.train_on_batch([xa, xb], y)
    assert model.evaluate([xa, xb], y) < before


def test_lambda_output_shape():
    assert L.Lambda(lambda t: t[:, -1]).compute_output_shape((None, None, C)) == (None, C)
    assert L.Lambda(lambda t: [t, t[:, 0]]).compute_output_shape((None, T, C)) == [(None, T, C), (None, C)]
    assert L.Lambda(lambda t: t, output_shape=(2, 3)).compute_output_shape((7, 6)) == (7, 2, 3)
    assert L.Lambda(lambda t: t, output_shape=lambda s: (s[0], 1)).compute_output_shape((None, 6)) == (None, 1)


def test_symbolic_shapes_of_the_layers():
    x = rnnkit.Input(shape=(None, C))
    v = rnnkit.Input(shape=(C,))
    assert L.RepeatVector(3)(v).shape == (None, 3, C)
    assert L.Flatten()(rnnkit.Input(shape=(T, C))).shape == (None, T * C)
    assert L.Flatten()(x).shape == (None, None)
    assert L.Reshape((-1, 1))(x).shape == (None, None, 1)
    assert L.Permute((2, 1))(x).shape == (None, C, None)
    assert L.TimeDistributed(L.Dense(2))(x).shape == (None, None, 2)
    assert L.Concatenate(axis=1)([x, x]).shape == (None, None, C)
    assert L.Dot(axes=2)([x, x]).shape == (None, None, None)
    assert L.Identity()(x).shape == (None, None, C)
    op = x[:, -1]
    assert op.shape == (None, C) and isinstance(op.node.layer, L.OpLayer) and op.node.layer.name.startswith("take")


# ---- configurations -------------------------------------------------------------------------------------

def _pair(x):
    return [x, x]


# (make the layer, its input from x: [N, T, 2])
CONFIGURED = [
    (lambda: L.Concatenate(axis=1, name="c"), _pair), (lambda: L.Add(), _pair), (lambda: L.Subtract(dtype=F64), _pair),
    (lambda: L.Multiply(), _pair), (lambda: L.Average(), _pair), (lambda: L.Maximum(), _pair),
    (lambda: L.Minimum(trainable=False), _pair), (lambda: L.Dot(axes=(1, 2)), lambda x: [x, np.swapaxes(x, 1, 2)]),
    (lambda: L.Dot(axes=-1, normalize=True), _pair), (lambda: L.RepeatVector(2), lambda x: x[:, 0]),
    (lambda: L.Flatten(), None), (lambda: L.Flatten(data_format="channels_first"), None),
    (lambda: L.Reshape((-1, 2)), None), (lambda: L.Permute((2, 1)), None), (lambda: L.Identity(), None),
    (lambda: L.TimeDistributed(L.Dense(3, activation="tanh")), None),
    (lambda: L.TimeDistributed(L.LSTM(2, return_sequences=True)), lambda x: x[:, :, None]),
]


def json_round_trip(layer):
    data = L.serialize(layer)
    copy = L.deserialize(json.loads(json.dumps(data)))
    assert type(copy) is type(layer) and L.serialize(copy) == data
    return copy


@pytest.mark.parametrize("make, inputs", CONFIGURED, ids=[type(make()).__name__ for make, _ in CONFIGURED])
def test_config_round_trip(rng, make, inputs):
    layer = make()
    copy = json_round_trip(layer)
    x = rng.standard_normal((N, T, 2)).astype(np.float32)
    x = x if inputs is None else inputs(x)
    out = layer(x)
    copy(x)
    copy.set_weights(layer.get_weights())
    assert_array_equal(copy(x), out)


def test_keras_config_keys():
    assert set(L.Concatenate().get_config()) == {"name", "dtype", "trainable", "axis"}
    assert L.Dot(axes=(1, 2), normalize=True).get_config()["axes"] == [1, 2]
    assert {"axes", "normalize"} <= set(L.Dot(1).get_config())
    assert L.Flatten().get_config()["data_format"] == "channels_last"
    assert L.Reshape((2, -1)).get_config()["target_shape"] == [2, -1]
    assert L.Permute((2, 1)).get_config()["dims"] == [2, 1]
    assert L.RepeatVector(4).get_config()["n"] == 4
    inner = L.Dense(3, name="inner")
    assert L.TimeDistributed(inner).get_config()["layer"] == L.serialize(inner)


def test_op_layer_config_round_trip(rng):
    a, b = rnnkit.Input(shape=(T, C), dtype=F64), rnnkit.Input(shape=(T, C), dtype=F64)
    outs = [a[:, -1], a[..., 1:3], a * 2.0, ops.concatenate([a, b], axis=1), ops.reshape(a, (-1, T * C)),
            ops.cast(a, np.float32), ops.sum(a, axis=(1, 2), keepdims=True), a[:, np.array([0, 2])],
            ops.transpose(b, (0, 2, 1)), ops.maximum(a, b)]
    xa, xb = rng.standard_normal((N, T, C)), rng.standard_normal((N, T, C))
    for out in outs:
        layer = out.node.layer
        assert isinstance(layer, L.OpLayer)
        copy = json_round_trip(layer)
        values = [xa if t is a else xb for t in out.node.inputs]
        assert_array_equal(copy(values), layer(values))
    config = L.serialize(outs[0].node.layer)["config"]
    assert config["function"] == "take_slice"
    assert config["args"][0] == {"class_name": "__keras_tensor__", "config": {"shape": [None, T, C], "dtype": F64}}
    assert config["args"][1]["class_name"] == "__tuple__"


def test_op_layer_that_no_configuration_can_hold_raises_at_get_config():
    x = rnnkit.Input(shape=(C,))
    weight = Variable(np.ones((C, 2), np.float32), "w")
    y = ops.matmul(x, weight)
    assert y.shape == (None, 2)
    with pytest.raises(TypeError, match="argument 1 of rnnkit.ops.matmul is a Variable"):
        y.node.layer.get_config()
    with pytest.raises(ValueError, match="not a public rnnkit.ops function"):
        L.OpLayer(lambda t: t, [x]).get_config()
    for bad in ({"function": "system"}, {"function": "__import__"}, {"function": None}):
        with pytest.raises(ValueError, match="function: expected the name of an rnnkit.ops function"):
            L.deserialize({"class_name": "OpLayer", "config": bad})
    with pytest.raises(ValueError, match="unknown entry class"):
        L.deserialize({"class_name": "OpLayer", "config": {"function": "add", "args": [{"class_name": "os.system",
                                                                                          "config": {}}]}})
    with pytest.raises(ValueError, match="numeric dtype"):
        L.deserialize({"class_name": "OpLayer", "config": {"function": "add", "args": [
            {"class_name": "__numpy__", "config": {"value": [1], "dtype": "object"}}]}})


def test_lambda_config_names_the_function_and_is_never_rebuilt():
    def double(t):
        return t * 2

    config = L.Lambda(double, output_shape=(3,), arguments={"k": (1, 2)}).get_config()
    assert config["function"]["class_name"] == "function" and config["function"]["config"].endswith("double")
    assert config["output_shape"] == [3] and config["arguments"]["k"]["class_name"] == "__tuple__"
    assert L.Lambda(lambda t: t).get_config()["function"]["class_name"] == "__lambda__"
    json.dumps(config)
    with pytest.raises(ValueError, match="unknown layer class 'Lambda'"):
        L.deserialize({"class_name": "Lambda", "config": config})
    with pytest.raises(ValueError, match="never loads from data"):
        L.Lambda.from_config(config)
    with pytest.raises(TypeError, match="arguments"):
        L.Lambda(double, arguments={"w": object()}).get_config()


# ---- errors -----------------------------------------------------------------------------------------------

def test_merge_errors(rng):
    x, y = rng.standard_normal((N, T, C)), rng.standard_normal((N, T, C + 1))
    with pytest.raises(ValueError, match="inputs: Add layer .* takes a list of inputs, got ndarray"):
        L.Add()(x)
    with pytest.raises(ValueError, match="takes at least 1 input, got 0"):
        L.Concatenate()([])
    with pytest.raises(ValueError, match="takes exactly 2 inputs, got 3"):
        L.Subtract()([x, x, x])
    with pytest.raises(ValueError, match="takes exactly 2 inputs, got 1"):
        L.Dot(axes=1)([x])
    with pytest.raises(ValueError, match=r"incompatible shapes \[\(3, 4, 5\), \(3, 4, 6\)\]"):
        L.Add()([x, y])
    with pytest.raises(ValueError, match="one batch size"):
        L.Maximum()([x, x[:2]])
    with pytest.raises(ValueError, match="matching shapes except along the axis 1"):
        L.Concatenate(axis=1)([x, y])
    with pytest.raises(ValueError, match="same number of axes"):
        L.Concatenate()([x, x[:, 0]])
    with pytest.raises(ValueError, match="other than the batch axis"):
        L.Dot(axes=0)([x, x])
    with pytest.raises(ValueError, match="differ in size"):
        L.Dot(axes=2)([x, y])
    with pytest.raises(ValueError, match="at least 2 axes"):
        L.Dot(axes=-1)([x[:, 0, 0], x[:, 0, 0]])
    with pytest.raises(TypeError, match="axes"):
        L.Dot(axes="last")
    with pytest.raises(ValueError, match="axes"):
        L.Dot(axes=(1, 2, 3))
    with pytest.raises(TypeError, match="axis"):
        L.Concatenate(axis=1.0)
    with pytest.raises(ValueError, match="mask: .* one mask"):
        L.Add()([x, x], mask=[None])
    with pytest.raises(ValueError, match="mask: .*without the last axis"):
        L.Multiply()([Tensor(x, mask=np.ones((N, T + 1), bool)), Tensor(x, mask=np.ones((N, T + 1), bool))])


def test_merge_errors_at_graph_construction():
    a, b = rnnkit.Input(shape=(T, C)), rnnkit.Input(shape=(T, C + 1))
    with pytest.raises(ValueError, match="called on symbolic inputs.*matching shapes except along the axis 1"):
        L.Concatenate(axis=1)([a, b])
    with pytest.raises(ValueError, match="called on symbolic inputs.*incompatible shapes"):
        L.Add()([a, b])
    with pytest.raises(ValueError, match="called on symbolic inputs.*exactly 2 inputs"):
        L.Subtract()([a])
    with pytest.raises(ValueError, match="called on symbolic inputs.*differ in size"):
        L.dot([a, b], axes=2)


def test_reshaping_errors(rng):
    x = rng.standard_normal((N, T, C))
    with pytest.raises(ValueError, match="n: expected a positive integer"):
        L.RepeatVector(0)
    with pytest.raises(TypeError, match="n: expected an integer"):
        L.RepeatVector(2.0)
    with pytest.raises(ValueError, match=r"x: RepeatVector .* expects inputs \[N, C\], got shape \(3, 4, 5\)"):
        L.RepeatVector(2)(x)
    with pytest.raises(ValueError, match="at most one -1"):
        L.Reshape((-1, -1))
    with pytest.raises(ValueError, match="non-negative"):
        L.Reshape((-2, 10))
    with pytest.raises(TypeError, match="target_shape: expected a tuple of integers"):
        L.Reshape(20)
    with pytest.raises(ValueError, match=r"cannot reshape samples of shape \(4, 5\) \(20 values\) to \(7,\)"):
        L.Reshape((7,))(x)
    with pytest.raises(ValueError, match="no size for -1 fits"):
        L.Reshape((-1, 3))(x)
    with pytest.raises(ValueError, match="dims: expected a permutation"):
        L.Permute((1, 1))
    with pytest.raises(TypeError, match="dims"):
        L.Permute(2)
    with pytest.raises(ValueError, match=r"x: Permute\(2, 1\) .* 3 axes"):
        L.Permute((2, 1))(x[..., None])
    with pytest.raises(ValueError, match="data_format"):
        L.Flatten(data_format="nchw")
    with pytest.raises(ValueError, match="called on symbolic inputs.*cannot reshape"):
        L.Reshape((7,))(rnnkit.Input(shape=(T, C)))


def test_core_and_wrapper_errors(rng):
    with pytest.raises(TypeError, match="function: expected a callable"):
        L.Lambda("tanh")
    with pytest.raises(TypeError, match="arguments: expected a dict"):
        L.Lambda(ops.tanh, arguments=[1])
    with pytest.raises(ValueError, match="output_shape"):
        L.Lambda(ops.tanh, output_shape="3")
    with pytest.raises(TypeError, match="op: expected an rnnkit.ops function"):
        L.OpLayer("add")
    with pytest.raises(TypeError, match="layer: TimeDistributed wraps an rnnkit layer, got str"):
        L.TimeDistributed("dense")
    with pytest.raises(ValueError, match=r"x: TimeDistributed .* at least 3 axes, got shape \(3, 5\)"):
        L.TimeDistributed(L.Dense(2))(rng.standard_normal((N, C)))
    with pytest.raises(ValueError, match="called on symbolic inputs.*at least 3 axes"):
        L.TimeDistributed(L.Dense(2))(rnnkit.Input(shape=(C,)))
    with pytest.raises(TypeError, match="unexpected keyword argument 'axes'"):
        L.Add(axes=1)
