"""`python -m rnnkit.demo` on a tiny budget: it trains (the loss falls) and times both implementations."""

import math

from rnnkit import demo


def test_demo_main_trains_and_times(capsys):
    result = demo.main(["--epochs", "3", "--sequences", "160"])
    history, speed = result["history"], result["speed"]
    assert len(history["loss"]) == len(history["val_loss"]) == 3
    assert all(math.isfinite(v) for v in history["loss"] + history["val_loss"])
    assert history["loss"][-1] < history["loss"][0]
    assert history["val_loss"][-1] < history["val_loss"][0]
    assert speed["cpp"] > 0 and speed["reference"] > 0
    assert math.isclose(speed["speedup"], speed["reference"] / speed["cpp"])
    out = capsys.readouterr().out
    assert f"validation mse fell from {history['val_loss'][0]:.4f} to {history['val_loss'][-1]:.4f}" in out
    assert "speed-up" in out


def test_make_waves_targets_are_the_next_clean_value(rng):
    x, target = demo.make_waves(rng, T=20, N=4)
    assert x.shape == target.shape == (4, 20, 1)
    # the input is the previous clean value plus noise of standard deviation 0.05
    assert abs(float((x[:, 1:] - target[:, :-1]).std()) - 0.05) < 0.02
