"""rnnkit.utils: pad_sequences and to_categorical, with Keras 3's results written out (from keras.utils'
docstrings and its source, keras/src/utils/sequence_utils.py and numerical_utils.py), and bad input.
tests/test_keras_parity.py runs both against keras.utils itself when Keras is installed."""

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import rnnkit
from rnnkit.utils import pad_sequences, to_categorical

SEQUENCES = [[1], [2, 3], [4, 5, 6]]


def check(actual, expected, dtype):
    assert actual.dtype == np.dtype(dtype)
    assert_array_equal(actual, np.asarray(expected, dtype=dtype))


# ---- the module layout --------------------------------------------------------------------------------

def test_keras_module_layout():
    import rnnkit as keras
    from rnnkit.models import Sequential, load_model

    assert Sequential is keras.Sequential and load_model is keras.load_model
    assert keras.models.load_model is keras.load_model
    assert keras.utils.pad_sequences is pad_sequences and keras.utils.to_categorical is to_categorical
    assert {"models", "utils"} <= set(rnnkit.__all__)


def test_models_load_model_reads_a_saved_model(tmp_path):
    from rnnkit.layers import Dense
    from rnnkit.models import Sequential, load_model

    model = Sequential([Dense(2, input_shape=(3,))])
    model.save(tmp_path / "m.rnnkit")
    x = np.ones((4, 3), np.float32)
    assert_array_equal(load_model(tmp_path / "m.rnnkit").predict(x), model.predict(x))


# ---- pad_sequences ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, expected", [
    ({}, [[0, 0, 1], [0, 2, 3], [4, 5, 6]]),
    ({"value": -1}, [[-1, -1, 1], [-1, 2, 3], [4, 5, 6]]),
    ({"padding": "post"}, [[1, 0, 0], [2, 3, 0], [4, 5, 6]]),
    ({"maxlen": 2}, [[0, 1], [2, 3], [5, 6]]),
    ({"maxlen": 2, "truncating": "post"}, [[0, 1], [2, 3], [4, 5]]),
    ({"maxlen": 2, "truncating": "post", "padding": "post"}, [[1, 0], [2, 3], [4, 5]]),
    ({"maxlen": np.int64(4), "padding": "post", "value": 9}, [[1, 9, 9, 9], [2, 3, 9, 9], [4, 5, 6, 9]]),
    ({"maxlen": 0}, np.zeros((3, 0))),
], ids=["default", "value", "post", "maxlen", "truncating_post", "both_post", "numpy_maxlen", "maxlen_0"])
def test_pad_sequences_keras_docstring_cases(kwargs, expected):
    check(pad_sequences(SEQUENCES, **kwargs), expected, "int32")


def test_pad_sequences_dtype_value_and_casts():
    # the values and the padding are cast to dtype, as np.asarray / np.full do it (Keras: int32 truncates)
    check(pad_sequences([[1.5, 2.7]], maxlen=3), [[0, 1, 2]], "int32")
    check(pad_sequences([[1, 2]], value=-1.7, maxlen=3), [[-1, 1, 2]], "int32")
    check(pad_sequences([[1.5, 2.7]], maxlen=3, dtype="float32", value=0.5), [[0.5, 1.5, 2.7]], "float32")
    check(pad_sequences([[1, 2]], dtype=np.int64), [[1, 2]], "int64")


def test_pad_sequences_strings_with_object_dtype():
    out = pad_sequences([["a", "bb"], ["ccc"]], dtype=object, value="x", padding="post")
    assert out.dtype == object and out.tolist() == [["a", "bb"], ["ccc", "x"]]


def test_pad_sequences_multidimensional_samples_and_mixed_containers():
    out = pad_sequences([[[1, 2], [3, 4]], [[5, 6]], []], padding="post")
    check(out, [[[1, 2], [3, 4]], [[5, 6], [0, 0]], [[0, 0], [0, 0]]], "int32")
    check(pad_sequences([(1, 2), range(3), np.array([7])]), [[0, 1, 2], [0, 1, 2], [0, 0, 7]], "int32")
    check(pad_sequences(np.arange(6).reshape(2, 3), maxlen=4), [[0, 0, 1, 2], [0, 3, 4, 5]], "int32")


def test_pad_sequences_empty_inputs():
    check(pad_sequences([[], []]), np.zeros((2, 0)), "int32")
    check(pad_sequences([[], [1]]), [[0], [1]], "int32")
    check(pad_sequences([], maxlen=3), np.zeros((0, 3)), "int32")
    check(pad_sequences([]), np.zeros((0, 0)), "int32")  # Keras fails here (max of no lengths); rnnkit: empty


def test_pad_sequences_leaves_its_input_alone():
    seqs = [np.array([1, 2, 3]), np.array([4])]
    out = pad_sequences(seqs, maxlen=2, padding="post")
    out[:] = -5
    assert_array_equal(seqs[0], [1, 2, 3])
    assert_array_equal(seqs[1], [4])


