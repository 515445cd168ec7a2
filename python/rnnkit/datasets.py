"""Data sets for examples: piano rolls of the Bach chorales.

    data = rnnkit.datasets.bach_chorales()          # {"train": [...], "valid": [...], "test": [...]}
    data["train"][0].shape                          # (T, 88): uint8 0/1, key k is MIDI note 21 + k

The chorales come from the corpus that the optional ``music21`` package ships (``pip install music21``);
the piano rolls are built once and cached as an ``.npz`` file (no pickle) under ``~/.cache/rnnkit`` (or
``$RNNKIT_CACHE``). ``piano_roll`` and ``score_notes`` hold the construction logic and need no music21.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["bach_chorales", "piano_roll", "score_notes", "split_indices", "LOWEST_KEY", "N_KEYS"]

LOWEST_KEY = 21  # A0, the piano's lowest key (MIDI number)
N_KEYS = 88      # up to C8 = MIDI 108
RESOLUTIONS = {"quarter": 1.0, "eighth": 0.5, "sixteenth": 0.25}
VOICES = ("soprano", "alto", "tenor", "bass")
_CACHE_VERSION = 1


def piano_roll(notes, step=1.0, n_frames=None, lowest=LOWEST_KEY, n_keys=N_KEYS):
    """A binary piano roll [T, n_keys] (uint8) of ``notes``: (midi, onset, duration) triples, times in
    quarter notes. Frame t samples time t * step: key m - lowest is on when a note of pitch m sounds then,
    i.e. onset <= t * step < onset + duration. T = n_frames, or enough frames to reach the last note's end.
    Notes outside [lowest, lowest + n_keys) raise ValueError; zero-length (grace) notes are skipped."""
    if not step > 0:
        raise ValueError(f"step: expected a positive duration in quarter notes, got {step!r}")
    notes = [(int(m), float(o), float(d)) for m, o, d in notes]
    for m, o, d in notes:
        if not lowest <= m < lowest + n_keys:
            raise ValueError(f"notes: pitch {m} is outside the keyboard [{lowest}, {lowest + n_keys - 1}]")
        if o < 0 or d < 0:
            raise ValueError(f"notes: expected onset >= 0 and duration >= 0, got ({m}, {o}, {d})")
    if n_frames is None:
        end = max((o + d for _, o, d in notes if d > 0), default=0.0)
        n_frames = int(math.ceil(end / step - 1e-9))
    roll = np.zeros((n_frames, n_keys), dtype=np.uint8)
    for m, o, d in notes:
        if d <= 0:
            continue
        # frames t with o <= t * step < o + d (a small tolerance for float offsets such as 1/3)
        first = int(math.ceil(o / step - 1e-9))
        last = int(math.ceil((o + d) / step - 1e-9))  # exclusive
        roll[first: min(last, n_frames), m - lowest] = 1
    return roll


def score_notes(score, voices=VOICES):
    """(midi, onset, duration) of every pitch in the parts of ``score`` named after ``voices`` (by prefix,
    case-insensitive; all parts when none is named so). ``score`` is a music21 Score or anything with
    ``.parts``, each part with ``.partName`` and ``.flatten().notes`` whose items have ``.pitches`` (each
    with ``.midi``), ``.offset`` and ``.quarterLength`` (offsets absolute in the flattened part)."""
    parts = list(score.parts)
    named = [p for p in parts if str(getattr(p, "partName", "") or "").strip().lower().startswith(tuple(voices))]
    notes = []
    for part in named or parts:
        for n in part.flatten().notes:
            for p in n.pitches:
                notes.append((int(p.midi), float(n.offset), float(n.quarterLength)))
    return notes


def split_indices(n, fractions=(0.7, 0.15, 0.15), seed=0):
    """A fixed seeded split of range(n): (train, valid, test) index arrays, sorted."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not math.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions: expected three non-negative fractions summing to 1, got {fractions!r}")
    order = np.random.default_rng(seed).permutation(n)
    n_train = int(round(fractions[0] * n))
    n_valid = int(round(fractions[1] * n))
    return (np.sort(order[:n_train]), np.sort(order[n_train: n_train + n_valid]),
            np.sort(order[n_train + n_valid:]))


def _cache_dir(cache_dir):
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get("RNNKIT_CACHE", Path.home() / ".cache" / "rnnkit"))


def _build_rolls(step):
    try:
        from music21 import corpus
    except ImportError:
        raise ImportError("bach_chorales needs the optional music21 package to build its cache: "
                          "pip install music21") from None
    names, rolls = [], []
    for name in corpus.chorales.Iterator(returnType="filename"):
        notes = score_notes(corpus.parse(name))
        notes = [n for n in notes if LOWEST_KEY <= n[0] < LOWEST_KEY + N_KEYS]
        roll = piano_roll(notes, step)
        if len(roll):
            names.append(str(name))
            rolls.append(roll)
    return names, rolls


def _write_npz(path, **arrays):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp.npz", dir=path.parent)
    os.close(fd)
    try:
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def bach_chorales(resolution="quarter", *, fractions=(0.7, 0.15, 0.15), seed=0, cache_dir=None, refresh=False):
    """The Bach chorales of music21's corpus as 88-key piano rolls, split into train / valid / test.

    resolution: "quarter", "eighth" or "sixteenth" (the time step of a frame); fractions, seed: the split
    (``split_indices`` over the chorales in the corpus iterator's order); cache_dir: where the built rolls
    are kept (default ``$RNNKIT_CACHE`` or ``~/.cache/rnnkit``); refresh: rebuild the cache.
    Returns {"train", "valid", "test": lists of [T_i, 88] uint8 arrays, "names": {split: list of str}}.
    """
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution: expected one of {sorted(RESOLUTIONS)}, got {resolution!r}")
    path = _cache_dir(cache_dir) / f"bach_chorales_{resolution}_v{_CACHE_VERSION}.npz"
    if refresh or not path.exists():
        names, rolls = _build_rolls(RESOLUTIONS[resolution])
        _write_npz(path, rolls=np.concatenate(rolls), lengths=np.array([len(r) for r in rolls], np.int64),
                   names=np.array(json.dumps(names)))
    with np.load(path, allow_pickle=False) as f:
        rolls, lengths, names = f["rolls"], f["lengths"], json.loads(str(f["names"]))
    seqs = np.split(rolls, np.cumsum(lengths)[:-1])
    out = {"names": {}}
    for split, idx in zip(("train", "valid", "test"), split_indices(len(seqs), fractions, seed)):
        out[split] = [seqs[i] for i in idx]
        out["names"][split] = [names[i] for i in idx]
    return out
