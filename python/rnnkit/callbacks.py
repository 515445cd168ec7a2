"""Training callbacks (Keras 3 behaviour) and the list that drives them.

The model calls, through a ``CallbackList``::

    callbacks = CallbackList(user_callbacks, model=model, params={"epochs": E, "steps": S, "verbose": v},
                             add_history=True, add_progbar=v > 0)
    callbacks.on_train_begin()
    for epoch in range(E):
        callbacks.on_epoch_begin(epoch)
        for batch in range(S):
            callbacks.on_train_batch_begin(batch)                        # (calls on_batch_begin)
            ...
            callbacks.on_train_batch_end(batch, {"loss": running_mean, ...})   # running means over the epoch
            if model.stop_training: break                                # optional
        callbacks.on_epoch_end(epoch, {"loss": ..., "val_loss": ..., ...})
        if model.stop_training: break
    callbacks.on_train_end()
    return callbacks.history

A model gives callbacks ``get_weights()``, ``set_weights(list)``, ``save(path)``, ``optimizer``
(with a settable ``learning_rate``) and ``stop_training``. Epochs and batches count from 0;
printed epochs and ModelCheckpoint's ``{epoch}`` count from 1, as in Keras.
"""

from __future__ import annotations

import csv
import math
import os
import sys
import time
import warnings

__all__ = [
    "Callback", "CallbackList", "History", "EarlyStopping", "ModelCheckpoint", "ReduceLROnPlateau",
    "LearningRateScheduler", "CSVLogger", "ProgbarLogger", "TerminateOnNaN",
]

_HOOKS = ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end", "on_batch_begin", "on_batch_end",
          "on_train_batch_begin", "on_train_batch_end", "on_test_begin", "on_test_end", "on_test_batch_begin",
          "on_test_batch_end", "on_predict_begin", "on_predict_end", "on_predict_batch_begin",
          "on_predict_batch_end")


class Callback:
    """Base class: every hook does nothing. ``self.model`` and ``self.params`` are set by the model."""

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = dict(params)

    def on_train_begin(self, logs=None): pass
    def on_train_end(self, logs=None): pass
    def on_epoch_begin(self, epoch, logs=None): pass
    def on_epoch_end(self, epoch, logs=None): pass
    def on_batch_begin(self, batch, logs=None): pass
    def on_batch_end(self, batch, logs=None): pass

    # Keras 3's hooks: a training batch's call on_batch_begin / on_batch_end (their older names), so a callback
    # may override either; evaluate (and fit's validation) call the on_test_* hooks, predict the on_predict_*
    # ones (its batch logs hold the batch's "outputs").
    def on_train_batch_begin(self, batch, logs=None):
        self.on_batch_begin(batch, logs=logs)

    def on_train_batch_end(self, batch, logs=None):
        self.on_batch_end(batch, logs=logs)

    def on_test_begin(self, logs=None): pass
    def on_test_end(self, logs=None): pass
    def on_test_batch_begin(self, batch, logs=None): pass
    def on_test_batch_end(self, batch, logs=None): pass
    def on_predict_begin(self, logs=None): pass
    def on_predict_end(self, logs=None): pass
    def on_predict_batch_begin(self, batch, logs=None): pass
    def on_predict_batch_end(self, batch, logs=None): pass


class CallbackList(Callback):
    """Calls each hook on every callback in order. ``add_progbar`` puts a ProgbarLogger (with
    ``params["verbose"]``) first and ``add_history`` a History last, as Keras does, so History
    records what other callbacks add to the logs (e.g. ``learning_rate``). ``add_terminate_on_nan``
    adds a TerminateOnNaN after the progress bar unless the list has one (``Sequential.fit`` always
    stops on a NaN or inf loss)."""

    def __init__(self, callbacks=(), *, model=None, params=None, add_history=False, add_progbar=False,
                 add_terminate_on_nan=False):
        super().__init__()
        self.callbacks = list(callbacks)
        if add_terminate_on_nan and not any(isinstance(c, TerminateOnNaN) for c in self.callbacks):
            self.callbacks.insert(0, TerminateOnNaN())
        if add_progbar and not any(isinstance(c, ProgbarLogger) for c in self.callbacks):
            self.callbacks.insert(0, ProgbarLogger(verbose=(params or {}).get("verbose", 1)))
        self.history = next((c for c in self.callbacks if isinstance(c, History)), None)
        if add_history and self.history is None:
            self.history = History()
            self.callbacks.append(self.history)
        if model is not None:
            self.set_model(model)
        if params is not None:
            self.set_params(params)

    def set_model(self, model):
        super().set_model(model)
        for callback in self.callbacks:
            callback.set_model(model)

    def set_params(self, params):
        super().set_params(params)
        for callback in self.callbacks:
            callback.set_params(params)


