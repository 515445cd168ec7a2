"""Generated inputs (hypothesis) against the layers and Sequential: predict, fit and evaluate on generated models
(SimpleRNN, LSTM, GRU, Bidirectional, Jordan, Dense, Embedding, Masking, Dropout), and the recurrent layers called
directly with masks and initial states.

The inputs vary in shape (empty batches and sequences, large but bounded sizes), dtype (float16/32/64, integers,
bool, object, complex, strings), memory layout (Fortran order, negative strides, strided and broadcast views,
read-only arrays, nested lists), values (NaN, inf, values beyond float32) and masks; the call arguments vary too
(batch_size 0, negative, huge or not an integer; epochs; validation_split out of range; y of the wrong shape or
dtype). Each test works out from the inputs alone which arguments are wrong, then:

- a call with no wrong argument must succeed, with outputs equal to a float64 NumPy reference (rnnkit.reference
  for the recurrent kernels, NumPy for the rest) wherever the reference is finite, NaN and inf propagated where
  it is not (layer calls; a model rejects them up front);
- a call with a wrong argument must raise ValueError, TypeError or MemoryError naming one of the wrong arguments.

Anything else (another exception, a crash, a call that outlives the deadline) fails. The default run is short
(EXAMPLES examples per test, the same ones every run); RNNKIT_FUZZ_LONG=1 runs LONG_EXAMPLES examples per test
from a random seed. ``pytest --hypothesis-show-statistics`` counts the outcomes of each test.
"""

import contextlib
import faulthandler
import math
import os
import re
import warnings
from datetime import timedelta

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from helpers import Cell, forward_states  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import rnnkit  # noqa: E402
from rnnkit import Sequential, reference  # noqa: E402
from rnnkit.cells import WEIGHTS  # noqa: E402
from rnnkit.layers import (GRU, LSTM, Bidirectional, Dense, Dropout, Embedding, Jordan, Masking,  # noqa: E402
                           SimpleRNN)

with warnings.catch_warnings(), contextlib.suppress(ImportError):
    # hypothesis imports libcst to print a patch for a failing example; some versions of its dependencies warn on
    # that import, which would turn a failure report into a pytest internal error: import it here, quietly
    warnings.simplefilter("ignore", DeprecationWarning)
    import hypothesis.extra._patching  # noqa: E402, F401

LONG = os.environ.get("RNNKIT_FUZZ_LONG", "") not in ("", "0")
EXAMPLES, LONG_EXAMPLES = 300, 5000
FUZZ = settings(
    max_examples=LONG_EXAMPLES if LONG else EXAMPLES,
    derandomize=not LONG,
    database=None,  # nothing written to the working tree; a failure prints its example and seed
    deadline=timedelta(seconds=20),  # a call this slow is a hang (the watchdog below catches real ones)
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
WATCHDOG_SECONDS = 300
ALLOWED = (ValueError, TypeError, MemoryError)
TOLERANCE = {"float32": 2e-3, "float64": 1e-8}  # relative to the largest output: float32 rounding over T steps


@contextlib.contextmanager
def watchdog():
    """Aborts the process with every thread's traceback if one example runs WATCHDOG_SECONDS (a hang in the
    compiled module, which a deadline could only report once the call returns)."""
    faulthandler.dump_traceback_later(WATCHDOG_SECONDS, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


def attempt(call, problems, what, may=()):
    """call() when ``problems`` (a list of (exception type, argument name)) is empty must succeed; otherwise it
    must raise one of those types with a message naming the argument. ``may``: errors of the same form it may
    raise, or not. Returns (result, exception)."""
    try:
        result = call()
    except ALLOWED as e:
        expected = list(problems) + list(may)
        assert expected, f"{what} of valid arguments raised {type(e).__name__}: {e}"
        named = [name for kind, name in expected if isinstance(e, kind)
                 and re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", str(e))]
        assert named, f"{what} raised {type(e).__name__}: {e!s:.300}; expected one of {expected}"
        event(f"{what}: {type(e).__name__} ({named[0]})")
        return None, e
    event(f"{what}: succeeded")
    assert not problems, f"{what} succeeded despite {problems}"
    return result, None


def values_close(out, ref, dtype, what):
    """out (the layer dtype) equals ref (float64) where ref is finite; non-finite where ref is."""
    out, ref = np.asarray(out), np.asarray(ref)
    assert out.shape == ref.shape, f"{what}: shape {out.shape}, reference {ref.shape}"
    finite = np.isfinite(ref) & (np.abs(np.nan_to_num(ref)) < 1e30)
    assert not np.isfinite(out[~np.isfinite(ref)]).any(), f"{what}: finite where the reference is not"
    if finite.any():
        tol = TOLERANCE[str(dtype)]
        scale = max(1.0, float(np.abs(ref[finite]).max()))
        np.testing.assert_allclose(out[finite], ref[finite], rtol=tol, atol=tol * scale, err_msg=what)


# ---------------------------------------------------------------------------------------------------------
# the reference: float64 NumPy, layer by layer
# ---------------------------------------------------------------------------------------------------------
def _sigmoid(z):
    return np.exp(-np.logaddexp(0.0, -z))


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


ACTIVATIONS = {"linear": lambda z: z, "relu": lambda z: np.maximum(z, 0.0), "tanh": np.tanh, "sigmoid": _sigmoid,
               "softmax": _softmax, "softplus": lambda z: np.logaddexp(0.0, z),
               "elu": lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0.0)))}


def prefix_lengths(mask):
    """lengths of a right-padded mask [N, T], or None when some row is not a prefix."""
    mask = np.asarray(mask, dtype=bool)
    lengths = mask.sum(axis=1)
    return lengths if np.array_equal(mask, np.arange(mask.shape[1]) < lengths[:, None]) else None


def padded(mask):
    """Whether each row of a mask [N, T] is right-padded (True*L + False*k) or left-padded (False*k + True*L, as
    pad_sequences' default padding="pre" makes): the masks SimpleRNN / LSTM / GRU / Bidirectional take (Jordan:
    right-padded ones only, see prefix_lengths); any other row has a hole."""
    mask = np.asarray(mask, dtype=bool)
    T, lengths = mask.shape[1], mask.sum(axis=1)[:, None]
    right = (mask == (np.arange(T) < lengths)).all(axis=1)
    left = (mask == (np.arange(T) >= T - lengths)).all(axis=1)
    return bool((right | left).all())


