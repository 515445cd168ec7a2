"""The examples in examples/, on a tiny budget: their functions run and return what they promise."""

import math

import numpy as np
import pytest

from helpers import load_example


@pytest.fixture(scope="module")
def adding():
    return load_example("adding_problem")


@pytest.mark.parametrize("T", [2, 7, 50])
def test_adding_data_has_one_marker_per_half_and_sums_them(adding, rng, T):
    x, y = adding.make_adding_data(rng, 500, T)
    assert x.shape == (500, T, 2) and y.shape == (500, 1)
    assert x.dtype == y.dtype == np.float32
    values, markers = x[..., 0], x[..., 1]
    assert ((values >= 0) & (values < 1)).all()
    assert set(np.unique(markers)) <= {0.0, 1.0} and (markers.sum(axis=1) == 2).all()
    assert (markers[:, :T // 2].sum(axis=1) == 1).all()
    assert (markers[:, T // 2:].sum(axis=1) == 1).all()
    first, second = markers[:, :T // 2].argmax(axis=1), T // 2 + markers[:, T // 2:].argmax(axis=1)
    rows = np.arange(500)
    np.testing.assert_allclose(y[:, 0], values[rows, first] + values[rows, second], rtol=1e-6)


def test_adding_data_rejects_a_sequence_too_short_for_two_halves(adding, rng):
    with pytest.raises(ValueError, match="T: expected at least 2 steps"):
        adding.make_adding_data(rng, 4, 1)


def test_adding_baseline_is_the_target_variance(adding, rng):
    _, y = adding.make_adding_data(rng, 20000, 10)
    assert abs(float(y.var()) - adding.BASELINE_MSE) < 0.01


def test_adding_training_runs_and_reports_finite_curves(adding, rng, capsys):
    train_data = adding.make_adding_data(rng, 64, 8)
    test_data = adding.make_adding_data(rng, 32, 8)
    curves = {cell: adding.train(cell, train_data, test_data, units=4, epochs=2, batch_size=16)
              for cell in adding.CELLS}
    assert set(curves) == {"LSTM", "SimpleRNN"}
    for curve in curves.values():
        assert len(curve) == 2 and all(math.isfinite(v) and v >= 0 for v in curve)
    # the same seed gives the same curve
    assert adding.train("LSTM", train_data, test_data, units=4, epochs=2, batch_size=16) == curves["LSTM"]
    table = adding.format_table(curves)
    assert f"{curves['SimpleRNN'][1]:12.4f}" in table and "0.1667" in table
    assert "LSTM      epoch   2" in capsys.readouterr().out


def test_adding_main_prints_the_table(adding, capsys):
    curves = adding.main(["--T", "6", "--train", "32", "--test", "16", "--units", "3", "--epochs", "1"])
    out = capsys.readouterr().out
    assert "test MSE per epoch" in out
    assert f"{curves['LSTM'][0]:12.4f}{curves['SimpleRNN'][0]:12.4f}" in out


# ---- the model-API examples (Keras programs with rnnkit imports) ------------------------------------------

def test_encoder_decoder_reverses_on_a_tiny_budget():
    example = load_example("encoder_decoder")
    enc, dec, target = example.make_data(np.random.default_rng(0), 4, length=3)
    assert enc.shape == dec.shape == target.shape == (4, 3, example.TOKENS)
    np.testing.assert_array_equal(target.argmax(-1), enc.argmax(-1)[:, ::-1])
    np.testing.assert_array_equal(dec.argmax(-1)[:, 1:], target.argmax(-1)[:, :-1])
    result = example.run(samples=200, epochs=1, latent_dim=8, length=3)
    assert 0 <= result["string_accuracy"] <= result["digit_accuracy"] <= 1 and len(result["examples"]) == 5


def test_seq2seq_addition_data_and_a_tiny_run():
    example = load_example("seq2seq_addition")
    x, y, questions, answers = example.make_data(np.random.default_rng(0), 50, 2)
    assert x.shape == (50, 5, 12) and y.shape == (50, 3, 12)
    for q, a in zip(questions, answers):
        left, right = q[::-1].strip().split("+")
        assert int(a) == int(left) + int(right)
    result = example.run(samples=300, epochs=1, digits=2, hidden=16)
    assert 0 <= result["exact"] <= result["character_accuracy"] <= 1


def test_custom_cell_deep_rnn_on_a_tiny_budget():
    example = load_example("custom_cell_deep_rnn")
    results = example.run(samples=64, epochs=1, units=(4, 4))
    assert set(results) == {"persistence baseline", "ReluRNN (Python loop, tape)", "SimpleRNN(relu) (C++ kernels)"}
    assert all(math.isfinite(mse) for mse, _ in results.values())