@pytest.mark.parametrize("args, kwargs, error, match", [
    ((5,), {}, ValueError, "sequences: expected a list of sequences, got int"),
    (("abc",), {}, ValueError, "sequences: expected a list of sequences, got str"),
    (((x for x in [[1]]),), {}, ValueError, "sequences: expected a list"),
    (([1, 2],), {}, ValueError, r"sequences\[0\] is 1"),
    (([[1], "ab"],), {}, ValueError, r"sequences\[1\] is 'ab'"),
    (([{1, 2}],), {}, ValueError, r"sequences\[0\] \(set\)"),
    (([[1], [[1, 2]]],), {}, ValueError, r"samples of sequences\[1\] have shape \(2,\).*sequences\[0\].*\(\)"),
    (([[1, [2, 3]]],), {}, ValueError, r"sequences\[0\] is not a sequence of samples of one shape"),
    (([["a"]],), {}, ValueError, r"sequences\[0\] .*convertible to int32"),
    (([[1]],), {"padding": "middle"}, ValueError, "padding: expected 'pre' or 'post', got 'middle'"),
    (([[]],), {"truncating": "x"}, ValueError, "truncating: expected 'pre' or 'post', got 'x'"),
    (([[1]],), {"padding": None}, ValueError, "padding: expected 'pre' or 'post', got None"),
    (([[1]],), {"maxlen": -1}, ValueError, "maxlen: expected an integer >= 0"),
    (([[1]],), {"maxlen": 2.0}, TypeError, "maxlen: expected an integer or None, got 2.0"),
    (([[1]],), {"maxlen": True}, TypeError, "maxlen: expected an integer or None, got True"),
    (([[1]],), {"dtype": "nope"}, TypeError, "dtype: 'nope' is not a NumPy dtype"),
    (([[1]],), {"value": "pad"}, ValueError, "dtype: int32 cannot hold the string padding value 'pad'"),
    (([[1]],), {"value": None}, TypeError, "value: None cannot fill an array of dtype int32"),
])
def test_pad_sequences_bad_input_names_the_argument(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        pad_sequences(*args, **kwargs)


# ---- to_categorical -----------------------------------------------------------------------------------

def test_to_categorical_keras_docstring_case():
    check(to_categorical([0, 1, 2, 3], num_classes=4), np.eye(4), "float64")


@pytest.mark.parametrize("x, num_classes, expected", [
    ([0, 2, 1], None, [[1, 0, 0], [0, 0, 1], [0, 1, 0]]),
    ([[1], [2]], None, [[0, 1, 0], [0, 0, 1]]),  # a last axis of size 1 is dropped
    ([[0, 1]], 3, [[[1, 0, 0], [0, 1, 0]]]),  # [1, 2] -> [1, 2, 3]
    ([[[1]]], None, [[[0, 1]]]),  # [1, 1, 1] -> [1, 1, 2]
    ([1], None, [[0, 1]]),  # a 1-D [1] keeps its axis
    (np.array(3), None, [0, 0, 0, 1]),  # a scalar -> [num_classes]
    ([1.0, 2.0], None, [[0, 1, 0], [0, 0, 1]]),  # whole-number floats are ids
    ([True, False], None, [[0, 1], [1, 0]]),
    (np.array([[0], [2]], np.uint8), 4, [[1, 0, 0, 0], [0, 0, 1, 0]]),
    ([2], np.int32(5), [[0, 0, 1, 0, 0]]),
    ([], 3, np.zeros((0, 3))),
    (np.zeros((0, 1), int), 2, np.zeros((0, 2))),
], ids=["ids", "column", "2d", "3d_column", "single", "scalar", "whole_floats", "bools", "uint8", "np_int",
        "empty", "empty_column"])
def test_to_categorical(x, num_classes, expected):
    check(to_categorical(x, num_classes=num_classes), expected, "float64")


@pytest.mark.parametrize("x, kwargs, error, match", [
    ([1, -1], {}, ValueError, "x: class ids must be >= 0, got -1"),
    ([1, 5], {"num_classes": 3}, ValueError, "x: class ids must be < num_classes=3, got 5"),
    ([1.5], {}, ValueError, "x: expected integer class ids, got the value 1.5"),
    ([1.0, np.nan], {}, ValueError, "x: expected integer class ids, got the value nan"),
    ([np.inf], {}, ValueError, "x: expected integer class ids, got the value inf"),
    ([1e300], {}, ValueError, "x: class id 1e\\+300 is beyond the int64 range"),
    (["a"], {}, TypeError, "x: expected integer class ids, got dtype <U1"),
    ([object()], {}, TypeError, "x: expected integer class ids, got dtype object"),
    ([], {}, ValueError, "x: no class ids to infer num_classes from; pass num_classes"),
    ([1], {"num_classes": 0}, ValueError, "num_classes: expected a positive integer or None, got 0"),
    ([1], {"num_classes": 2.0}, TypeError, "num_classes: expected a positive integer or None, got 2.0"),
    ([1], {"num_classes": "3"}, TypeError, "num_classes: expected a positive integer or None, got '3'"),
])
def test_to_categorical_bad_input_names_the_argument(x, kwargs, error, match):
    with pytest.raises(error, match=match):
        to_categorical(x, **kwargs)


def test_to_categorical_feeds_categorical_crossentropy():
    from rnnkit.layers import Dense
    from rnnkit.models import Sequential

    rnnkit.set_seed(0)
    model = Sequential([Dense(3, activation="softmax", input_shape=(2,))])
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    y = to_categorical([0, 2, 1, 2])
    loss = model.evaluate(np.zeros((4, 2), np.float32), y)
    assert loss == pytest.approx(np.log(3), rel=1e-5)  # zero inputs and bias: uniform softmax