def steps_mask(mask, a):
    """mask as a bool array [N, T] (all True for None) for a: [N, T, ...]."""
    return np.ones(a.shape[:2], bool) if mask is None else np.asarray(mask, dtype=bool)


def valid_first(mask):
    """order: [N, T], each sequence's valid steps (in order) then its padded ones: a[n, order[n]] is sequence n
    right-padded (left padding moved to the end), as the reference kernels take it."""
    return np.argsort(~mask, axis=1, kind="stable")


def keras_steps(mask, go_backwards, zeros=False, align=False):
    """index: [N, T] of the valid step (0 = each sequence's first) whose output a layer's sequence output shows
    at each step in Keras 3, -1 for a zero. The outputs come in the order the layer reads the steps (with
    go_backwards the whole padded sequence reversed), a padded step repeating the output before it (zeros before
    the first): right padding repeats the last output (go_backwards: zeros, then the outputs from the last
    step back), left padding shows zeros first (go_backwards: the outputs from the last step back, then the first
    step's repeated). Inside Bidirectional (``zeros``) padded steps are zeros, the backward layer's outputs at
    their input steps (``align``)."""
    index = np.where(mask, np.cumsum(mask, axis=1) - 1, -1)  # each valid step's output at its input step
    if go_backwards and not align:
        index = index[:, ::-1].copy()
    if not zeros:
        for t in range(1, index.shape[1]):
            index[:, t] = np.where(index[:, t] < 0, index[:, t - 1], index[:, t])
    return index


def show_steps(y, index):
    """out[n, t] = y[n, index[n, t]], zeros where index is -1; y: [N, T, H] (each sequence's valid steps first)."""
    out = y[np.arange(y.shape[0])[:, None], np.maximum(index, 0)]
    out[index < 0] = 0
    return out


def show_steps_grad(d, index):
    """The gradient of show_steps' y from that of its output."""
    dy = np.zeros_like(d)
    n, t = np.nonzero(index >= 0)
    np.add.at(dy, (n, index[n, t]), d[n, t])
    return dy


def reverse_valid(a, lengths):
    """a: [N, T, ...] with each row's first lengths[n] steps in reverse order."""
    out = a.copy()
    for n in range(a.shape[0]):
        L = a.shape[1] if lengths is None else int(lengths[n])
        out[n, :L] = a[n, :L][::-1]
    return out


def _f64(arrays):
    return [np.asarray(a, dtype=np.float64) for a in arrays]


def recurrent_weights(layer):
    """[W_ih, W_hh, b_ih, b_hh] for the reference kernels, by the layer's weight names: one ``bias`` is b_ih, a
    missing bias zeros."""
    w = dict(zip(layer.weight_names, _f64(layer.weights)))
    zero = np.zeros(layer.gates * layer.units)
    return [w["W_ih"], w["W_hh"], w.get("b_ih", w.get("bias", zero)), w.get("b_hh", zero)]


def ref_recurrent_kernel(layer, a, lengths, states=()):
    """(y [T, N, H], final states, cache) of the reference kernel of a SimpleRNN / LSTM / GRU layer on a: [N, T, C]."""
    # the layer's options for the kernels: activations, GRU's reset_after, LSTM's peepholes
    cell = Cell(layer.name, layer.cell, layer._kernel_options())
    weights = dict(zip(WEIGHTS, recurrent_weights(layer)))
    y, final, cache = forward_states(reference, cell, x=a.transpose(1, 0, 2), **weights,
                                     **dict(zip(cell.initial_states, states)), lengths=lengths,
                                     reverse=layer.go_backwards)
    return y, list(final), cache


def ref_recurrent_front(layer, a, mask, states=()):
    """ref_recurrent_kernel on each sequence's valid steps moved to the front (valid_first): (y: [N, T, H], the
    outputs of the valid steps first, zeros after them; final states; cache)."""
    lengths = None
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        a, lengths = a[np.arange(a.shape[0])[:, None], valid_first(mask)], mask.sum(axis=1)
    y, final, cache = ref_recurrent_kernel(layer, a, lengths, states)
    return y.transpose(1, 0, 2), final, cache


def ref_recurrent(layer, a, mask, zeros=False, align=False, states=()):
    """A SimpleRNN / LSTM / GRU layer's output(s): [output, *states] with return_state, else the output; ``zeros``
    and ``align`` for the layers of a Bidirectional (see keras_steps)."""
    y, final, _ = ref_recurrent_front(layer, a, mask, states)
    if layer.return_sequences:
        out = show_steps(y, keras_steps(steps_mask(mask, a), layer.go_backwards, zeros, align))
    else:
        out = final[0]
    return [out, *final] if layer.return_state else out


def jordan_weights(layer):
    w = _f64(layer.weights)
    b_h, b_y = (w[3], w[4]) if layer.use_bias else (np.zeros(layer.units), np.zeros(layer.output_units))
    return w[0], w[1], b_h, w[2], b_y  # the kernels' order: W_xh, W_yh, b_h, W_hy, b_y


def ref_jordan(layer, a, lengths, y0=None):
    y, y_n, cache = reference.jordan_forward(a.transpose(1, 0, 2), *jordan_weights(layer), y0=y0, lengths=lengths,
                                             reverse=layer.go_backwards, activation=layer.activation,
                                             output_activation=layer.output_activation)
    if not layer.return_sequences:
        return y_n, cache
    out = y.transpose(1, 0, 2)
    return (reverse_valid(out, lengths) if layer.go_backwards else out), cache


def ref_bidirectional(layer, a, mask):
    """(the merged output, the outputs of both directions)."""
    y_f = ref_recurrent(layer.forward_layer, a, mask, zeros=True)
    y_b = ref_recurrent(layer.backward_layer, a, mask, zeros=True, align=True)
    return {"concat": lambda: np.concatenate([y_f, y_b], axis=-1), "sum": lambda: y_f + y_b,
            "mul": lambda: y_f * y_b, "ave": lambda: (y_f + y_b) / 2}[layer.merge_mode](), (y_f, y_b)


