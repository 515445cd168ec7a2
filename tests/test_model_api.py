"""Functional and subclassed models and custom layers: whole-model gradients against finite differences in
float64, training equal to Sequential's, and the errors a user meets first."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import rnnkit
from rnnkit import layers, ops

from helpers import check_model_gradients, load_example

F64 = "float64"


check_gradients = check_model_gradients


MyRNN = load_example("custom_cell_deep_rnn").ReluRNN  # h_t = relu(x_t W + h_prev U + b), looped in Python


class StatesModel(rnnkit.Model):
    """The design documents' subclassed model: call(inputs, states) -> (outputs, states)."""

    def __init__(self, units, outputs, **kwargs):
        super().__init__(**kwargs)
        self.lstm = layers.LSTM(units, return_sequences=True, return_state=True, dtype=kwargs.get("dtype"))
        self.dense = layers.Dense(outputs, dtype=kwargs.get("dtype"))

    def call(self, inputs, states=None, training=None):
        y, h, c = self.lstm(inputs, initial_state=states, training=training)
        return self.dense(y)


class DeepRNN(rnnkit.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.blocks = [MyRNN(4, dtype=F64), MyRNN(3, dtype=F64)]
        self.heads = {"out": layers.Dense(2, dtype=F64)}

    def call(self, x):
        for block in self.blocks:
            x = block(x)
        return self.heads["out"](x[:, -1])


# ---- gradients ---------------------------------------------------------------------------------------

def test_functional_gradients_with_shared_layers_and_two_outputs(rng):
    a, b = rnnkit.Input(shape=(5, 3), dtype=F64, name="a"), rnnkit.Input(shape=(4, 3), dtype=F64, name="b")
    shared = layers.GRU(4, dtype=F64)
    ha, hb = shared(a), shared(b)  # one set of weights, two nodes
    merged = layers.Dense(3, activation="tanh", dtype=F64)(ha) + hb[:, :3] * 2.0
    model = rnnkit.Model([a, b], [layers.Dense(2, dtype=F64, name="o1")(merged), layers.Dense(1, dtype=F64)(hb)])
    assert len(model.trainable_weights) == 4 + 2 + 2 + 2
    check_gradients(model, [rng.standard_normal((3, 5, 3)), rng.standard_normal((3, 4, 3))], rng)


def test_encoder_decoder_gradients_through_initial_state(rng):
    enc_in, dec_in = rnnkit.Input(shape=(None, 3), dtype=F64), rnnkit.Input(shape=(None, 2), dtype=F64)
    _, h, c = layers.LSTM(4, return_state=True, dtype=F64)(enc_in)
    seq = layers.LSTM(4, return_sequences=True, dtype=F64)(dec_in, initial_state=[h, c])
    model = rnnkit.Model([enc_in, dec_in], layers.Dense(2, activation="softmax", dtype=F64)(seq))
    grads = check_gradients(model, [rng.standard_normal((3, 5, 3)), rng.standard_normal((3, 4, 2))], rng)
    assert np.abs(grads[0]).max() > 0  # the encoder learns through the decoder's initial state


def test_masked_ids_through_bidirectional_gradients_and_sequential_equality(rng):
    ids = rnnkit.Input(shape=(None,), dtype="int64")
    x = layers.Embedding(9, 3, mask_zero=True, dtype=F64)(ids)
    x = layers.Bidirectional(layers.LSTM(3, return_sequences=True, dtype=F64))(x)
    model = rnnkit.Model(ids, layers.Dense(2, dtype=F64)(layers.LSTM(2, dtype=F64)(x)))
    data = rng.integers(1, 9, (4, 6))
    data[1, 3:] = 0
    data[2, 1:] = 0
    check_gradients(model, data, rng)
    stack = rnnkit.Sequential([layers.Embedding(9, 3, mask_zero=True, dtype=F64),
                               layers.Bidirectional(layers.LSTM(3, return_sequences=True, dtype=F64)),
                               layers.LSTM(2, dtype=F64), layers.Dense(2, dtype=F64)])
    stack.build((None, 6))
    stack.set_weights(model.get_weights())
    assert_array_equal(stack.predict(data), model.predict(data))


def test_subclassed_model_with_states_gradients(rng):
    model = StatesModel(4, 2, dtype=F64)
    x = rng.standard_normal((3, 5, 3))
    model(x)
    check_gradients(model, x, rng)
    states = [rng.standard_normal((3, 4)), rng.standard_normal((3, 4))]
    assert not np.allclose(model(x, states), model(x))


def test_custom_layer_deep_rnn_gradients(rng):
    model = DeepRNN(dtype=F64)
    x = rng.standard_normal((3, 4, 2))
    model(x)
    assert [l.name for l in model.layers][:2] == [b.name for b in model.blocks]
    assert len(model.trainable_weights) == 3 + 3 + 2
    # weights of the test's own draw, biases nonzero: with the zero biases Keras starts from, a row whose first
    # layer is all dead reaches the second layer's relu exactly at its kink (a = 0), where central differences
    # give 1/2 and the derivative 0
    for w in model.trainable_weights:
        w[...] = rng.uniform(-0.6, 0.6, w.shape)
    check_gradients(model, x, rng)


def test_model_as_layer_and_sub_model_share_weights(rng):
    inp = rnnkit.Input(shape=(5, 3), dtype=F64)
    encoder = rnnkit.Model(inp, layers.SimpleRNN(4, dtype=F64)(inp))
    outer_in = rnnkit.Input(shape=(5, 3), dtype=F64)
    outer = rnnkit.Model(outer_in, layers.Dense(1, dtype=F64)(encoder(outer_in)))
    assert outer.trainable_weights[:4] == encoder.trainable_weights or all(
        a is b for a, b in zip(outer.trainable_weights, encoder.trainable_weights))
    x = rng.standard_normal((3, 5, 3))
    check_gradients(outer, x, rng)
    outer.compile("sgd", "mse")
    before = encoder.predict(x)
    outer.fit(x, rng.standard_normal((3, 1)), epochs=1, verbose=0)
    assert not np.allclose(encoder.predict(x), before)  # trained through the outer model


# ---- training equals Sequential ----------------------------------------------------------------------

def test_functional_training_equals_sequential_to_the_bit(rng):
    x, y = rng.standard_normal((32, 6, 3)).astype("float32"), rng.standard_normal((32, 2)).astype("float32")
    inp = rnnkit.Input(shape=(6, 3))
    functional = rnnkit.Model(inp, layers.Dense(2)(layers.LSTM(5)(inp)))
    stack = rnnkit.Sequential([layers.LSTM(5, input_shape=(6, 3)), layers.Dense(2)])
    stack.set_weights(functional.get_weights())
    for model in (functional, stack):
        model.compile("adam", "mse", metrics=["mae"])
    h1 = functional.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0).history
    h2 = stack.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0).history
    assert h1 == h2
    for a, b in zip(functional.get_weights(), stack.get_weights()):
        assert_array_equal(a, b)


