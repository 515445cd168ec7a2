"""The model API's cost: the same built-in layers in ``rnnkit.Sequential``, a functional model
(``rnnkit.Input`` -> layers -> ``rnnkit.Model(inputs, outputs)``) and a subclassed model (``class M(rnnkit.Model)``
with ``call``), all three holding identical weights, timed against each other in one interleaved run.

- Training step (``train_on_batch(x, y)`` after ``compile("adam", "mse")``) and ``predict(x)`` of
  LSTM(H) -> Dense(1) at [N, T, C] (the profile's ``model_api_train``): time per call, and ratio to Sequential's.
- Batch-1 prediction of Input(shape=(T, C)) -> LSTM(H) -> Dense(1) (``model_api_small``): ``predict(x)`` and
  ``model(x)`` of each model, and in the same rotation the bare kernels that prediction needs
  (``rnnkit.functional.lstm_forward`` on the time-major [T, 1, C] array with the layer's weights and
  ``return_cache=False``, then the Dense's ``h @ kernel + bias``): the overhead is model time - kernel time.

- Leading padding (``model_api_train`` sizes, an LSTM(H) layer's forward and backward, return_sequences False and
  True, and inference): a batch whose masks pad at the start (``pad_sequences``' default ``padding="pre"``)
  against the same sequences padded at the end, lengths uniform in [T/5, T]; ratio = left / right.

Ratios are of medians (``ratio_to_sequential``), and also the median of the per-round ratios
(``ratio_to_sequential_paired``). Every record also gives ``cyclic_garbage``: the objects one call leaves to the
cycle collector (which the timing, with the collector off during a round as in timeit, does not charge to the call).
"""

from __future__ import annotations

import gc

import numpy as np

from benchmarks.timing import interleaved, summary

KINDS = ("sequential", "functional", "subclassed")
KERNELS = "kernels"  # the bare kernel calls, in the batch-1 rotation