def weight_matrices(layer):
    """The layer's weight matrices as [outputs, inputs]."""
    if isinstance(layer, Dense):
        return [layer.weights[0].T]
    if isinstance(layer, Bidirectional):
        return weight_matrices(layer.forward_layer) + weight_matrices(layer.backward_layer)
    return [w for w in layer.weights if w.ndim == 2]


def magnitude_bound(layer, a_in, a_out):
    """A bound on the magnitudes the layer's arithmetic meets: its inputs and outputs times the largest absolute
    row sum of its matrices, plus its largest bias."""
    def peak(a):
        a = np.abs(np.asarray(a, np.float64))
        return float(a.max()) if a.size else 0.0
    matrices = [np.abs(np.asarray(w, np.float64)) for w in weight_matrices(layer)]
    rows = max((float(m.sum(axis=1).max()) for m in matrices if m.size), default=0.0)
    biases = max((peak(w) for w in layer.weights if w.ndim == 1), default=0.0)
    return max(1.0, peak(a_in), peak(a_out)) * max(1.0, rows) + biases


def reference_predict(model, x):
    """(output, output mask or None, a bound on the magnitudes met on the way) of a Sequential model for valid x,
    in float64."""
    mask, bound = None, 0.0
    first = model.layers[0]
    if isinstance(first, Embedding):
        a = np.asarray(x).astype(np.int64)
    else:
        a = np.asarray(x).astype(first.dtype).astype(np.float64)
    for layer in model.layers:
        a_in = a
        if isinstance(layer, Embedding):
            mask = (a != 0) if layer.mask_zero else None
            a = np.asarray(layer.weights[0], np.float64)[a]
        elif isinstance(layer, Masking):
            keep = np.any(a != layer.mask_value, axis=-1)
            mask = keep if mask is None else keep & mask
            a = a * keep[..., None]
        elif isinstance(layer, Dense):
            w = _f64(layer.weights)
            a = ACTIVATIONS[layer.activation](a @ w[0] + (w[1] if layer.use_bias else 0.0))
        elif isinstance(layer, Dropout):
            pass
        else:
            if isinstance(layer, Bidirectional):
                a, directions = ref_bidirectional(layer, a, mask)
                # a product can hide a direction's values beyond float32 (there inf * 0 is NaN): bound them too
                bound = max([bound] + [magnitude_bound(layer, a_in, y) for y in directions])
            elif isinstance(layer, Jordan):
                a = ref_jordan(layer, a, None if mask is None else prefix_lengths(mask))[0]
            else:
                a = ref_recurrent(layer, a, mask)
            mask = mask if layer.return_sequences else None
        a = np.asarray(a, dtype=np.float64)
        if not isinstance(layer, Embedding):
            bound = max(bound, magnitude_bound(layer, a_in, a))
    return a, mask, bound


def reference_mse(model, x, y, batch_size):
    """Sequential.evaluate's mse: per batch the mean over kept positions (the output mask for [N, T, K] outputs),
    averaged over batches weighted by their sizes."""
    out, mask, bound = reference_predict(model, x)
    if bound > 1e15 and model.layers[-1].dtype == "float32":
        return math.nan  # squares of such values overflow float32: nothing to compare
    y = np.asarray(y).astype(model.layers[-1].dtype).astype(np.float64)
    if y.shape != out.shape:
        y = y[..., None]
    per_position = np.mean(np.square(out - y), axis=-1)
    N, total = out.shape[0], 0.0
    for start in range(0, N, batch_size):
        values = per_position[start:start + batch_size]
        if mask is not None and out.ndim == 3:
            kept = mask[start:start + batch_size]
            value = float(values[kept].sum()) / max(int(kept.sum()), 1)
        else:
            value = float(values.sum()) / max(values.size, 1)
        total += value * values.shape[0]
    return total / N


# ---------------------------------------------------------------------------------------------------------
# generated models
# ---------------------------------------------------------------------------------------------------------
RECURRENT_KINDS = ["SimpleRNN", "LSTM", "GRU", "Jordan", "Bidirectional"]


@st.composite
def recurrent_specs(draw, last, big):
    kind = draw(st.sampled_from(RECURRENT_KINDS))
    spec = {"kind": kind, "units": draw(st.integers(1, 16 if big else 4)),
            "return_sequences": True if not last else draw(st.booleans()),
            "go_backwards": draw(st.booleans()), "use_bias": draw(st.booleans())}
    if kind == "Bidirectional":
        spec["inner"] = draw(st.sampled_from(["SimpleRNN", "LSTM", "GRU"]))
        spec["merge_mode"] = draw(st.sampled_from(["concat", "sum", "mul", "ave"]))
    if kind == "SimpleRNN" or spec.get("inner") == "SimpleRNN":
        spec["activation"] = draw(st.sampled_from(["tanh", "relu"]))
    if kind == "GRU" or spec.get("inner") == "GRU":
        spec["reset_after"] = draw(st.booleans())
    if kind == "LSTM" or spec.get("inner") == "LSTM":
        spec["unit_forget_bias"] = draw(st.booleans())
    if kind == "Jordan":
        spec["output_units"] = draw(st.integers(1, 4))
        spec["activation"] = draw(st.sampled_from(["tanh", "relu", "sigmoid"]))
        spec["output_activation"] = draw(st.sampled_from([None, "linear", "tanh", "sigmoid"]))
    return spec


@st.composite
def model_specs(draw):
    big = draw(st.integers(0, 4)) == 4  # one model in five gets larger sizes
    spec = {"dtype": draw(st.sampled_from(["float32", "float64"])), "big": big,
            "front": draw(st.sampled_from([None, "masking", "embedding"])),
            "given_shape": draw(st.booleans()), "bias": draw(st.sampled_from(["zeros", "random_normal"])),
            "C": draw(st.integers(1, 12 if big else 3))}
    n_core = draw(st.integers(0, 2))
    spec["cores"] = [draw(recurrent_specs(last=i == n_core - 1, big=big)) for i in range(n_core)]
    if spec["front"] == "embedding":
        spec["vocab"], spec["mask_zero"] = draw(st.integers(2, 9)), draw(st.booleans())
    spec["rank"] = 3 if spec["front"] or n_core else draw(st.sampled_from([2, 3]))
    spec["dropout"] = draw(st.sampled_from([None, 0.0, 0.3]))
    has_head = draw(st.booleans()) or not (spec["front"] or n_core)
    spec["head"] = {"units": draw(st.integers(1, 3)),
                    "activation": draw(st.sampled_from(sorted(ACTIVATIONS)))} if has_head else None
    return spec