def test_several_outputs_losses_weights_and_metrics(rng):
    inp = rnnkit.Input(shape=(4, 2), name="seq")
    h = layers.LSTM(3)(inp)
    model = rnnkit.Model({"seq": inp}, {"value": layers.Dense(1)(h), "label": layers.Dense(3, activation="softmax")(h)})
    model.compile("sgd", loss={"value": "mse", "label": "sparse_categorical_crossentropy"},
                  loss_weights={"value": 2.0, "label": 1.0}, metrics={"label": ["accuracy"]})
    x = {"seq": rng.standard_normal((8, 4, 2))}
    y = {"value": rng.standard_normal((8, 1)), "label": rng.integers(0, 3, 8)}
    logs = model.evaluate(x, y, return_dict=True)
    assert set(logs) == {"loss", "value_loss", "label_loss", "label_accuracy"}
    assert logs["loss"] == pytest.approx(2 * logs["value_loss"] + logs["label_loss"], rel=1e-6)
    out = model.predict(x)
    assert set(out) == {"value", "label"} and out["label"].shape == (8, 3)
    model.fit(x, y, epochs=1, verbose=0)


# ---- errors ------------------------------------------------------------------------------------------

def test_layer_on_an_incompatible_symbolic_shape_raises_at_the_call():
    inp = rnnkit.Input(shape=(3,))
    with pytest.raises(ValueError, match=r"expects inputs \[N, T, C\]"):
        layers.LSTM(2)(inp)


def test_disconnected_graph_names_the_missing_input():
    a, b = rnnkit.Input(shape=(3,), name="first"), rnnkit.Input(shape=(3,), name="second")
    out = layers.Dense(1)(b)
    with pytest.raises(ValueError, match="Graph disconnected.*'second'"):
        rnnkit.Model(a, out)


def test_a_numpy_function_the_tape_cannot_see_is_named_in_training(rng):
    class Dot(layers.Layer):
        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1], 2))

        def call(self, x):
            return np.dot(x, self.w)

    inp = rnnkit.Input(shape=(3,))
    model = rnnkit.Model(inp, Dot()(inp))
    x = rng.standard_normal((4, 3))
    assert model.predict(x).shape == (4, 2)  # no gradient needed: plain NumPy
    model.compile("sgd", "mse")
    with pytest.raises(TypeError, match=r"numpy\.dot .*rnnkit\.ops"):
        model.fit(x, rng.standard_normal((4, 2)), verbose=0)


