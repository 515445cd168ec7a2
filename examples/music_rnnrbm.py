"""Polyphonic music: RNN-RBM and RNN-DBN on the Bach chorales, against two baselines.

    pip install music21            # once: the chorales' corpus (the piano rolls are then cached)
    python examples/music_rnnrbm.py [--quick] [--png generated.png]

Data: ``rnnkit.datasets.bach_chorales("quarter")``: 88-key piano rolls, one frame per quarter note, a fixed
seeded 70/15/15 split of music21's chorales. Models, all trained on the train split:
  RNN-RBM   V=88, H=150, U=100; CD-15; RBM and RNN pretraining, then Adam (lr 1e-3), sequences of 16 frames
  RNN-DBN   V=88, H=150, H2=100, U=100; stage 1 as the RNN-RBM, then the top RBM
  LSTM      next-frame predictor with independent sigmoid outputs: Sequential(Masking, LSTM(128),
            Dense(88, sigmoid)), binary cross-entropy, Adam; its input at t is [1, v_{t-1}]
  frequency each key on independently with its training frequency (add-one smoothed)
Reported on the test split:
  log-likelihood per time step (nats): the mean over test frames of log p(v_t | v_<t); for the RNN-RBM and
    RNN-DBN by annealed importance sampling (± its estimated standard deviation), exact for the others;
  frame-level accuracy (Bay et al. 2009): TP / (TP + FP + FN) summed over the test frames, the predicted
    frame being a sample of each model's p(v_t | v_<t) given the true past (a 25-step Gibbs chain from
    zeros for the RNN-RBM / RNN-DBN, independent Bernoulli draws for the others).
ICML 2012 reports about -6.3 nats per step and 33% accuracy for the RNN-RBM on JSB chorales (a different
split and resolution), so only the ordering of the models is comparable. A PNG of a generated piano roll
next to a real one is written when matplotlib is installed. The whole run takes about 10 minutes on a
machine with 2 free cores (AIS evaluation and the LSTM dominate; use --threads 1 on a busy machine).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import rnnkit
from rnnkit import datasets, generative
from rnnkit.layers import LSTM, Dense, Masking


def lstm_inputs(seqs):
    """x [N, T, 1 + V]: [1, v_{t-1}] (v_{-1} = 0; the leading 1 keeps real steps unmasked), y [N, T, V]."""
    T = max(len(s) for s in seqs)
    V = seqs[0].shape[1]
    x = np.zeros((len(seqs), T, 1 + V), np.float32)
    y = np.zeros((len(seqs), T, V), np.float32)
    for n, s in enumerate(seqs):
        x[n, : len(s), 0] = 1
        x[n, 1: len(s), 1:] = s[:-1]
        y[n, : len(s)] = s
    return x, y


def bernoulli_scores(seqs, probs, rng):
    """(log-likelihood per step, frame accuracy) of independent Bernoulli predictions probs[n] [T_n, V]."""
    ll, tp, fp, fn, frames = 0.0, 0, 0, 0, 0
    for s, p in zip(seqs, probs):
        p = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
        ll += float(np.sum(s * np.log(p) + (1 - s) * np.log1p(-p)))
        pred = rng.random(p.shape) < p
        on = s > 0
        tp, fp, fn = tp + np.sum(on & pred), fp + np.sum(~on & pred), fn + np.sum(on & ~pred)
        frames += len(s)
    return ll / frames, tp / (tp + fp + fn)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few epochs only (a smoke run)")
    parser.add_argument("--png", default="music_rnnrbm.png", help="where to write the piano-roll figure")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None,
                        help="kernel threads (default rnnkit's; 1 is faster on a machine busy with other work)")
    args = parser.parse_args()
    if args.threads:
        rnnkit.set_num_threads(args.threads)
    rnnkit.set_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    data = datasets.bach_chorales("quarter")
    train, test = data["train"], data["test"]
    print(f"Bach chorales: {len(train)} train / {len(data['valid'])} valid / {len(test)} test sequences, "
          f"{sum(map(len, train))} / {sum(map(len, test))} train / test frames, 88 keys")
    epochs = 2 if args.quick else 60
    ais = dict(n_runs=4 if args.quick else 8, n_betas=100 if args.quick else 200)
    results = {}

    def report(name, model, seconds):
        t0 = time.perf_counter()
        ll = model.log_likelihood(test, "ais", seed=1, **ais)
        acc = model.frame_accuracy(test, seed=2)
        results[name] = (ll.per_step, ll.std, acc, seconds, time.perf_counter() - t0)

    fit = dict(batch_size=16, learning_rate=1e-3, k=15, seq_len=16, optimizer="adam")
    pre = dict(pretrain_rbm_epochs=max(1, epochs // 6), pretrain_rnn_epochs=max(1, epochs // 6))

    t0 = time.perf_counter()
    rbm = generative.RNNRBM(88, 150, 100, seed=args.seed)
    rbm.fit(train, epochs, **fit, **pre)
    report("RNN-RBM", rbm, time.perf_counter() - t0)

    t0 = time.perf_counter()
    dbn = generative.RNNDBN(88, 150, 100, 100, seed=args.seed)
    dbn.fit(train, epochs, top_epochs=max(1, epochs // 2), **fit, **pre)
    report("RNN-DBN", dbn, time.perf_counter() - t0)

    t0 = time.perf_counter()
    x, y = lstm_inputs(train)
    lstm = rnnkit.Sequential([Masking(0.0), LSTM(128, return_sequences=True), Dense(88, activation="sigmoid")])
    lstm.compile(optimizer=rnnkit.optimizers.Adam(learning_rate=1e-2), loss="binary_crossentropy")
    lstm.fit(x, y, batch_size=16, epochs=max(2, epochs // 3), verbose=0)
    seconds = time.perf_counter() - t0
    x_test, _ = lstm_inputs(test)
    probs = lstm.predict(x_test)
    ll, acc = bernoulli_scores(test, [p[: len(s)] for s, p in zip(test, probs)], rng)
    results["LSTM (independent sigmoid)"] = (ll, 0.0, acc, seconds, 0.0)

    frames = np.concatenate(train).astype(np.float64)
    freq = (frames.sum(0) + 1) / (len(frames) + 2)
    ll, acc = bernoulli_scores(test, [np.broadcast_to(freq, s.shape) for s in test], rng)
    results["per-key frequency"] = (ll, 0.0, acc, 0.0, 0.0)

    print(f"\ntest split ({sum(map(len, test))} frames); AIS with {ais['n_runs']} runs x {ais['n_betas']} betas")
    print(f"{'model':<28} {'log-lik / step (nats)':>24} {'frame accuracy':>15} {'train s':>8} {'eval s':>7}")
    for name, (ll, std, acc, t_fit, t_eval) in results.items():
        spread = f" ± {std:.3f}" if std else ""
        print(f"{name:<28} {f'{ll:.3f}{spread}':>24} {acc:>15.3f} {t_fit:>8.1f} {t_eval:>7.1f}")

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no figure written")
        return
    generated = rbm.generate(64, seed=args.seed)
    real = test[0][:64]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, roll, title in zip(axes, (real, generated), ("a test chorale", "generated by the RNN-RBM")):
        ax.imshow(roll.T, origin="lower", aspect="auto", cmap="Greys", interpolation="nearest",
                  extent=(0, len(roll), datasets.LOWEST_KEY - 0.5, datasets.LOWEST_KEY + 87.5))
        ax.set_title(title)
        ax.set_xlabel("quarter notes")
    axes[0].set_ylabel("MIDI note")
    axes[0].set_ylim(30, 90)
    fig.tight_layout()
    fig.savefig(args.png, dpi=100)
    print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
