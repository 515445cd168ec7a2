"""Piano-roll construction from note lists and score-like objects (no music21 needed), the split and the cache."""

import numpy as np
import pytest

from rnnkit import datasets


class Pitch:
    def __init__(self, midi):
        self.midi = midi


class Note:
    """Stands in for a music21 Note / Chord: pitches, absolute offset, quarterLength."""

    def __init__(self, midis, offset, quarter_length):
        self.pitches = [Pitch(m) for m in midis]
        self.offset = offset
        self.quarterLength = quarter_length


class Flat:
    def __init__(self, notes):
        self.notes = notes


class Part:
    def __init__(self, name, notes):
        self.partName = name
        self._notes = notes

    def flatten(self):
        return Flat(self._notes)


class Score:
    def __init__(self, parts):
        self.parts = parts


def test_piano_roll_marks_the_frames_where_a_note_sounds():
    # a half note at 0 (frames 0, 1), a quarter at 2 (frame 2), an eighth at 3.5 (frame 3 at t = 3? no: 3.5 > 3)
    roll = datasets.piano_roll([(60, 0.0, 2.0), (64, 2.0, 1.0), (67, 3.5, 0.5), (72, 3.0, 1.5)], step=1.0)
    assert roll.shape == (5, 88) and roll.dtype == np.uint8
    on = {(t, k + datasets.LOWEST_KEY) for t, k in zip(*np.nonzero(roll))}
    assert on == {(0, 60), (1, 60), (2, 64), (3, 72), (4, 72)}


def test_piano_roll_at_eighth_resolution_and_fixed_length():
    roll = datasets.piano_roll([(21, 0.5, 0.5), (108, 1.0, 1.0), (50, 0.25, 0.0)], step=0.5, n_frames=3)
    expected = np.zeros((3, 88), np.uint8)
    expected[1, 0] = 1
    expected[2, 87] = 1
    np.testing.assert_array_equal(roll, expected)


def test_piano_roll_rejects_notes_off_the_keyboard():
    with pytest.raises(ValueError, match="notes: pitch 20"):
        datasets.piano_roll([(20, 0.0, 1.0)])
    with pytest.raises(ValueError, match="step"):
        datasets.piano_roll([(60, 0.0, 1.0)], step=0)


def test_score_notes_reads_the_four_voices_and_chords():
    score = Score([
        Part("Soprano", [Note([72], 0.0, 1.0), Note([74], 1.0, 1.0)]),
        Part("Alto", [Note([67, 69], 0.0, 2.0)]),  # a chord: both pitches
        Part("Tenor", [Note([60], 0.0, 2.0)]),
        Part("Bass", [Note([48], 0.0, 1.0), Note([43], 1.0, 1.0)]),
        Part("Continuo", [Note([36], 0.0, 2.0)]),  # not a voice: left out
    ])
    notes = datasets.score_notes(score)
    assert sorted(notes) == sorted([(72, 0.0, 1.0), (74, 1.0, 1.0), (67, 0.0, 2.0), (69, 0.0, 2.0), (60, 0.0, 2.0),
                                    (48, 0.0, 1.0), (43, 1.0, 1.0)])
    roll = datasets.piano_roll(notes)
    assert [sorted(np.nonzero(f)[0] + 21) for f in roll] == [[48, 60, 67, 69, 72], [43, 60, 67, 69, 74]]
    # unnamed parts: all of them are read
    assert len(datasets.score_notes(Score([Part(None, [Note([60], 0.0, 1.0)])]))) == 1


def test_split_is_fixed_by_the_seed_and_a_partition():
    a = datasets.split_indices(100, seed=0)
    b = datasets.split_indices(100, seed=0)
    c = datasets.split_indices(100, seed=1)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[2], c[2])
    assert [len(x) for x in a] == [70, 15, 15]
    np.testing.assert_array_equal(np.sort(np.concatenate(a)), np.arange(100))
    with pytest.raises(ValueError, match="fractions"):
        datasets.split_indices(10, fractions=(0.5, 0.5, 0.5))


def test_bach_chorales_reads_its_cache_without_music21(tmp_path, monkeypatch):
    """A cache file in the documented format is read back, split and never rebuilt."""
    rolls = [datasets.piano_roll([(60 + i, 0.0, 1.0 + i % 3)]) for i in range(20)]
    datasets._write_npz(tmp_path / "bach_chorales_quarter_v1.npz", rolls=np.concatenate(rolls),
                        lengths=np.array([len(r) for r in rolls]),
                        names=np.array('["' + '", "'.join(f"c{i}" for i in range(20)) + '"]'))
    monkeypatch.setattr(datasets, "_build_rolls", lambda step: pytest.fail("the cache was rebuilt"))
    data = datasets.bach_chorales(cache_dir=tmp_path)
    assert sum(len(data[s]) for s in ("train", "valid", "test")) == 20
    for split in ("train", "valid", "test"):
        for name, roll in zip(data["names"][split], data[split]):
            np.testing.assert_array_equal(roll, rolls[int(name[1:])])
    with pytest.raises(ValueError, match="resolution"):
        datasets.bach_chorales("whole", cache_dir=tmp_path)