def test_wrong_inputs_and_targets_are_named(rng):
    a, b = rnnkit.Input(shape=(3,), name="a"), rnnkit.Input(shape=(2,), name="b")
    model = rnnkit.Model([a, b], layers.Dense(1)(ops.concatenate([a, b], axis=-1)))
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match=r"takes 2 inputs"):
        model.predict(rng.standard_normal((4, 3)))
    with pytest.raises(ValueError, match=r"x\['b'\].*shape \(None, 2\)"):
        model.predict([rng.standard_normal((4, 3)), rng.standard_normal((4, 5))])
    with pytest.raises(ValueError, match=r"no array for input 'b'"):
        model.predict({"a": rng.standard_normal((4, 3))})
    with pytest.raises(ValueError, match="same number of samples"):
        model.predict([rng.standard_normal((4, 3)), rng.standard_normal((5, 2))])
    with pytest.raises(ValueError, match=r"y: expected 4 samples"):
        model.fit([rng.standard_normal((4, 3)), rng.standard_normal((4, 2))], np.zeros((3, 1)), verbose=0)


def test_symbolic_tensor_has_no_values():
    with pytest.raises(TypeError, match="symbolic tensor"):
        np.asarray(rnnkit.Input(shape=(3,)))


# ---- saving -------------------------------------------------------------------------------------------

@rnnkit.saving.register_serializable(package="tests")
class SavedRNN(MyRNN):
    pass


@rnnkit.saving.register_serializable(package="tests")
class SavedStates(StatesModel):
    def get_config(self):
        return {**super().get_config(), "units": self.lstm.units, "outputs": self.dense.units}


def test_functional_model_with_a_custom_layer_saves_and_loads(tmp_path, rng):
    inp = rnnkit.Input(shape=(5, 3))
    h = SavedRNN(4)(inp)
    _, state_h, state_c = layers.LSTM(3, return_state=True)(h)
    out = layers.Dense(2)(ops.concatenate([state_h, state_c], axis=-1))
    model = rnnkit.Model(inp, out)
    model.compile("adam", "mse")
    x, y = rng.standard_normal((6, 5, 3)), rng.standard_normal((6, 2))
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "m.rnnkit")
    loaded = rnnkit.load_model(tmp_path / "m.rnnkit")
    assert_array_equal(loaded.predict(x), model.predict(x))
    assert [type(l).__name__ for l in loaded.layers] == [type(l).__name__ for l in model.layers]
    model.fit(x, y, epochs=1, verbose=0, shuffle=False)
    loaded.fit(x, y, epochs=1, verbose=0, shuffle=False)  # the optimizer state was restored: the same step
    assert_allclose(loaded.predict(x), model.predict(x), rtol=1e-6, atol=1e-7)


def test_subclassed_model_saves_and_loads_given_its_class(tmp_path, rng):
    model = SavedStates(4, 2)
    x = rng.standard_normal((3, 5, 3)).astype("float32")
    model.compile("sgd", "mse")
    model.fit(x, rng.standard_normal((3, 5, 2)), epochs=1, verbose=0)
    model.save(tmp_path / "s.rnnkit")
    loaded = rnnkit.load_model(tmp_path / "s.rnnkit")
    assert type(loaded) is SavedStates
    assert_array_equal(loaded.predict(x), model.predict(x))
    model.save_weights(tmp_path / "s.weights")
    other = SavedStates(4, 2)
    other(x)
    other.load_weights(tmp_path / "s.weights")
    assert_array_equal(other.predict(x), model.predict(x))


def test_an_unregistered_custom_layer_fails_at_save_and_says_how_to_register(tmp_path, rng):
    inp = rnnkit.Input(shape=(5, 3))
    model = rnnkit.Model(inp, MyRNN(2)(inp))
    with pytest.raises(ValueError, match=r"ReluRNN, which is not registered.*register_serializable"):
        model.save(tmp_path / "m.rnnkit")
    assert not (tmp_path / "m.rnnkit").exists()


def test_custom_objects_find_a_class_the_loader_does_not_know(tmp_path, rng):
    inp = rnnkit.Input(shape=(5, 3))
    model = rnnkit.Model(inp, SavedRNN(2)(inp))
    model.save(tmp_path / "m.rnnkit")
    from rnnkit.engine import serialization

    key = SavedRNN._registered_name
    del serialization._REGISTERED[key]
    try:
        with pytest.raises(ValueError, match=r"not known here.*custom_objects"):
            rnnkit.load_model(tmp_path / "m.rnnkit")
        loaded = rnnkit.load_model(tmp_path / "m.rnnkit", custom_objects={"SavedRNN": SavedRNN})
    finally:
        serialization._REGISTERED[key] = SavedRNN
    x = rng.standard_normal((2, 5, 3))
    assert_array_equal(loaded.predict(x), model.predict(x))