def build_models(rnnkit, T, C, H, out=1, seed=0):
    """{kind: model} of LSTM(H) -> Dense(out) on [N, T, C], built, with the Sequential's weights copied into the
    others."""
    L = rnnkit.layers
    seq = rnnkit.Sequential([L.LSTM(H, input_shape=(T, C)), L.Dense(out)])

    inp = rnnkit.Input(shape=(T, C))
    fun = rnnkit.Model(inp, L.Dense(out)(L.LSTM(H)(inp)))

    class Subclassed(rnnkit.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.lstm = L.LSTM(H)
            self.dense = L.Dense(out)

        def call(self, inputs, training=None):
            return self.dense(self.lstm(inputs))

    sub = Subclassed()
    sub.build((None, T, C))
    rng = np.random.default_rng(seed)
    weights = [rng.uniform(-0.3, 0.3, w.shape).astype(w.dtype) for w in seq.get_weights()]
    models = {"sequential": seq, "functional": fun, "subclassed": sub}
    for m in models.values():
        m.set_weights(weights)
    return models


def _data(N, T, C, out=1, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((N, T, C)).astype(np.float32), rng.standard_normal((N, out)).astype(np.float32)


def _cyclic_garbage(fn):
    """Objects one call of fn leaves to the cycle collector."""
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        fn()
        return gc.collect()
    finally:
        if enabled:
            gc.enable()


def _summaries(raw, fns):
    out = {}
    for name, r in raw.items():
        s = summary(r["samples"])
        s["number"] = r["number"]
        s["median_us"] = s["median_s"] * 1e6
        s["cyclic_garbage"] = _cyclic_garbage(fns[name])
        out[name] = s
    return out


def _paired(raw, name, base):
    """The median over rounds of name's time / base's time in the same round (robust to a shift of the
    machine's speed between rounds)."""
    a, b = np.asarray(raw[name]["samples"]), np.asarray(raw[base]["samples"])
    return float(np.median(a / b))


def _max_diff(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def measure_step(rnnkit, prof):
    """Training step and predict at model_api_train = (N, T, C, H), every kind interleaved."""
    N, T, C, H = prof.model_api_train
    x, y = _data(N, T, C)
    models = build_models(rnnkit, T, C, H)
    pred = {k: m.predict(x) for k, m in models.items()}  # identical weights: identical outputs
    for m in models.values():
        m.compile("adam", "mse")
    fns = {}
    for k, m in models.items():
        fns[f"train {k}"] = (lambda m=m: m.train_on_batch(x, y))
        fns[f"predict {k}"] = (lambda m=m: m.predict(x))
    reps = {n: prof.model_api_repeats for n in fns}
    raw = interleaved(fns, reps, prof.model_api_min_time, keep_first=True, settle=prof.settle)
    stats = _summaries(raw, fns)
    rec = {"N": N, "T": T, "C": C, "H": H, "model": f"LSTM({H}) -> Dense(1)", "train": {}, "predict": {}}
    for what in ("train", "predict"):
        base = stats[f"{what} sequential"]["median_s"]
        for k in KINDS:
            s = stats[f"{what} {k}"]
            s["ratio_to_sequential"] = s["median_s"] / base
            s["ratio_to_sequential_paired"] = _paired(raw, f"{what} {k}", f"{what} sequential")
            # what the first call returned (the first step's loss; the prediction), against Sequential's
            s["max_abs_diff_vs_sequential"] = _max_diff(raw[f"{what} {k}"]["first"], raw[f"{what} sequential"]["first"])
            rec[what][k] = s
    rec["predict_before_timing_max_abs_diff"] = max(_max_diff(p, pred["sequential"]) for p in pred.values())
    return rec


def measure_batch1(rnnkit, prof):
    """predict(x) and model(x) at batch 1 for every kind, and the bare kernels, interleaved (model_api_small =
    (T, C, H))."""
    T, C, H = prof.model_api_small
    x, _ = _data(1, T, C, seed=2)
    models = build_models(rnnkit, T, C, H, seed=3)
    lstm, dense = models["sequential"].layers
    # what the layer hands the kernel (one bias or two, as the layer holds them) and the Dense's weights
    W_ih, W_hh, b_ih, b_hh = (np.array(w) for w in lstm._kernel_weights())
    kernel, bias = (np.array(w) for w in dense.get_weights())
    x_t = np.ascontiguousarray(x.transpose(1, 0, 2))  # [T, 1, C]
    lstm_forward = rnnkit.functional.lstm_forward

    def kernels():
        h = lstm_forward(x_t, W_ih, W_hh, b_ih, b_hh, return_cache=False)[1]  # (y, h_n, c_n, None)
        z = h @ kernel
        z += bias
        return z

    fns = {KERNELS: kernels}
    for k, m in models.items():
        fns[f"predict {k}"] = (lambda m=m: m.predict(x))
        fns[f"call {k}"] = (lambda m=m: m(x))
    reps = {n: prof.model_api_repeats for n in fns}
    raw = interleaved(fns, reps, prof.model_api_min_time, keep_first=True, settle=prof.settle)
    stats = _summaries(raw, fns)
    kern = stats.pop(KERNELS)
    rec = {"N": 1, "T": T, "C": C, "H": H, "model": f"Input(shape=({T}, {C})) -> LSTM({H}) -> Dense(1)",
           "kernels": kern, "predict": {}, "call": {}}
    for what in ("predict", "call"):
        base = stats[f"{what} sequential"]["median_s"] - kern["median_s"]
        for k in KINDS:
            s = stats[f"{what} {k}"]
            s["overhead_us"] = (s["median_s"] - kern["median_s"]) * 1e6
            s["overhead_minus_sequential_us"] = s["overhead_us"] - base * 1e6
            s["ratio_to_sequential"] = s["median_s"] / stats[f"{what} sequential"]["median_s"]
            s["ratio_to_sequential_paired"] = _paired(raw, f"{what} {k}", f"{what} sequential")
            s["max_abs_diff_vs_kernels"] = _max_diff(raw[f"{what} {k}"]["first"], raw[KERNELS]["first"])
            rec[what][k] = s
    return rec


def measure_leading_padding(rnnkit, prof):
    """An LSTM layer on left-padded masks against the same sequences right-padded, interleaved: {case: {"left",
    "right" (summaries), "ratio" (left / right medians), "ratio_paired"}}."""
    from rnnkit.layers.base import no_backward

    N, T, C, H = prof.model_api_train
    rng = np.random.default_rng(4)
    lengths = rng.integers(max(1, T // 5), T + 1, N)
    right = np.arange(T) < lengths[:, None]
    left = np.arange(T) >= (T - lengths)[:, None]
    x = rng.standard_normal((N, T, C)).astype(np.float32)
    x_left = np.where(left[..., None], x[np.arange(N)[:, None], (np.arange(T) - (T - lengths)[:, None]) % T], 0)
    fns, record = {}, {}
    for sequences in (False, True):
        layer = rnnkit.layers.LSTM(H, return_sequences=sequences)
        layer(x, mask=right)
        tag = "sequences" if sequences else "last"

        def train(data, mask, layer=layer):
            out = layer(data, mask=mask, training=True)
            return layer.backward(np.ones_like(out))

        def infer(data, mask, layer=layer):
            with no_backward():
                return layer(data, mask=mask)
        for name, fn in ((f"train {tag}", train), (f"inference {tag}", infer)):
            fns[f"{name} right"] = (lambda fn=fn: fn(x, right))
            fns[f"{name} left"] = (lambda fn=fn: fn(x_left, left))
    reps = {n: prof.model_api_repeats for n in fns}
    raw = interleaved(fns, reps, prof.model_api_min_time, settle=prof.settle)
    for name in sorted({n.rsplit(" ", 1)[0] for n in fns}):
        a, b = summary(raw[f"{name} left"]["samples"]), summary(raw[f"{name} right"]["samples"])
        record[name] = {"left": a, "right": b, "ratio": a["median_s"] / b["median_s"],
                        "ratio_paired": _paired(raw, f"{name} left", f"{name} right")}
    return {"N": N, "T": T, "C": C, "H": H, "cases": record}


def measure_model_api(prof):
    """{"step": measure_step's record, "batch1": measure_batch1's record, "leading_padding":
    measure_leading_padding's}: JSON data."""
    from benchmarks.peers import import_rnnkit

    rnnkit = import_rnnkit()
    return {"step": measure_step(rnnkit, prof), "batch1": measure_batch1(rnnkit, prof),
            "leading_padding": measure_leading_padding(rnnkit, prof)}