def _recurrent_layer(kind, spec, dtype, bias, **kw):
    options = dict(return_sequences=spec["return_sequences"], go_backwards=spec["go_backwards"],
                   use_bias=spec["use_bias"], bias_initializer=bias, dtype=dtype, **kw)
    if kind == "SimpleRNN":
        return SimpleRNN(spec["units"], activation=spec["activation"], **options)
    if kind == "LSTM":
        return LSTM(spec["units"], unit_forget_bias=spec["unit_forget_bias"], **options)
    return GRU(spec["units"], reset_after=spec["reset_after"], **options)


def build_model(spec):
    dtype, bias = spec["dtype"], spec["bias"]
    first = {}
    if spec["given_shape"]:
        if spec["front"] == "embedding":
            first["input_shape"] = (None,)
        else:
            first["input_shape"] = (None, spec["C"]) if spec["rank"] == 3 else (spec["C"],)

    def once():
        kw = dict(first)
        first.clear()
        return kw

    layers = []
    if spec["front"] == "masking":
        layers.append(Masking(0.0, dtype=dtype, **once()))
    elif spec["front"] == "embedding":
        layers.append(Embedding(spec["vocab"], spec["C"], mask_zero=spec["mask_zero"], dtype=dtype, **once()))
    for core in spec["cores"]:
        if core["kind"] == "Jordan":
            layers.append(Jordan(core["units"], core["output_units"], activation=core["activation"],
                                 output_activation=core["output_activation"],
                                 return_sequences=core["return_sequences"], go_backwards=core["go_backwards"],
                                 use_bias=core["use_bias"], bias_initializer=bias, dtype=dtype, **once()))
        elif core["kind"] == "Bidirectional":
            inner = _recurrent_layer(core["inner"], core, dtype, bias)
            layers.append(Bidirectional(inner, merge_mode=core["merge_mode"], **once()))
        else:
            layers.append(_recurrent_layer(core["kind"], core, dtype, bias, **once()))
    if spec["dropout"] is not None:
        layers.append(Dropout(spec["dropout"], dtype=dtype, **once()))
    if spec["head"]:
        layers.append(Dense(spec["head"]["units"], activation=spec["head"]["activation"], bias_initializer=bias,
                            dtype=dtype, **once()))
    return Sequential(layers)


def output_shape(model, spec, x_shape):
    """The model's output shape for valid inputs of x_shape, worked out from the spec."""
    shape = tuple(x_shape)
    if spec["front"] == "embedding":
        shape = (*shape, spec["C"])
    for core in spec["cores"]:
        width = core["output_units"] if core["kind"] == "Jordan" else core["units"]
        if core["kind"] == "Bidirectional" and core["merge_mode"] == "concat":
            width *= 2
        shape = (shape[0], shape[1], width) if core["return_sequences"] else (shape[0], width)
    if spec["head"]:
        shape = (*shape[:-1], spec["head"]["units"])
    return shape


# ---------------------------------------------------------------------------------------------------------
# generated inputs
# ---------------------------------------------------------------------------------------------------------
# (repeated entries make the common, valid cases more frequent)
X_DTYPES = ["float64", "float32"] * 6 + ["float16", "int8", "int32", "int64", "uint8", "bool", "object", "complex64",
                                         "complex128", "str"]
ID_DTYPES = ["int64", "int32"] * 6 + ["int8", "uint8", "uint64", "float64", "float32", "bool", "object", "complex128"]
LAYOUTS = ["C"] * 4 + ["F", "neg_batch", "neg_time", "strided", "broadcast", "readonly", "list"]
SPECIALS = [None] * 12 + ["nan", "inf", "-inf", "huge"]


def relayout(a, layout):
    """The same values (broadcast: row 0 repeated) in another memory layout."""
    if a.ndim < 2 and layout not in ("C", "list", "readonly"):
        return a
    if layout == "F":
        return np.asfortranarray(a)
    if layout == "neg_batch":
        return np.ascontiguousarray(a[::-1])[::-1]
    if layout == "neg_time":
        return np.ascontiguousarray(a[:, ::-1])[:, ::-1]
    if layout == "strided":
        big = np.zeros((a.shape[0], 2 * a.shape[1], *a.shape[2:]), a.dtype)
        big[:, ::2] = a
        return big[:, ::2]
    if layout == "broadcast" and a.shape[0]:
        return np.broadcast_to(a[:1], a.shape)
    if layout == "readonly":
        a = a.copy()
        a.flags.writeable = False
        return a
    if layout == "list":
        return a.tolist()
    return a


def with_dtype(a, dtype, rng):
    if dtype == "object":
        return a.astype(object)
    if dtype == "str":
        return a.astype(str)
    if dtype.startswith("complex"):
        with np.errstate(over="ignore", invalid="ignore"):
            return (a + 1j * rng.standard_normal(a.shape)).astype(dtype)
    if dtype == "bool":
        return a > 0
    if dtype.startswith(("int", "uint")):
        whole = np.round(np.nan_to_num(a, nan=0.0, posinf=3.0, neginf=-3.0))
        return np.clip(whole, 0 if dtype.startswith("u") else -3, 3).astype(dtype)
    with np.errstate(over="ignore"):
        return a.astype(dtype)