def test_rnn_of_cells_saves_and_loads(tmp_path, rng):
    inp = rnnkit.Input(shape=(None, 3))
    seq = layers.RNN([layers.LSTMCell(4), layers.GRUCell(3)], return_sequences=True)(inp)
    model = rnnkit.Model(inp, layers.RNN(layers.SimpleRNNCell(2))(seq))
    model.save(tmp_path / "c.rnnkit")
    loaded = rnnkit.load_model(tmp_path / "c.rnnkit")
    x = rng.standard_normal((2, 6, 3))
    assert_array_equal(loaded.predict(x), model.predict(x))
    assert len(loaded.weights) == len(model.weights) == 3 + 4 + 3  # one bias, GRU two (reset_after)


# ---- leading padding ---------------------------------------------------------------------------------

@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_left_padded_ids_gradients(rng, go_backwards, return_sequences):
    """pad_sequences' default padding="pre": the kernels run on the batch moved to right padding; outputs and
    gradients are those of stepping over the leading padding (checked against finite differences)."""
    ids = rnnkit.Input(shape=(None,), dtype="int64")
    x = layers.Embedding(9, 3, mask_zero=True, dtype=F64)(ids)
    x = layers.LSTM(3, return_sequences=return_sequences, go_backwards=go_backwards, dtype=F64)(x)
    model = rnnkit.Model(ids, layers.Dense(2, dtype=F64)(x))
    data = rnnkit.utils.pad_sequences([[1, 2, 3], [4, 5, 6, 7, 8], [5], [], [1, 1, 2, 3, 5, 8]])  # "pre"
    check_gradients(model, data, rng)
    same = rnnkit.utils.pad_sequences([[1, 2, 3]], maxlen=6)
    assert_allclose(model.predict(same)[:, -1], model.predict(np.array([[1, 2, 3]]))[:, -1], rtol=1e-12)


def test_a_mask_with_a_hole_is_named():
    with pytest.raises(ValueError, match=r"mask: sequence 1 is not right-padded or left-padded"):
        layers.GRU(2)(np.ones((2, 4, 1)), mask=np.array([[1, 1, 1, 1], [1, 0, 0, 1]], dtype=bool))


# ---- training parity with Keras' rules -----------------------------------------------------------------

def test_training_follows_keras_update_rules_with_one_bias(rng):
    """Three Adam steps of Input -> LSTM -> Dense, against the same steps written out in NumPy as Keras takes
    them: the NumPy reference's gradients, one LSTM bias (Keras' kernel, recurrent_kernel, bias), Keras' Adam."""
    from rnnkit import reference

    N, T, C, H = 6, 5, 3, 4
    x, y = rng.standard_normal((N, T, C)), rng.standard_normal((N, 1))
    inp = rnnkit.Input(shape=(T, C), dtype=F64)
    model = rnnkit.Model(inp, layers.Dense(1, dtype=F64)(layers.LSTM(H, dtype=F64)(inp)))
    model.compile(rnnkit.optimizers.Adam(0.01, epsilon=1e-3), "mse")  # an epsilon that rounding cannot swamp
    weights = [w.copy() for w in model.get_weights()]  # W_ih, W_hh, bias, kernel, dense bias
    m, v = [np.zeros_like(w) for w in weights], [np.zeros_like(w) for w in weights]
    for t in range(1, 4):
        W_ih, W_hh, bias, K, b = weights
        seq, h_n, _, cache = reference.lstm_forward(x.transpose(1, 0, 2), W_ih, W_hh, bias, np.zeros_like(bias))
        pred = h_n @ K + b
        dpred = 2 * (pred - y) / pred.size  # mean squared error
        dh = dpred @ K.T
        _, _, _, dW_ih, dW_hh, dbias, _ = reference.lstm_backward(cache, np.zeros_like(seq), dh_n=dh)
        grads = [dW_ih, dW_hh, dbias, h_n.T @ dpred, dpred.sum(axis=0)]  # one bias: its gradient once
        alpha = 0.01 * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
        for i, g in enumerate(grads):
            m[i] = 0.9 * m[i] + 0.1 * g
            v[i] = 0.999 * v[i] + 0.001 * g * g
            weights[i] = weights[i] - alpha * m[i] / (np.sqrt(v[i]) + 1e-3)
        model.train_on_batch(x, y)
        for mine, keras_rule in zip(model.get_weights(), weights):
            # the learning rate is float32, as in Keras: each of the three updates (an Adam step is about lr = 0.01)
            # is off by up to float32's relative rounding, 6e-8: 3 * 0.01 * 6e-8 ~ 2e-9 absolute, seen at 1.8e-9
            # on some draws of the initial weights; a wrong update rule is off by far more than 1e-8
            assert_allclose(mine, keras_rule, rtol=1e-6, atol=1e-8)
