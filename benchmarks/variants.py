"""What the cells' variants cost against their default cell, in one interleaved run: other activations, a clip,
LSTM peepholes (the cells' generic path, each equation over a row of units at a time) and the LSTM's output
projection (one more product per step: W_hr [P, H] with P = H/4), each at the profile's ``variants_point``
(T, N, C, H), inference (``return_cache=False``) and a training step (forward with its cache, then backward).
Ratio = the variant's median time / its default cell's.
"""

from __future__ import annotations

import numpy as np

from benchmarks.timing import interleaved, summary

# name -> (cell, the forward's options, its default cell's name)
VARIANTS = {
    "lstm": ("lstm", {}, None),
    "lstm peepholes": ("lstm", {"peepholes": True}, "lstm"),
    "lstm hard_sigmoid/relu": ("lstm", {"activations": ["hard_sigmoid", "relu", "tanh"]}, "lstm"),
    "lstm clip": ("lstm", {"clip": 3.0}, "lstm"),
    "lstm proj_size H/4": ("lstm", {"proj": True}, "lstm"),
    "gru": ("gru", {}, None),
    "gru softsign/elu": ("gru", {"activations": ["softsign", "elu"]}, "gru"),
    "gru clip": ("gru", {"clip": 3.0}, "gru"),
}


def _calls(F, T, N, C, H, seed=0):
    """{name: (inference call, training call)} of every variant."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, N, C)).astype(np.float32)
    calls = {}
    for name, (cell, options, _) in VARIANTS.items():
        G, options = (4 if cell == "lstm" else 3), dict(options)
        P = H // 4 if options.pop("proj", False) else H
        W_ih = (0.05 * rng.standard_normal((G * H, C))).astype(np.float32)
        W_hh = (0.05 * rng.standard_normal((G * H, P))).astype(np.float32)
        b = np.zeros(G * H, np.float32)
        if options.pop("peepholes", False):
            options["peepholes"] = np.zeros(3 * H, np.float32)
        if P != H:
            options["W_hr"] = (0.05 * rng.standard_normal((P, H))).astype(np.float32)
        forward, backward = getattr(F, f"{cell}_forward"), getattr(F, f"{cell}_backward")
        dy = np.ones((T, N, P), np.float32)

        def infer(forward=forward, W_ih=W_ih, W_hh=W_hh, b=b, options=options):
            return forward(x, W_ih, W_hh, b, b, return_cache=False, **options)

        def train(forward=forward, backward=backward, W_ih=W_ih, W_hh=W_hh, b=b, options=options, dy=dy):
            return backward(forward(x, W_ih, W_hh, b, b, **options)[-1], dy)

        calls[name] = (infer, train)
    return calls


def measure_variants(prof):
    import rnnkit.functional as F

    T, N, C, H = prof.variants_point
    calls = _calls(F, T, N, C, H)
    out = {"T": T, "N": N, "C": C, "H": H, "inference": {}, "training": {}}
    for k, what in enumerate(("inference", "training")):
        raw = interleaved({name: fns[k] for name, fns in calls.items()}, {name: prof.repeats for name in calls},
                          prof.min_time, settle=prof.settle)
        for name in calls:
            out[what][name] = summary(raw[name]["samples"])
        for name, (_, _, base) in VARIANTS.items():
            rec = out[what][name]
            rec["ratio_to_default"] = rec["median_s"] / out[what][base]["median_s"] if base else 1.0
    return out


def print_variants(v, table):
    print(f"\n== cell variants against their default cell, T{v['T']} N{v['N']} C{v['C']} H{v['H']} (median; "
          "ratio: time / the default cell's) ==")
    rows = [[name, f"{v['inference'][name]['median_s'] * 1e3:.2f}", f"{v['inference'][name]['ratio_to_default']:.2f}",
             f"{v['training'][name]['median_s'] * 1e3:.2f}", f"{v['training'][name]['ratio_to_default']:.2f}"]
            for name in VARIANTS]
    print(table(["variant", "inference ms", "ratio", "training ms", "ratio"], rows))