@st.composite
def batches(draw, spec):
    """(x as given to the model, a description). The shape, lengths, padding (at the end, at the start, or each
    sequence either) and holes follow the spec."""
    big = spec["big"] or draw(st.integers(0, 9)) == 9
    empty = draw(st.integers(0, 9)) == 9  # one batch in ten without samples, one in ten without steps
    N = 0 if empty else draw(st.integers(1, 40 if big else 5))
    T = 0 if draw(st.integers(0, 9)) == 9 else draw(st.integers(1, 30 if big else 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    lengths = rng.integers(0, T + 1, size=N) if draw(st.booleans()) else np.full(N, T)
    padding = draw(st.sampled_from(["post", "post", "pre", "mixed"]))  # pad_sequences' padding="post" / "pre"
    pre = rng.random(N) < 0.5 if padding == "mixed" else np.full(N, padding == "pre")
    steps = np.arange(T)
    pad = np.where(pre[:, None], steps < T - lengths[:, None], steps >= lengths[:, None])
    hole = draw(st.integers(0, 9)) == 9 and T >= 3 and N >= 1
    if hole:  # sequence 0: True, False, True, ...: neither right- nor left-padded
        pad[0] = steps == 1
    rank_change = draw(st.sampled_from([0] * 18 + [-1, 1]))
    layout = draw(st.sampled_from(LAYOUTS))
    if spec["front"] == "embedding":
        dtype = draw(st.sampled_from(ID_DTYPES))
        ids = rng.integers(1, spec["vocab"], size=(N, T)).astype(np.float64)
        ids[pad] = 0
        special = draw(st.sampled_from([None] * 12 + ["out_of_range", "negative", "fraction", "huge", "nan"]))
        if special and ids.size:
            at = tuple(rng.integers(0, s) for s in ids.shape)
            ids[at] = {"out_of_range": spec["vocab"], "negative": -1, "fraction": 0.5, "huge": 1e20,
                       "nan": np.nan}[special]
        if dtype in ("float64", "float32"):
            x = ids.astype(dtype)
        elif dtype in ("object", "complex128"):
            x = ids.astype(dtype)
        elif dtype == "bool":
            x = ids > 0
        else:
            finite = np.nan_to_num(ids, nan=0.0, posinf=0.0, neginf=0.0)
            info = np.iinfo(dtype)
            x = np.clip(finite, max(info.min, -1000), min(info.max, 1000)).astype(dtype)
        shape = x.shape
        if rank_change == 1:
            x = x[..., None]
        elif rank_change == -1:
            x = x.reshape(-1)
        description = dict(N=N, T=T, dtype=dtype, layout=layout, special=special, padding=padding, hole=hole,
                           shape=shape)
        return relayout(x, layout), description
    C = spec["C"] + draw(st.sampled_from([0] * 19 + [1]))  # one in twenty with a wrong feature size
    dtype = draw(st.sampled_from(X_DTYPES))
    scale = draw(st.sampled_from([1.0, 1.0, 1.0, 100.0, 1e20]))
    if spec["rank"] == 2:
        x = scale * rng.standard_normal((N, C))
    else:
        x = scale * rng.standard_normal((N, T, C))
        if spec["front"] == "masking":
            x[pad] = 0.0
    special = draw(st.sampled_from(SPECIALS))
    if special and x.size:
        at = tuple(rng.integers(0, s) for s in x.shape)
        x[at] = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf, "huge": 1e39}[special]
    x = with_dtype(x, dtype, rng)
    if rank_change == 1:
        x = x[..., None]
    elif rank_change == -1:
        x = x.reshape(x.shape[0], x[0].size if len(x) else 0) if x.ndim == 3 else x.reshape(-1)
    description = dict(N=N, T=T, C=C, dtype=dtype, layout=layout, special=special, scale=scale, padding=padding,
                       hole=hole)
    return relayout(x, layout), description


def x_problems(spec, model, x, name="x"):
    """What Sequential must reject in x, as two lists of (exception type, argument name) pairs: what its checks
    of x find, and (for an x that passes them) what the forward pass finds (a mask with a hole, or for a Jordan
    layer one that is not right-padded)."""
    xa = np.asarray(x)
    first = model.layers[0]
    if spec["front"] == "embedding":
        whole = xa.dtype.kind == "f" and np.isfinite(xa).all() and np.all(xa == np.round(xa))
        if xa.dtype.kind not in "iu" and not whole:
            return [(TypeError, name)], []
        if xa.size and (xa.min() < 0 or xa.max() >= spec["vocab"]):
            return [(ValueError, name)], []
    else:
        if xa.dtype.kind not in "biuf":
            return [(TypeError, name)], []
        with np.errstate(over="ignore"):
            if not np.isfinite(xa.astype(first.dtype)).all():
                return [(ValueError, name)], []
    if xa.ndim < 2 or (spec["front"] != "embedding" and xa.shape[-1] == 0):
        return [(ValueError, name)], []
    if model.built:
        expected = model.build_input_shape
        if len(expected) != xa.ndim or (spec["front"] != "embedding" and expected[-1] != xa.shape[-1]):
            return [(ValueError, name)], []
    elif spec["cores"] and xa.ndim != (2 if spec["front"] == "embedding" else 3):
        return [(ValueError, name)], []
    if spec["cores"] and spec["front"] and xa.shape[0]:
        if spec["front"] == "masking":
            mask = np.any(xa.astype(first.dtype) != 0.0, axis=-1)
        else:
            mask = xa != 0 if spec["mask_zero"] else None
        jordan = any(core["kind"] == "Jordan" for core in spec["cores"])
        if mask is not None and (not padded(mask) or jordan and prefix_lengths(mask) is None):
            return [], [(ValueError, "mask")]
    return [], []


@st.composite
def targets(draw, shape):
    """y for a model output of ``shape``: sometimes of another shape, dtype, or with NaN."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    variant = draw(st.sampled_from(["same"] * 20 + ["squeeze", "extra_axis", "wrong_k", "wrong_n", "wrong_t"]))
    shape = list(shape)
    if variant == "squeeze":
        shape = shape[:-1]
    elif variant == "extra_axis":
        shape = shape + [1]
    elif variant == "wrong_k":
        shape[-1] += 1
    elif variant == "wrong_n":
        shape[0] += 1
    elif variant == "wrong_t" and len(shape) == 3:
        shape[1] += 1
    y = rng.standard_normal(shape)
    if draw(st.integers(0, 19)) == 19 and y.size:
        y.flat[rng.integers(0, y.size)] = draw(st.sampled_from([np.nan, np.inf]))
    dtype = draw(st.sampled_from(["float32"] * 12 + ["float64"] * 4 + ["int32", "bool", "object", "complex64"]))
    return with_dtype(y, dtype, rng)


def y_problems(model, spec, x, y, name="y"):
    ya = np.asarray(y)
    if ya.dtype.kind not in "biuf":
        return [(TypeError, name)]
    if not np.isfinite(ya).all():
        return [(ValueError, name)]
    out = output_shape(model, spec, np.shape(np.asarray(x)))
    if ya.shape != out and not (out[-1] == 1 and ya.shape == out[:-1]):
        return [(ValueError, name)]
    return []


GOOD_BATCH_SIZES = [None, 1, 2, 3, 7, 32, 2**31, 2**62, np.int64(3), np.uint64(2**63)]
BAD_BATCH_SIZES = [0, -1, -(2**40), True, 2.0, 1.5, "4", np.int8(-2)]
BATCH_SIZES = GOOD_BATCH_SIZES * 3 + BAD_BATCH_SIZES


def batch_size_problems(batch_size):
    if batch_size is None:
        return []
    ok = isinstance(batch_size, (int, np.integer)) and not isinstance(batch_size, bool) and batch_size >= 1
    return [] if ok else [(ValueError, "batch_size")]


def count_problems(name, value, minimum):
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= minimum
    return [] if ok else [(ValueError, name)]


def make_model(spec, seed):
    rnnkit.set_seed(seed)
    model = build_model(spec)
    return model


def check_predict(model, spec, x, out):
    xa = np.asarray(x)
    assert out.shape == output_shape(model, spec, xa.shape) and out.dtype == np.dtype(spec["dtype"])
    if xa.shape[0]:
        with np.errstate(all="ignore"):
            ref, _, bound = reference_predict(model, xa)
        if spec["dtype"] == "float32" and bound > 1e30:
            event("predict: values not compared (float32 overflow possible on the way)")
        else:
            values_close(out, ref, spec["dtype"], "predict")


# ---------------------------------------------------------------------------------------------------------
# the tests
# ---------------------------------------------------------------------------------------------------------
@FUZZ
@given(data=st.data(), spec=model_specs(), seed=st.integers(0, 2**16))
def test_predict(data, spec, seed):
    model = make_model(spec, seed)
    x, _ = data.draw(batches(spec), label="x")
    batch_size = data.draw(st.sampled_from(BATCH_SIZES), label="batch_size")
    problems, forward = x_problems(spec, model, x)
    problems = problems or batch_size_problems(batch_size) or forward
    with watchdog():
        out, _ = attempt(lambda: model.predict(x, batch_size=batch_size), problems, "predict")
    if out is not None:
        check_predict(model, spec, x, out)


@FUZZ
@given(data=st.data(), spec=model_specs(), seed=st.integers(0, 2**16))
def test_evaluate(data, spec, seed):
    model = make_model(spec, seed)
    model.compile("sgd", "mse")
    x, _ = data.draw(batches(spec), label="x")
    problems, forward = x_problems(spec, model, x)
    shape = output_shape(model, spec, np.shape(np.asarray(x))) if not problems else (max(np.shape(x)[:1] or (1,)), 1)
    y = data.draw(targets(shape), label="y")
    batch_size = data.draw(st.sampled_from(BATCH_SIZES), label="batch_size")
    if not problems:
        problems = y_problems(model, spec, x, y) + batch_size_problems(batch_size)
        if not problems and np.shape(np.asarray(x))[0] == 0:
            problems = [(ValueError, "x")]
        problems = problems or forward
    with watchdog():
        loss, _ = attempt(lambda: model.evaluate(x, y, batch_size=batch_size), problems, "evaluate")
    if loss is not None:
        assert isinstance(loss, float)
        with np.errstate(all="ignore"):
            expected = reference_mse(model, np.asarray(x), y, 32 if batch_size is None else int(batch_size))
        if math.isfinite(expected) and abs(expected) < 1e30:
            tol = TOLERANCE[spec["dtype"]]
            assert loss == pytest.approx(expected, rel=5 * tol, abs=5 * tol)


VALIDATION_SPLITS = [0.0, 0.0, 0.0, 0.25, 0.5, None, False, np.float32(0.5)] * 6 + [
    0.9, 1.0, -0.1, 1.5, math.nan, math.inf, True, "0.5", [0.5]]


def validation_split_problems(value, N):
    if value is None:
        return []
    if isinstance(value, (str, list)):
        return [(TypeError, "validation_split")]
    fraction = float(value)
    if not 0.0 <= fraction < 1.0:
        return [(ValueError, "validation_split")]
    if fraction and int(N * (1.0 - fraction)) in (0, N):
        return [(ValueError, "validation_split")]
    return []


@FUZZ
@given(data=st.data(), spec=model_specs(), seed=st.integers(0, 2**16))
def test_fit(data, spec, seed):
    model = make_model(spec, seed)
    model.compile(data.draw(st.sampled_from(["sgd", "adam", "rmsprop", "adagrad", "adamw"]), label="optimizer"),
                  "mse")
    x, _ = data.draw(batches(spec), label="x")
    x_bad, forward = x_problems(spec, model, x)
    xa = np.asarray(x)
    shape = output_shape(model, spec, xa.shape) if not x_bad else (max(xa.shape[:1] or (1,)), 1)
    y = data.draw(targets(shape), label="y")
    kwargs = {"batch_size": data.draw(st.sampled_from(GOOD_BATCH_SIZES * 8 + BAD_BATCH_SIZES), label="batch_size"),
              "epochs": data.draw(st.sampled_from([1, 2, 1, np.int32(2), 0] * 6 + [-1, True, 1.0, None]),
                                  label="epochs"),
              "initial_epoch": data.draw(st.sampled_from([0] * 20 + [1, 3, -1, 0.5]), label="initial_epoch"),
              "validation_split": data.draw(st.sampled_from(VALIDATION_SPLITS), label="validation_split"),
              "shuffle": data.draw(st.booleans(), label="shuffle"),
              "verbose": data.draw(st.sampled_from([0] * 16 + [2, 3]), label="verbose")}
    validation = data.draw(st.sampled_from([None] * 12 + ["same", "same", "triple", "empty"]), label="validation_data")
    if validation == "same":
        kwargs["validation_data"] = (x, y)
    elif validation == "triple":
        kwargs["validation_data"] = (x, y, y)
    elif validation == "empty":
        kwargs["validation_data"] = (xa[:0], np.asarray(y)[:0])
    problems = (batch_size_problems(kwargs["batch_size"]) + count_problems("epochs", kwargs["epochs"], 0)
                + count_problems("initial_epoch", kwargs["initial_epoch"], 0))
    if not problems:
        problems = x_bad
    if not problems:
        problems = y_problems(model, spec, x, y)
    if not problems and xa.shape[0] == 0:
        problems = [(ValueError, "x")]
    if not problems and validation in ("triple", "empty"):
        problems = [(ValueError, "validation_data")]
    if not problems and validation is None:
        problems = validation_split_problems(kwargs["validation_split"], xa.shape[0])
    if not problems and kwargs["verbose"] == 3:
        problems = [(ValueError, "verbose")]
    epochs = list(range(int(kwargs["initial_epoch"]), int(kwargs["epochs"]))) if not problems else []
    # a bad mask fails the forward pass of the batch it is in, unless training stopped before (NaN loss)
    may = forward if epochs and not problems else []
    with watchdog():
        history, _ = attempt(lambda: model.fit(x, y, **kwargs), problems, "fit", may)
    if history is None:
        return
    losses = history.history.get("loss", [])
    stopped = model.stop_training  # only fit's own stop on a NaN or inf loss, gradient or update sets it here
    if stopped:
        event("fit: stopped (a step would have made NaN or inf)")
        assert history.epoch == epochs[:len(history.epoch)]
    else:
        assert history.epoch == epochs
    assert all(math.isfinite(v) for v in losses[:-1])
    assert stopped or not may, "fit ran every batch without the forward pass failing on the mask"
    for w in model.get_weights():
        assert np.isfinite(w).all(), "fit left non-finite weights"
    out, _ = attempt(lambda: model.predict(x), forward, "predict after fit")
    if out is not None:
        check_predict(model, spec, x, out)


# ---- the recurrent layers called directly, with masks and initial states -----------------------------------
MASK_KINDS = [None, "prefix", "suffix", "mixed"] * 3 + ["prefix_int", "suffix_float", "hole", "hole", "long", "short",
                                                      "rows", "flat"]
STATE_KINDS = [None, "given"] * 4 + ["wrong_shape", "wrong_count", "complex"]


@st.composite
def layer_cases(draw):
    spec = draw(recurrent_specs(last=True, big=draw(st.integers(0, 4)) == 4))
    if spec["kind"] != "Jordan" and draw(st.booleans()):
        spec["return_state"] = True
    dtype = draw(st.sampled_from(["float32", "float64"]))
    N, T, C = draw(st.integers(0, 5)), draw(st.integers(0, 6)), draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = draw(st.sampled_from([1.0, 1.0, 10.0])) * rng.standard_normal((N, T, C))
    special = draw(st.sampled_from([None] * 3 + ["nan", "inf", "-inf"]))
    if special and x.size:
        x[tuple(rng.integers(0, s) for s in x.shape)] = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf}[special]
    x_dtype = draw(st.sampled_from(["float64", "float32"] * 5 + ["float16", "int32", "bool", "object", "complex128",
                                                                 "str"]))
    x = relayout(with_dtype(x, x_dtype, rng), draw(st.sampled_from(LAYOUTS)))
    lengths = rng.integers(0, T + 1, size=N)
    prefix = np.arange(T) < lengths[:, None]  # right-padded
    suffix = np.arange(T) >= T - lengths[:, None]  # left-padded
    mask_kind = draw(st.sampled_from(MASK_KINDS))
    mask = {None: None, "prefix": prefix, "suffix": suffix, "mixed": np.where(rng.random((N, 1)) < 0.5, prefix, suffix),
            "prefix_int": prefix.astype(np.int32), "suffix_float": suffix * 1.0,
            "long": np.ones((N, T + 1), bool), "short": prefix[:, :-1] if T else np.ones((N, 1), bool),
            "rows": np.ones((N + 1, T), bool), "flat": np.ones(N, bool)}.get(mask_kind)
    if mask_kind == "hole":
        mask = np.ones((N, T), bool)
        if N and T >= 3:
            mask[0, 1] = False  # True, False, True, ...: neither right- nor left-padded
    state_kind = draw(st.sampled_from(STATE_KINDS))
    return dict(spec=spec, dtype=dtype, x=x, mask=mask, mask_kind=mask_kind, state_kind=state_kind,
                training=draw(st.booleans()), rng=rng)


def make_layer(spec, dtype):
    kind = spec["kind"]
    if kind == "Jordan":
        return Jordan(spec["units"], spec["output_units"], activation=spec["activation"],
                      output_activation=spec["output_activation"], return_sequences=spec["return_sequences"],
                      go_backwards=spec["go_backwards"], use_bias=spec["use_bias"],
                      bias_initializer="random_normal", dtype=dtype)
    extra = {"return_state": True} if spec.get("return_state") else {}
    if kind == "Bidirectional":
        return Bidirectional(_recurrent_layer(spec["inner"], spec, dtype, "random_normal", **extra),
                             merge_mode=spec["merge_mode"])
    return _recurrent_layer(kind, spec, dtype, "random_normal", **extra)


def initial_states(layer, kind, N, rng):
    """(initial_state argument, the states as float64 arrays or None)."""
    if kind is None:
        return None, None
    if isinstance(layer, Jordan):
        sizes = [layer.output_units]
    elif isinstance(layer, Bidirectional):
        sizes = [layer.forward_layer.units] * (2 * layer.forward_layer.n_states)
    else:
        sizes = [layer.units] * layer.n_states
    states = [rng.standard_normal((N, size)) for size in sizes]
    if kind == "wrong_shape":
        states[0] = states[0][:, :-1] if sizes[0] > 1 else np.zeros((N + 1, 1))
    elif kind == "wrong_count":
        states = states + states[:1]
    elif kind == "complex":
        states[0] = states[0] + 1j
    return states, states


def layer_problems(case, layer, x, states):
    xa = np.asarray(x)
    if xa.dtype.kind not in "biuf":
        return [(TypeError, "x")]
    if xa.ndim != 3:
        return [(ValueError, "x")]
    N, T = xa.shape[:2]
    problems = []
    kind, mask = case["mask_kind"], case["mask"]
    if kind in ("long", "short", "rows", "flat"):
        problems.append((ValueError, "mask"))
    elif mask is not None and (not padded(mask) or isinstance(layer, Jordan) and prefix_lengths(mask) is None):
        problems.append((ValueError, "mask"))
    state_kind = case["state_kind"]
    if state_kind == "complex":
        problems.append((TypeError, "initial_state"))
    elif state_kind == "wrong_count" and not isinstance(layer, Jordan):
        problems.append((ValueError, "initial_state"))
    elif state_kind == "wrong_shape":
        problems.append((ValueError, "initial_state"))
    return problems


def reference_layer(layer, xa, mask, states):
    """Output(s) of the layer in float64 (a list with return_state), and what its backward check needs."""
    a = xa.astype(layer.dtype).astype(np.float64)
    if isinstance(layer, Jordan):
        lengths = None if mask is None else prefix_lengths(mask)
        out, cache = ref_jordan(layer, a, lengths, y0=None if states is None else states[0])
        return out, cache
    if isinstance(layer, Bidirectional):
        f, b = layer.forward_layer, layer.backward_layer
        n = f.n_states
        out_f = ref_recurrent(f, a, mask, zeros=True, states=() if states is None else states[:n])
        out_b = ref_recurrent(b, a, mask, zeros=True, align=True, states=() if states is None else states[n:])
        (y_f, *s_f), (y_b, *s_b) = (out_f, out_b) if f.return_state else ([out_f], [out_b])
        merged = {"concat": lambda: np.concatenate([y_f, y_b], axis=-1), "sum": lambda: y_f + y_b,
                  "mul": lambda: y_f * y_b, "ave": lambda: (y_f + y_b) / 2}[layer.merge_mode]()
        return ([merged, *s_f, *s_b] if f.return_state else merged), None
    y, final, cache = ref_recurrent_front(layer, a, mask, () if states is None else states)
    if layer.return_sequences:
        out = show_steps(y, keras_steps(steps_mask(mask, a), layer.go_backwards))
    else:
        out = final[0]
    return ([out, *final] if layer.return_state else out), cache


def check_layer_backward(layer, x64, mask, cache, outputs, rng):
    """The layer's backward against the reference kernel's (on each sequence's valid steps moved to the front,
    see ref_recurrent_front), for a random output gradient."""
    outputs = outputs if isinstance(outputs, list) else [outputs]
    douts = [rng.standard_normal(o.shape).astype(layer.dtype) for o in outputs]
    dx = layer.backward(douts if len(douts) > 1 else douts[0])
    d64 = _f64(douts)
    T, N = x64.shape[1], x64.shape[0]
    mask = steps_mask(mask, x64)
    if isinstance(layer, Jordan):
        lengths = mask.sum(axis=1)
        if layer.return_sequences:
            dy = reverse_valid(d64[0], lengths) if layer.go_backwards else d64[0]
            dy_t, dy_n = dy.transpose(1, 0, 2), None
        else:
            dy_t, dy_n = np.zeros((T, N, layer.output_units)), d64[0]
        ref = reference.jordan_backward(cache, dy_t, dy_n)
        grads = [ref[2], ref[3], ref[5], ref[4], ref[6]][:len(layer.weights)]
        states = [ref[1]]
    else:
        H, n = layer.units, layer.n_states
        dstates = list(d64[1:]) + [None] * (n - len(d64[1:]))
        if layer.return_sequences:
            dy_t = show_steps_grad(d64[0], keras_steps(mask, layer.go_backwards)).transpose(1, 0, 2)
        else:
            dy_t = np.zeros((T, N, H))
            dstates[0] = d64[0] if dstates[0] is None else dstates[0] + d64[0]
        ref = getattr(reference, f"{layer.cell}_backward")(cache, dy_t, *dstates)
        grads, states = list(ref[1 + n:])[:len(layer.weights)], list(ref[1:1 + n])
    dx_ref = np.empty((N, T, x64.shape[2]))
    dx_ref[np.arange(N)[:, None], valid_first(mask)] = ref[0].transpose(1, 0, 2)  # back to the input steps
    values_close(dx, dx_ref, layer.dtype, "dx")
    for i, (g, r) in enumerate(zip(layer.grads, grads)):
        values_close(g, r, layer.dtype, f"grad {layer.weight_names[i]}")
    for g, r in zip(layer.state_grads, states):
        values_close(g, r, layer.dtype, "initial state gradient")


@FUZZ
@given(case=layer_cases())
def test_recurrent_layer_call(case):
    rnnkit.set_seed(0)
    layer = make_layer(case["spec"], case["dtype"])
    x, rng = case["x"], case["rng"]
    xa = np.asarray(x)
    N = xa.shape[0] if xa.ndim else 0
    state_arg, states = initial_states(layer, case["state_kind"], N, rng)
    problems = layer_problems(case, layer, x, state_arg)
    with watchdog(), warnings.catch_warnings():
        if xa.dtype.kind in "biuf" and not np.isfinite(xa.astype(np.float64)).all():
            # NaN and inf propagate through the layer's NumPy arithmetic (merging, activations) with NumPy's
            # RuntimeWarnings, as any NumPy code on such values (a model rejects them before computing)
            warnings.simplefilter("ignore", RuntimeWarning)
        out, _ = attempt(lambda: layer(x, mask=case["mask"], initial_state=state_arg, training=case["training"]),
                         problems, "layer call")
    if out is None:
        return
    mask = None if case["mask"] is None else np.asarray(case["mask"], bool)
    with np.errstate(all="ignore"):  # NaN and inf in x: the reference propagates them, with NumPy's warnings
        expected, cache = reference_layer(layer, xa, mask, None if states is None else _f64(states))
    for i, (o, e) in enumerate(zip(out if isinstance(out, list) else [out],
                                   expected if isinstance(expected, list) else [expected])):
        values_close(o, e, layer.dtype, f"layer output {i}")
    x64 = xa.astype(layer.dtype).astype(np.float64)
    if cache is not None and case["training"] and np.isfinite(x64).all() and xa.shape[0]:
        check_layer_backward(layer, x64, mask, cache, out, rng)