def _dispatch(hook):
    def call(self, *args, **kwargs):
        for callback in self.callbacks:
            getattr(callback, hook)(*args, **kwargs)
    call.__name__ = hook
    return call


for _hook in _HOOKS:
    setattr(CallbackList, _hook, _dispatch(_hook))


class History(Callback):
    """``history``: metric name -> list of per-epoch values; ``epoch``: epochs run. ``model.fit``
    returns it; it is also set as ``model.history``."""

    def __init__(self):
        super().__init__()
        self.history, self.epoch = {}, []

    def on_train_begin(self, logs=None):
        self.epoch = []  # history accumulates over repeated fit calls, as in Keras

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)
        if self.model is not None:
            self.model.history = self


# ------------------------------------------------------------------------------------------------
# monitoring a logged quantity
# ------------------------------------------------------------------------------------------------

class _Monitor(Callback):
    """Shared by EarlyStopping, ModelCheckpoint and ReduceLROnPlateau: which logged quantity to
    watch, in which direction (``mode="auto"``: maximise accuracies and auc, minimise anything
    else), and what counts as an improvement (by more than ``min_delta``)."""

    def __init__(self, monitor, mode, min_delta):
        super().__init__()
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
        self.monitor, self.mode, self.min_delta = monitor, mode, abs(min_delta)
        name = monitor.removeprefix("val_")
        self._maximize = mode == "max" or (mode == "auto" and ("acc" in name or name.startswith("auc")))

    def _initial_best(self):
        return -math.inf if self._maximize else math.inf

    def _is_improvement(self, current, reference):
        if self._maximize:
            return current - self.min_delta > reference
        return current + self.min_delta < reference

    def _current(self, logs):
        value = (logs or {}).get(self.monitor)
        if value is None:
            warnings.warn(f"{type(self).__name__} monitors '{self.monitor}', which is not in the logs; "
                          f"available: {sorted(logs or {})}", RuntimeWarning, stacklevel=3)
        return value


class EarlyStopping(_Monitor):
    """Stop training when ``monitor`` has not improved for ``patience`` epochs (Keras 3 rules).
    ``baseline``: the wait is only reset by epochs that also beat it. ``restore_best_weights``:
    at the end of training, set the weights of the best epoch (also when it did not stop early).
    ``start_from_epoch``: epochs before it are not monitored."""

    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto", baseline=None,
                 restore_best_weights=False, start_from_epoch=0):
        super().__init__(monitor, mode, min_delta)
        self.patience, self.verbose, self.baseline = patience, verbose, baseline
        self.restore_best_weights, self.start_from_epoch = restore_best_weights, start_from_epoch
        self.on_train_begin()

    def on_train_begin(self, logs=None):
        self.wait, self.stopped_epoch, self.best_epoch = 0, 0, 0
        self.best, self.best_weights = self._initial_best(), None

    def on_epoch_end(self, epoch, logs=None):
        current = self._current(logs)
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights, self.best_epoch = self.model.get_weights(), epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


