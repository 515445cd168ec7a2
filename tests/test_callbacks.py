"""rnnkit.callbacks driven by a tiny fake model through the loop models.Sequential.fit runs."""

import csv
import re

import numpy as np
import pytest

from rnnkit import callbacks as cb
from rnnkit import optimizers


class FakeModel:
    """What callbacks use of a model: weights, save, optimizer, stop_training."""

    def __init__(self):
        self.weights = [np.zeros(2)]
        self.optimizer = optimizers.SGD(learning_rate=0.1)
        self.stop_training = False
        self.saved = []

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        self.weights = [np.array(w) for w in weights]

    def save(self, path):
        self.saved.append(path)


def fit(callbacks, val_losses, steps=3, verbose=0, model=None, extra_logs=None):
    """Sequential.fit's callback protocol; in epoch e the weights are [e, e] and val_loss is val_losses[e]."""
    model = model or FakeModel()
    callback_list = cb.CallbackList(callbacks, model=model, add_history=True, add_progbar=verbose > 0,
                                    params={"epochs": len(val_losses), "steps": steps, "verbose": verbose})
    callback_list.on_train_begin()
    for epoch, val_loss in enumerate(val_losses):
        callback_list.on_epoch_begin(epoch)
        for batch in range(steps):
            callback_list.on_batch_begin(batch)
            model.weights = [np.full(2, float(epoch))]
            callback_list.on_batch_end(batch, {"loss": 1.0 / (batch + 1)})
        logs = {"loss": 0.25, "val_loss": val_loss, **(extra_logs or {})}
        callback_list.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    callback_list.on_train_end()
    return model, callback_list.history


def test_history_records_every_epoch():
    model, history = fit([], [0.5, 0.4, 0.3])
    assert history.epoch == [0, 1, 2]
    assert history.history == {"loss": [0.25] * 3, "val_loss": [0.5, 0.4, 0.3]}
    assert model.history is history


def test_early_stopping_stops_and_restores_best_weights():
    stopper = cb.EarlyStopping(patience=2, restore_best_weights=True)
    model, history = fit([stopper], [1.0, 0.5, 0.6, 0.7, 0.8, 0.4])
    assert history.epoch == [0, 1, 2, 3]  # epochs 2 and 3 did not improve on 0.5: stop after epoch 3
    assert stopper.stopped_epoch == 3 and stopper.best == 0.5 and stopper.best_epoch == 1
    np.testing.assert_array_equal(model.weights[0], [1.0, 1.0])  # weights at the end of epoch 1


def test_early_stopping_without_restore_keeps_last_weights_and_respects_min_delta():
    model, history = fit([cb.EarlyStopping(patience=1, min_delta=0.2)], [1.0, 0.9, 0.85, 0.1])
    assert history.epoch == [0, 1]  # 0.9 is not better than 1.0 by more than 0.2
    np.testing.assert_array_equal(model.weights[0], [1.0, 1.0])


def test_early_stopping_max_mode_and_baseline():
    stopper = cb.EarlyStopping(monitor="val_accuracy", patience=1)  # auto: accuracies are maximised
    _, history = fit([stopper], [0.0] * 4, extra_logs={"val_accuracy": 0.5})
    assert history.epoch == [0, 1] and stopper.best == 0.5
    losses = [1.0, 1.1, 1.2, 1.3]
    assert fit([cb.EarlyStopping(patience=2)], losses)[1].epoch == [0, 1, 2]
    # an epoch that misses the baseline does not reset the wait, so patience runs out one epoch earlier
    assert fit([cb.EarlyStopping(patience=2, baseline=0.1)], losses)[1].epoch == [0, 1]


def test_reduce_lr_on_plateau_changes_the_learning_rate():
    reducer = cb.ReduceLROnPlateau(factor=0.5, patience=1, cooldown=2, min_lr=0.02)
    model, history = fit([reducer], [1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    # logs hold the rate the epoch ran with. Epoch 0 sets best; 1: reduce to 0.05 (cooldown 2);
    # 2: cooling down; 3: reduce to 0.025; 4: cooling down; 5: reduce to max(0.0125, min_lr)
    assert history.history["learning_rate"] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025], rel=1e-15)
    assert model.optimizer.learning_rate == pytest.approx(0.02)
    with pytest.raises(ValueError, match="factor must be in"):
        cb.ReduceLROnPlateau(factor=1.0)


def test_reduce_lr_on_plateau_keeps_rate_while_improving():
    model, _ = fit([cb.ReduceLROnPlateau(patience=1)], [1.0, 0.5, 0.25])
    assert model.optimizer.learning_rate == 0.1


