"""Learning to add: a sequence-to-sequence LSTM reads "535+61" as characters and writes "596", as Keras' classic
addition example does (written as a Keras 3 program; only the imports name rnnkit).

    python examples/seq2seq_addition.py [--epochs 30] [--samples 50000] [--digits 3]

An encoder LSTM reads the question (reversed, as in the original example: it shortens the path from the last
digits to the first of the answer); ``RepeatVector`` hands its summary to each step of the answer; a decoder
LSTM with ``return_sequences=True`` and ``TimeDistributed(Dense(..., softmax))`` spell the answer one character
per step. A question asked twice with its operands swapped is kept once, and 10% of the questions are held out.

A guess of a character is right 1 time in 12; the trained model answers most unseen questions exactly.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import rnnkit as keras
from rnnkit import layers

CHARS = "0123456789+ "


class CharacterTable:
    """One-hot encoding of strings over ``chars``, and back."""

    def __init__(self, chars):
        self.chars = sorted(set(chars))
        self.char_indices = {c: i for i, c in enumerate(self.chars)}

    def encode(self, text, num_rows):
        x = np.zeros((num_rows, len(self.chars)), np.float32)
        for i, c in enumerate(text):
            x[i, self.char_indices[c]] = 1
        return x

    def decode(self, x, calc_argmax=True):
        if calc_argmax:
            x = x.argmax(axis=-1)
        return "".join(self.chars[i] for i in x)


def make_data(rng, samples, digits):
    """(x [n, maxlen, 12], y [n, digits + 1, 12], questions, answers): distinct "a+b" questions of up to
    ``digits`` digits each, padded with spaces, each question reversed; answers padded to digits + 1."""
    maxlen = digits + 1 + digits
    table = CharacterTable(CHARS)
    seen, questions, answers = set(), [], []
    while len(questions) < samples:
        a, b = (int(rng.integers(0, 10 ** int(rng.integers(1, digits + 1)))) for _ in range(2))
        if tuple(sorted((a, b))) in seen:
            continue
        seen.add(tuple(sorted((a, b))))
        questions.append(f"{a}+{b}".ljust(maxlen)[::-1])
        answers.append(str(a + b).ljust(digits + 1))
    x = np.stack([table.encode(q, maxlen) for q in questions])
    y = np.stack([table.encode(t, digits + 1) for t in answers])
    return x, y, questions, answers


def build(digits, hidden=128):
    maxlen = digits + 1 + digits
    model = keras.Sequential()
    model.add(layers.Input((maxlen, len(CHARS))))
    model.add(layers.LSTM(hidden))
    model.add(layers.RepeatVector(digits + 1))
    model.add(layers.LSTM(hidden, return_sequences=True))
    model.add(layers.TimeDistributed(layers.Dense(len(CHARS), activation="softmax")))
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return model


def run(samples=50000, epochs=30, digits=3, hidden=128, seed=0, verbose=0):
    """{"train_seconds", "character_accuracy", "exact", "examples"} on the held-out 10% of the questions."""
    keras.utils.set_random_seed(seed)
    x, y, questions, answers = make_data(np.random.default_rng(seed), samples, digits)
    split = len(x) - len(x) // 10
    model = build(digits, hidden)
    t0 = time.perf_counter()
    model.fit(x[:split], y[:split], batch_size=32, epochs=epochs, validation_data=(x[split:], y[split:]),
              verbose=verbose)
    seconds = time.perf_counter() - t0
    guess = model.predict(x[split:], verbose=0).argmax(axis=-1)
    truth = y[split:].argmax(axis=-1)
    table = CharacterTable(CHARS)
    examples = [(questions[split + i][::-1].strip(), answers[split + i].strip(), table.decode(guess[i], False).strip())
                for i in range(8)]
    return {"train_seconds": seconds, "character_accuracy": float((guess == truth).mean()),
            "exact": float((guess == truth).all(axis=1).mean()), "examples": examples}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--samples", type=int, default=50000)
    ap.add_argument("--digits", type=int, default=3)
    args = ap.parse_args(argv)
    result = run(args.samples, args.epochs, args.digits, verbose=2)
    print(f"trained in {result['train_seconds']:.0f} s")
    print(f"held-out questions: characters right {result['character_accuracy']:.1%} (chance 8%), answers exactly "
          f"right {result['exact']:.1%}")
    for question, answer, guess in result["examples"]:
        print(f"  {question:>8s} = {guess:<5s} {'ok' if guess == answer else 'wrong, ' + answer}")


if __name__ == "__main__":
    main()