class ModelCheckpoint(_Monitor):
    """Call ``model.save(filepath.format(epoch=epoch + 1, **logs))`` (``model.save_weights`` with
    ``save_weights_only``) at the end of every epoch, or with ``save_best_only`` only when ``monitor`` improved on
    the best so far (or on ``initial_value_threshold``)."""

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False, save_weights_only=False,
                 mode="auto", initial_value_threshold=None):
        super().__init__(monitor, mode, 0.0)
        self.filepath, self.verbose, self.save_best_only = os.fspath(filepath), verbose, save_best_only
        self.save_weights_only = bool(save_weights_only)
        self.initial_value_threshold = initial_value_threshold
        self.best = self._initial_best() if initial_value_threshold is None else initial_value_threshold

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        path = self.filepath.format(epoch=epoch + 1, **logs)
        if self.save_best_only:
            current = self._current(logs)
            if current is None or not self._is_improvement(current, self.best):
                return
            if self.verbose > 0:
                print(f"\nEpoch {epoch + 1}: {self.monitor} improved from {self.best:.5f} to {current:.5f}, "
                      f"saving model to {path}")
            self.best = current
        elif self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: saving model to {path}")
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)


class ReduceLROnPlateau(_Monitor):
    """Multiply the optimizer's learning rate by ``factor`` (not below ``min_lr``) when ``monitor``
    has not improved by more than ``min_delta`` for ``patience`` epochs; then wait ``cooldown``
    epochs before counting again. Adds ``learning_rate`` to the epoch logs."""

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto", min_delta=1e-4,
                 cooldown=0, min_lr=0.0):
        super().__init__(monitor, mode, min_delta)
        if not 0 <= factor < 1.0:
            raise ValueError(f"factor must be in [0, 1), got {factor}")
        self.factor, self.patience, self.verbose = factor, patience, verbose
        self.cooldown, self.min_lr = cooldown, min_lr
        self.on_train_begin()

    def on_train_begin(self, logs=None):
        self.wait, self.cooldown_counter, self.best = 0, 0, self._initial_best()

    def on_epoch_end(self, epoch, logs=None):
        optimizer = self.model.optimizer
        if logs is not None:
            logs["learning_rate"] = float(optimizer.learning_rate)
        current = self._current(logs)
        if current is None:
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._is_improvement(current, self.best):
            self.best, self.wait = current, 0
        elif self.cooldown_counter == 0:
            self.wait += 1
            old_lr = float(optimizer.learning_rate)
            if self.wait >= self.patience and old_lr > self.min_lr:
                new_lr = max(old_lr * self.factor, self.min_lr)
                optimizer.learning_rate = new_lr
                if self.verbose > 0:
                    print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new_lr}.")
                self.cooldown_counter, self.wait = self.cooldown, 0


class TerminateOnNaN(Callback):
    """Stop training when the loss becomes NaN or inf: at the end of such a batch print
    ``Batch N: Invalid loss, terminating training`` (on stdout, as Keras does) and set
    ``model.stop_training``. ``Sequential.fit`` behaves so even without it, and there the update of
    that batch is not applied."""

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            print(f"Batch {batch}: Invalid loss, terminating training")
            self.model.stop_training = True


class LearningRateScheduler(Callback):
    """At the start of each epoch set ``optimizer.learning_rate = schedule(epoch, current_lr)``;
    adds ``learning_rate`` to the epoch logs."""

    def __init__(self, schedule, verbose=0):
        super().__init__()
        self.schedule, self.verbose = schedule, verbose

    def on_epoch_begin(self, epoch, logs=None):
        lr = self.schedule(epoch, float(self.model.optimizer.learning_rate))
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr):
            raise ValueError(f"the schedule must return a finite float learning rate, got {lr!r} at epoch {epoch}")
        self.model.optimizer.learning_rate = float(lr)
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to {lr}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.learning_rate)


class CSVLogger(Callback):
    """One row per epoch: ``epoch`` then the log keys in sorted order (header written once; with
    ``append=True`` rows are added to an existing file and its header is kept)."""

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.filename, self.separator, self.append = os.fspath(filename), separator, append
        self._file = self._writer = self._keys = None

    def on_train_begin(self, logs=None):
        has_rows = self.append and os.path.exists(self.filename) and os.path.getsize(self.filename) > 0
        self._file = open(self.filename, "a" if self.append else "w", newline="", encoding="utf-8")
        self._writer, self._keys, self._has_header = csv.writer(self._file, delimiter=self.separator), None, has_rows

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self._keys is None:
            self._keys = sorted(logs)
            if not self._has_header:
                self._writer.writerow(["epoch", *self._keys])
        self._writer.writerow([epoch, *(logs.get(key, "NA") for key in self._keys)])
        self._file.flush()

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
            self._file = None