def test_learning_rate_scheduler():
    scheduler = cb.LearningRateScheduler(lambda epoch, lr: lr * 0.5 if epoch > 0 else lr)
    model, history = fit([scheduler], [1.0, 1.0, 1.0])
    assert history.history["learning_rate"] == [0.1, 0.05, 0.025]
    assert model.optimizer.learning_rate == 0.025
    with pytest.raises(ValueError, match="finite float learning rate"):
        fit([cb.LearningRateScheduler(lambda epoch, lr: "fast")], [1.0])


def test_csv_logger_writes_rows(tmp_path):
    path = tmp_path / "log.csv"
    fit([cb.CSVLogger(path)], [0.5, 0.4])
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows == [["epoch", "loss", "val_loss"], ["0", "0.25", "0.5"], ["1", "0.25", "0.4"]]
    fit([cb.CSVLogger(path, separator=";", append=True)], [0.3])
    lines = path.read_text().splitlines()
    assert lines[-1] == "0;0.25;0.3" and lines.count("epoch,loss,val_loss") == 1 and len(lines) == 4
    fit([cb.CSVLogger(path)], [0.2])  # append=False starts over
    assert path.read_text().splitlines() == ["epoch,loss,val_loss", "0,0.25,0.2"]


def test_model_checkpoint_formats_the_path():
    model, _ = fit([cb.ModelCheckpoint("ckpt-{epoch:02d}-{val_loss:.2f}.rnk")], [0.5, 0.75])
    assert model.saved == ["ckpt-01-0.50.rnk", "ckpt-02-0.75.rnk"]
    model, _ = fit([cb.ModelCheckpoint("best-{epoch}.rnk", save_best_only=True)], [0.5, 0.75, 0.25, 0.3])
    assert model.saved == ["best-1.rnk", "best-3.rnk"]


def test_missing_monitor_warns():
    with pytest.warns(RuntimeWarning, match="monitors 'val_auc', which is not in the logs"):
        _, history = fit([cb.EarlyStopping(monitor="val_auc")], [1.0, 1.0])
    assert history.epoch == [0, 1]


def test_callback_list_order_and_hooks():
    calls = []

    class Recorder(cb.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            calls.append(("begin", epoch, self.params["epochs"]))

        def on_batch_end(self, batch, logs=None):
            calls.append(("batch", batch))

    callback_list = cb.CallbackList([Recorder()], add_history=True, add_progbar=True, params={"verbose": 2})
    assert isinstance(callback_list.callbacks[0], cb.ProgbarLogger) and callback_list.callbacks[0].verbose == 2
    assert callback_list.callbacks[-1] is callback_list.history
    fit([Recorder()], [1.0], steps=2)
    assert calls == [("begin", 0, 1), ("batch", 0), ("batch", 1)]


# ---------------------------------------------------------------------------------------------
# progress output
# ---------------------------------------------------------------------------------------------

def test_progress_verbose_0_prints_nothing(capsys):
    fit([], [0.5, 0.4], verbose=0)
    assert capsys.readouterr().out == ""


def test_progress_verbose_1(capsys):
    fit([], [0.5, 0.4], verbose=1)
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "Epoch 1/2" and lines[2] == "Epoch 2/2" and len(lines) == 4
    assert re.fullmatch(r"3/3 \[=+\] - \d+s \d+ms/step - loss: 0\.2500 - val_loss: 0\.5000", lines[1])


def test_progress_verbose_2(capsys):
    fit([], [0.5, 1e-5], verbose=2)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Epoch 1/2" and len(lines) == 4 and "[" not in lines[1]
    assert re.fullmatch(r"3/3 - \d+s \d+ms/step - loss: 0\.2500 - val_loss: 1\.0000e-05", lines[3])


def test_progress_bar_redraws_on_a_terminal(monkeypatch):
    class Terminal:
        def __init__(self):
            self.text = ""

        def write(self, text):
            self.text += text

        def flush(self):
            pass

        def isatty(self):
            return True

    clock = iter(np.arange(0.0, 100.0, 0.1))
    monkeypatch.setattr(cb.time, "perf_counter", lambda: float(next(clock)))
    terminal = Terminal()
    progbar = cb.ProgbarLogger(verbose=1, stream=terminal)
    fit([progbar], [0.5], steps=4)
    updates = terminal.text.split("\r")
    assert updates[0] == "Epoch 1/1\n"
    assert updates[1].startswith("1/4 [======>.......................] - ETA: 0s - loss: 1.0000")
    assert updates[-1].startswith("4/4 [==============================] - ") and updates[-1].endswith("\n")
    assert len(updates) == 6  # four batch redraws and the final line


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_terminate_on_nan_stops_at_the_first_invalid_loss(bad, capsys):
    model = FakeModel()
    callbacks = cb.CallbackList([cb.TerminateOnNaN()], model=model, params={"epochs": 1, "steps": 3, "verbose": 0})
    callbacks.on_batch_end(0, {"loss": 0.5})
    callbacks.on_batch_end(1, {})  # no loss in the logs: nothing to check
    assert not model.stop_training and capsys.readouterr().out == ""
    callbacks.on_batch_end(2, {"loss": bad})
    assert model.stop_training
    assert capsys.readouterr().out == "Batch 2: Invalid loss, terminating training\n"


def test_callback_list_adds_one_terminate_on_nan_when_asked():
    added = cb.CallbackList([], add_terminate_on_nan=True, add_progbar=True, add_history=True).callbacks
    assert [type(c) for c in added] == [cb.ProgbarLogger, cb.TerminateOnNaN, cb.History]
    own = cb.TerminateOnNaN()
    assert cb.CallbackList([own], add_terminate_on_nan=True).callbacks == [own]
    assert not any(isinstance(c, cb.TerminateOnNaN) for c in cb.CallbackList([]).callbacks)


class _Recorder(cb.Callback):
    """Records every hook called, with the batch or epoch number and the keys of its logs; the training-batch
    hooks then run the base class's (which call on_batch_begin / on_batch_end, recorded too)."""

    def __init__(self):
        super().__init__()
        self.calls = []


def _recording(name):
    if "batch" in name or "epoch" in name:
        def hook(self, number, logs=None):
            self.calls.append((name, number, tuple(sorted(logs or {}))))
            if name.startswith("on_train_batch"):
                getattr(cb.Callback, name)(self, number, logs)
    else:
        def hook(self, logs=None):
            self.calls.append((name, tuple(sorted(logs or {}))))
    return hook


for _name in [n for n in dir(cb.Callback) if n.startswith("on_")]:
    setattr(_Recorder, _name, _recording(_name))


def test_keras_hooks_in_fit_evaluate_and_predict():
    """Keras 3's hooks: a training batch calls on_train_batch_* (which call the older on_batch_*), fit's validation
    and evaluate the on_test_* hooks, predict the on_predict_* hooks with each batch's outputs."""
    from rnnkit import Sequential
    from rnnkit.layers import Dense

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((5, 3)).astype(np.float32), rng.standard_normal((5, 1)).astype(np.float32)
    model = Sequential([Dense(1, input_shape=(3,))])
    model.compile("sgd", "mse")
    recorder = _Recorder()
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, validation_data=(x, y), callbacks=[recorder])
    names = [c[0] for c in recorder.calls]
    assert names == ["on_train_begin", "on_epoch_begin",
                     "on_train_batch_begin", "on_batch_begin", "on_train_batch_end", "on_batch_end",
                     "on_train_batch_begin", "on_batch_begin", "on_train_batch_end", "on_batch_end",
                     "on_test_begin", "on_test_batch_begin", "on_test_batch_end", "on_test_batch_begin",
                     "on_test_batch_end", "on_test_end", "on_epoch_end", "on_train_end"], names
    assert recorder.calls[-2] == ("on_epoch_end", 0, ("loss", "val_loss"))

    recorder.calls.clear()
    model.evaluate(x, y, batch_size=2, callbacks=[recorder])
    assert [c[:2] for c in recorder.calls] == [("on_test_begin", ()), ("on_test_batch_begin", 0),
                                              ("on_test_batch_end", 0), ("on_test_batch_begin", 1),
                                              ("on_test_batch_end", 1), ("on_test_batch_begin", 2),
                                              ("on_test_batch_end", 2), ("on_test_end", ("loss",))]
    assert recorder.calls[-1][-1] == ("loss",)

    outputs = []

    class Outputs(cb.Callback):
        def on_predict_batch_end(self, batch, logs=None):
            outputs.append(logs["outputs"])

    recorder.calls.clear()
    y_pred = model.predict(x, batch_size=2, callbacks=[recorder, Outputs()])
    assert [c[0] for c in recorder.calls] == ["on_predict_begin"] + ["on_predict_batch_begin", "on_predict_batch_end"] * 3 \
        + ["on_predict_end"]
    np.testing.assert_array_equal(np.concatenate(outputs), y_pred)