# ------------------------------------------------------------------------------------------------
# progress
# ------------------------------------------------------------------------------------------------

def _format_value(value):
    return f"{value:.4f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.4e}"


def _format_logs(logs):
    return "".join(f" - {key}: {_format_value(value)}" for key, value in logs.items()
                   if isinstance(value, (int, float)))


def _format_duration(seconds):
    if seconds >= 3600:
        return f"{int(seconds // 3600)}:{int(seconds % 3600 // 60):02d}:{int(seconds % 60):02d}"
    if seconds >= 60:
        return f"{int(seconds // 60)}:{int(seconds % 60):02d}"
    return f"{int(round(seconds))}s"


class ProgbarLogger(Callback):
    """Keras-like progress on ``stream`` (default: ``sys.stdout`` at the time of writing).

    verbose=1: ``Epoch e/E``, then a bar redrawn in place (``\r``) after each batch when the
    stream is a terminal (at most every 0.05 s), and a final line per epoch::

        Epoch 1/3
        5/5 [==============================] - 0s 2ms/step - loss: 0.6931 - val_loss: 0.6920
    verbose=2: ``Epoch e/E`` and the final line without the bar (``5/5 - 0s 2ms/step - ...``).
    verbose=0: nothing. Reads ``params["epochs"]`` and ``params["steps"]`` (batches per epoch;
    None when unknown). Logs are printed as given: the model passes running means per batch.
    """

    WIDTH = 30

    def __init__(self, verbose=1, stream=None):
        super().__init__()
        if verbose not in (0, 1, 2):
            raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
        self.verbose, self._stream = verbose, stream
        self._start = self._last_draw = time.perf_counter()
        self._seen = 0

    @property
    def stream(self):
        return self._stream if self._stream is not None else sys.stdout

    def _dynamic(self):
        return getattr(self.stream, "isatty", lambda: False)()

    def _write(self, text):
        self.stream.write(text)
        self.stream.flush()

    def _head(self, bar):
        """``seen/steps`` and, for the bar, ``[=====>....]``."""
        steps = self.params.get("steps") or self._seen
        head = f"{self._seen}/{steps}"
        if not bar:
            return head
        filled = self.WIDTH * self._seen // steps if steps else self.WIDTH
        arrow = ">" if filled < self.WIDTH else ""
        return f"{head} [{'=' * (filled - len(arrow))}{arrow}{'.' * (self.WIDTH - filled)}]"

    def on_epoch_begin(self, epoch, logs=None):
        self._start = self._last_draw = time.perf_counter()
        self._seen = 0
        if self.verbose:
            epochs = self.params.get("epochs")
            self._write(f"Epoch {epoch + 1}/{epochs if epochs is not None else '?'}\n")

    def on_batch_end(self, batch, logs=None):
        self._seen = batch + 1
        now = time.perf_counter()
        if self.verbose == 1 and self._dynamic() and now - self._last_draw >= 0.05:
            self._last_draw = now
            steps = self.params.get("steps")
            eta = (now - self._start) / self._seen * (steps - self._seen) if steps else 0.0
            self._write(f"\r{self._head(bar=True)} - ETA: {_format_duration(eta)}{_format_logs(logs or {})}")

    def on_epoch_end(self, epoch, logs=None):
        if not self.verbose:
            return
        elapsed = time.perf_counter() - self._start
        per_step = f" {elapsed / self._seen * 1000:.0f}ms/step" if self._seen else ""
        line = f"{self._head(bar=self.verbose == 1)} - {_format_duration(elapsed)}{per_step}{_format_logs(logs or {})}"
        self._write(("\r" if self.verbose == 1 and self._dynamic() else "") + line + "\n")
