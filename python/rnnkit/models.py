"""Sequential: a stack of layers with Keras' compile / fit / evaluate / predict / save.

Arrays are batch-major: ``x: [N, T, C]`` for sequences (``[N, T]`` integer ids before an Embedding);
``y`` has the model output's shape (``[N, K]``, or ``[N, T, K]`` with ``return_sequences``; class ids for
sparse losses). Masks (from Embedding(mask_zero=True) or Masking) flow through the layers as per-sequence
lengths; a sequence output's masked steps are left out of the loss and the metrics.
"""

from __future__ import annotations

import math
import numbers
import sys

import numpy as np

from . import callbacks as callbacks_module
from . import layers as layers_module
from . import losses, metrics as metrics_module, optimizers
from .layers import Bidirectional, Embedding, Layer, Recurrent
from .layers.base import no_backward
from .random import generator
from .saving import load_model  # keras.models.load_model; saving imports this module only inside its functions

__all__ = ["Sequential", "load_model"]


class Sequential:
    """Sequential(layers=None, name=None): the output of each layer is the input of the next."""

    def __init__(self, layers=None, name=None):
        self.name = name or "sequential"
        self.layers = []
        self.optimizer = self.loss = None
        self.metrics = []  # [(name, fn)]
        self.compiled = False
        self.stop_training = False
        self.history = None
        self.build_input_shape = None
        for layer in layers or []:
            self.add(layer)

    # ---- structure ------------------------------------------------------------------------------------
    def add(self, layer):
        """Appends ``layer``; builds it at once when the model's input shape is known."""
        if not isinstance(layer, Layer):
            raise TypeError(f"layer: expected an rnnkit.layers.Layer, got {type(layer).__name__}")
        if any(layer.name == other.name for other in self.layers):
            raise ValueError(f"layer: the model already has a layer named {layer.name!r}; layer names must be unique")
        if getattr(layer, "return_state", False) or getattr(layer, "merge_mode", "concat") is None:
            raise ValueError(f"layer: {layer.name!r} returns several arrays (return_state=True or merge_mode=None); "
                             "Sequential passes one array from layer to layer")
        if self.layers and isinstance(layer, Embedding):
            raise ValueError(f"layer: Embedding {layer.name!r} takes integer ids, so it must be the first layer")
        if self.layers and layer.batch_input_shape is not None:
            raise ValueError(f"layer: only the first layer takes input_shape=, {layer.name!r} is not first")
        if self.build_input_shape is not None:
            layer.ensure_built(self._output_shape())  # before appending: a layer that does not fit is not added
        self.layers.append(layer)
        if len(self.layers) == 1 and layer.batch_input_shape is not None:
            try:
                self.build(layer.batch_input_shape)
            except Exception:
                self.layers.pop()
                raise

    def _output_shape(self, n_layers=None, input_shape=None):
        """The output shape of the first ``n_layers`` layers (all by default) for ``input_shape`` (the built one
        by default), batch-major."""
        shape = tuple(self.build_input_shape if input_shape is None else input_shape)
        for layer in self.layers[:n_layers]:
            shape = tuple(layer.compute_output_shape(shape))
        return shape

    def build(self, input_shape):
        """Creates every layer's weights for inputs of ``input_shape`` (with the batch axis, None allowed).
        Every layer's input shape is checked first, so a shape the layers do not take leaves the model unbuilt."""
        if not self.layers:
            raise ValueError("model: add layers before building it")
        shapes = [tuple(None if d is None else int(d) for d in input_shape)]
        for layer in self.layers:
            layer.check_input_ndim(shapes[-1])
            shapes.append(tuple(layer.compute_output_shape(shapes[-1])))
        for layer, shape in zip(self.layers, shapes):
            layer.ensure_built(shape)
        self.build_input_shape = shapes[0]

    @property
    def built(self):
        return self.build_input_shape is not None

    def _require_built(self, what):
        if not self.layers:
            raise ValueError(f"{what}: the model has no layers; add some first")
        if not self.built:
            raise ValueError(f"{what}: the model is not built yet; give the first layer input_shape=(T, C), "
                             "call build((None, T, C)), or call fit/predict on data first")

    @property
    def weights(self):
        return [w for layer in self.layers for w in layer.weights]

    @property
    def trainable_weights(self):
        return [w for layer in self.layers for w in layer.trainable_weights]

    def get_weights(self):
        self._require_built("get_weights")
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        self._require_built("set_weights")
        weights = list(weights)
        if len(weights) != len(self.weights):
            raise ValueError(f"weights: the model has {len(self.weights)} weight arrays, got {len(weights)}")
        start = 0
        for layer in self.layers:
            layer.set_weights(weights[start:start + len(layer.weights)])
            start += len(layer.weights)

    def count_params(self):
        self._require_built("count_params")
        return sum(layer.count_params() for layer in self.layers)

    def reset_states(self):
        for layer in self.layers:
            if hasattr(layer, "reset_states"):
                layer.reset_states()

    def summary(self, print_fn=None):
        """Prints one line per layer (name, type, output shape, parameters) and the totals."""
        self._require_built("summary")
        print_fn = print_fn or print
        rows, shape = [], self.build_input_shape
        for layer in self.layers:
            shape = tuple(layer.compute_output_shape(shape))
            rows.append((f"{layer.name} ({type(layer).__name__})", str(shape), f"{layer.count_params():,}"))
        widths = [max(len(r[i]) for r in rows + [("Layer (type)", "Output Shape", "Param #")]) + 2 for i in range(3)]
        line = "-" * sum(widths)
        print_fn(f'Model: "{self.name}"')
        print_fn(line)
        print_fn("".join(h.ljust(w) for h, w in zip(("Layer (type)", "Output Shape", "Param #"), widths)))
        print_fn("=" * sum(widths))
        for row in rows:
            print_fn("".join(c.ljust(w) for c, w in zip(row, widths)))
        print_fn("=" * sum(widths))
        trainable = sum(w.size for w in self.trainable_weights)
        print_fn(f"Total params: {self.count_params():,}")
        print_fn(f"Trainable params: {trainable:,}")
        print_fn(f"Non-trainable params: {self.count_params() - trainable:,}")

    # ---- compile --------------------------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None):
        """optimizer: a name ("adam", "sgd", ...), a config or an Optimizer; loss: a name or a Loss;
        metrics: a list of names ("accuracy", "mae", "mse") or callables ``fn(y_true, y_pred, sample_mask)``."""
        if loss is None:
            raise ValueError("loss: compile() needs a loss, e.g. loss='mse'")
        self.optimizer = _named("optimizer", optimizers.get, optimizer)
        self.loss = _named("loss", losses.get, loss)
        self.metrics = [_metric(m, self.loss) for m in (metrics or [])]
        self.compiled = True

    # ---- data checks ----------------------------------------------------------------------------------
    def _check_x(self, x, name="x"):
        if not self.layers:
            raise ValueError(f"{name}: the model has no layers; add some first")
        if x is None:
            raise ValueError(f"{name}: expected an array, got None")
        x = self.layers[0].check_input(x, name)
        if x.ndim < 2:
            raise ValueError(f"{name}: expected a batch [N, ...] with at least 2 axes, got shape {x.shape}")
        if x.shape[-1] == 0 and not isinstance(self.layers[0], Embedding):
            raise ValueError(f"{name}: expected at least one feature on the last axis, got shape {x.shape}")
        if not self.built:
            self.build((None, *x.shape[1:]))
        expected = self.build_input_shape
        free_axis = 1 if len(expected) == 3 or isinstance(self.layers[0], Embedding) else None
        if len(x.shape) != len(expected) or any(
                e is not None and e != d for i, (e, d) in enumerate(zip(expected, x.shape)) if i not in (0, free_axis)):
            raise ValueError(f"{name}: the model takes inputs of shape {expected} (None: any size), "
                             f"got {x.shape}")
        return x

    def _check_y(self, y, x, name="y"):
        if y is None:
            raise ValueError(f"{name}: expected target values, got None")
        y = np.asarray(y)
        if y.dtype.kind not in "biuf":
            raise TypeError(f"{name}: expected a real-valued numeric array, got dtype {y.dtype}")
        if not np.isfinite(y).all():
            raise ValueError(f"{name}: contains NaN or inf (first at index {np.argwhere(~np.isfinite(y))[0].tolist()})")
        if y.shape[:1] != x.shape[:1]:
            raise ValueError(f"{name}: expected {x.shape[0]} samples to match x, got shape {y.shape}")
        out = self._output_shape(input_shape=x.shape)
        sparse = self.loss is not None and self.loss.sparse
        expected = out[:-1] if sparse else out
        allowed = (expected, expected + (1,)) if sparse else (expected, expected[:-1] if expected[-1] == 1 else None)
        if y.shape not in allowed:
            raise ValueError(f"{name}: expected targets of shape {expected} for the model output {out}, got {y.shape}")
        return y if sparse else y.astype(self.layers[-1].dtype, copy=False)

    def _check_compiled(self, what):
        if not self.compiled:
            raise RuntimeError(f"{what}: compile the model first, e.g. model.compile(optimizer='adam', loss='mse')")

    # ---- forward, backward, one step ----------------------------------------------------------------
    # The model's own arithmetic runs with NumPy's floating-point warnings off: an overflow or an invalid value
    # (finite inputs too large for the dtype) becomes inf or NaN, which predict returns and fit detects and stops on.
    def _forward(self, x, training):
        """x -> (y_pred, mask of y_pred or None)."""
        mask = None
        with _float_warnings_off():
            for layer in self.layers:
                next_mask = layer.compute_mask(x, mask)
                x = layer(x, mask=mask, training=training)
                mask = next_mask
        return x, mask

    def _backward(self, dy):
        with _float_warnings_off():
            for layer in reversed(self.layers):
                dy = layer.backward(dy)

    def _loss_and_metrics(self, y, y_pred, mask):
        sample_mask = mask if mask is not None and y_pred.ndim == 3 else None
        with _float_warnings_off():
            value, grad = self.loss.value_and_grad(y, y_pred, sample_mask=sample_mask)
            logs = {"loss": value}
            logs.update((name, float(fn(y, y_pred, sample_mask=sample_mask))) for name, fn in self.metrics)
        return logs, grad

    def _train_step(self, x, y, guard=False):
        """One optimizer step: (logs, None). With ``guard``, a step whose loss or gradients are NaN or inf, or whose
        update would make a weight or the optimizer's state NaN or inf, changes nothing (weights and optimizer
        state as before it) and returns (logs, "loss", "gradient" or "update")."""
        y_pred, mask = self._forward(x, training=True)
        logs, grad = self._loss_and_metrics(y, y_pred, mask)
        if guard and not math.isfinite(logs["loss"]):
            return logs, "loss"
        self._backward(grad)
        pairs = [(g, w) for layer in self.layers if layer.trainable for g, w in zip(layer.grads, layer.weights)]
        if guard and not all(np.isfinite(g).all() for g, _ in pairs):
            return logs, "gradient"
        with _float_warnings_off():
            applied = self.optimizer.apply_gradients(pairs, keep_finite=guard)
        return logs, None if applied else "update"

    def _train_batch(self, x, y, tbptt_steps, guard=False):
        """One batch: (logs, None or what was not finite, as ``_train_step``); with ``tbptt_steps`` one optimizer
        step per window of that many time steps, the stateful layers' state carried from window to window (reset
        at the batch's start), stopping at a window whose step was not applied."""
        if tbptt_steps is None:
            return self._train_step(x, y, guard)
        self.reset_states()
        T, totals = x.shape[1], {}
        for start in range(0, T, tbptt_steps):
            logs, invalid = self._train_step(x[:, start:start + tbptt_steps], y[:, start:start + tbptt_steps], guard)
            for k, v in logs.items():
                totals[k] = totals.get(k, 0.0) + v * min(tbptt_steps, T - start) / T
            if invalid:
                return totals, invalid
        return totals, None

    def train_on_batch(self, x, y):
        """One optimizer step on (x, y); returns the loss (a list [loss, *metrics] when compiled with metrics)."""
        self._check_compiled("train_on_batch")
        x = self._check_x(x)
        logs, _ = self._train_step(x, self._check_y(y, x))
        return _result(logs, self.metrics, False)

    # ---- fit / evaluate / predict -------------------------------------------------------------------
    def fit(self, x=None, y=None, batch_size=32, epochs=1, verbose=1, callbacks=None, validation_split=0.0,
            validation_data=None, shuffle=True, initial_epoch=0, tbptt_steps=None):
        """Trains for ``epochs`` epochs in batches of ``batch_size``; returns a History.

        validation_split takes the last fraction of (x, y) (before shuffling) as validation data;
        validation_data=(x_val, y_val) gives it explicitly. shuffle draws a new order each epoch from
        rnnkit's generator (rnnkit.set_seed makes it repeatable). tbptt_steps=k (truncated BPTT; every
        recurrent layer must be stateful and the targets sequences [N, T, ...]) splits each batch into
        windows of k steps: the state is carried across windows and the gradient cut between them.

        A batch whose loss or a gradient is NaN or inf, or whose update would make a weight or the optimizer
        state NaN or inf (an overflow), stops training, with or without a TerminateOnNaN callback: that batch's
        update is not applied (the weights and the optimizer state stay as they were before it; with
        tbptt_steps, before its window), fit prints ``Batch N: Invalid loss, terminating training`` (``Invalid
        gradient ...`` or ``Invalid update ...`` when the loss was finite) whatever ``verbose`` is, sets
        ``model.stop_training``, and ends after that epoch's callbacks, whose logs (and the History) carry the
        batch's loss. NumPy's floating-point warnings are off inside the model's arithmetic: an overflow
        shows as inf or NaN, and is reported this way.
        """
        self._check_compiled("fit")
        batch_size = _positive_int("batch_size", batch_size)
        epochs = _positive_int("epochs", epochs, minimum=0)
        initial_epoch = _positive_int("initial_epoch", initial_epoch, minimum=0)
        x = self._check_x(x)
        y = self._check_y(y, x)
        _require_samples("fit", x)
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("validation_data: expected a tuple (x_val, y_val)")
            x_val = self._check_x(validation_data[0], "validation_data[0]")
            val = (x_val, self._check_y(validation_data[1], x_val, "validation_data[1]"))
            _require_samples("fit", x_val, "validation_data[0]")
        elif (fraction := _fraction(validation_split)) > 0:
            split = int(x.shape[0] * (1.0 - fraction))
            if split in (0, x.shape[0]):
                raise ValueError(f"validation_split: {validation_split} of {x.shape[0]} samples leaves an empty set")
            x, y, val = x[:split], y[:split], (x[split:], y[split:])
        else:
            val = None
        if tbptt_steps is not None:
            tbptt_steps = self._check_tbptt(tbptt_steps, x, y)

        cbs = callbacks_module.CallbackList(
            callbacks or [], model=self, add_history=True, add_progbar=bool(verbose), add_terminate_on_nan=True,
            params={"epochs": epochs, "steps": math.ceil(x.shape[0] / batch_size), "verbose": verbose})
        self.stop_training = False
        N = x.shape[0]
        cbs.on_train_begin()
        for epoch in range(initial_epoch, epochs):
            cbs.on_epoch_begin(epoch)
            order = generator().permutation(N) if shuffle else np.arange(N)
            totals, seen = {}, 0
            for step, start in enumerate(range(0, N, batch_size)):
                index = order[start:start + batch_size]
                cbs.on_train_batch_begin(step)
                logs, invalid = self._train_batch(x[index], y[index], tbptt_steps, guard=True)
                seen += len(index)
                for k, v in logs.items():
                    totals[k] = totals.get(k, 0.0) + v * len(index)
                cbs.on_train_batch_end(step, {k: v / seen for k, v in totals.items()})  # TerminateOnNaN: a bad loss
                if invalid in _INVALID_STEP:
                    print(f"Batch {step}: {_INVALID_STEP[invalid]}, terminating training")
                    self.stop_training = True
                if self.stop_training:
                    break
            epoch_logs = {k: v / seen for k, v in totals.items()}
            if val is not None:
                epoch_logs.update(("val_" + k, v) for k, v in self._evaluate(*val, batch_size, cbs).items())
            cbs.on_epoch_end(epoch, epoch_logs)
            if self.stop_training:
                break
        cbs.on_train_end()
        self.history = cbs.history
        return cbs.history

    def _check_tbptt(self, tbptt_steps, x, y):
        tbptt_steps = _positive_int("tbptt_steps", tbptt_steps)
        recurrent = [layer for layer in self.layers if isinstance(layer, (Recurrent, Bidirectional))]
        if not recurrent or any(isinstance(layer, Bidirectional) or not layer.stateful for layer in recurrent):
            raise ValueError("tbptt_steps: truncated BPTT carries state between windows, so every recurrent layer "
                             "must be a SimpleRNN/LSTM/GRU with stateful=True (Bidirectional cannot be)")
        if y.ndim < 2 or x.ndim < 2 or y.shape[1] != x.shape[1] or len(self._output_shape()) < 3:
            raise ValueError(f"tbptt_steps: needs sequence outputs and targets [N, T, ...] (return_sequences=True "
                             f"on the last recurrent layer); got x {x.shape} and y {y.shape}")
        return tbptt_steps

    def _evaluate(self, x, y, batch_size, cbs):
        """The loss and metrics over (x, y), calling the on_test_* hooks of ``cbs`` (a CallbackList)."""
        totals, seen = {}, 0
        cbs.on_test_begin()
        for step, start in enumerate(range(0, x.shape[0], batch_size)):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            cbs.on_test_batch_begin(step)
            with no_backward():
                y_pred, mask = self._forward(xb, training=False)
            logs, _ = self._loss_and_metrics(yb, y_pred, mask)
            seen += xb.shape[0]
            for k, v in logs.items():
                totals[k] = totals.get(k, 0.0) + v * xb.shape[0]
            cbs.on_test_batch_end(step, {k: v / seen for k, v in totals.items()})
        logs = {k: v / x.shape[0] for k, v in totals.items()}
        cbs.on_test_end(logs)
        return logs

    def evaluate(self, x=None, y=None, batch_size=32, verbose=0, return_dict=False, callbacks=None):
        """The loss (and metrics) over (x, y) in inference mode, averaged over samples (ValueError for none);
        ``callbacks`` get the on_test_* hooks."""
        self._check_compiled("evaluate")
        x = self._check_x(x)
        y = self._check_y(y, x)
        batch_size = _positive_int("batch_size", batch_size)
        _require_samples("evaluate", x)
        cbs = callbacks_module.CallbackList(callbacks or [], model=self,
                                            params={"steps": math.ceil(x.shape[0] / batch_size), "verbose": verbose})
        logs = self._evaluate(x, y, batch_size, cbs)
        if verbose:
            print(" - ".join(f"{k}: {v:.4f}" for k, v in logs.items()), file=sys.stdout)
        return _result(logs, self.metrics, return_dict)

    def predict(self, x, batch_size=32, verbose=0, callbacks=None):
        """The model's output for x, computed ``batch_size`` samples at a time (bounded memory); an empty batch
        ``[0, ...]`` gives an empty array of the output's shape (``[0, T, K]`` for a sequence output).
        ``callbacks`` get the on_predict_* hooks (each batch's logs hold its ``outputs``)."""
        x = self._check_x(x)
        batch_size = _positive_int("batch_size", batch_size)
        cbs = callbacks_module.CallbackList(callbacks or [], model=self,
                                            params={"steps": math.ceil(x.shape[0] / batch_size), "verbose": verbose})
        out = []
        cbs.on_predict_begin()
        for step, start in enumerate(range(0, x.shape[0], batch_size)):
            cbs.on_predict_batch_begin(step)
            with no_backward():
                out.append(self._forward(x[start:start + batch_size], training=False)[0])
            cbs.on_predict_batch_end(step, {"outputs": out[-1]})
        cbs.on_predict_end()
        if not out:
            return np.zeros(self._output_shape(input_shape=x.shape), self.layers[-1].dtype)
        return np.concatenate(out)

    def __call__(self, x, training=False):
        return self._forward(self._check_x(x), training=training)[0]

    # ---- configuration and files -------------------------------------------------------------------
    def get_config(self):
        return {"name": self.name, "layers": [layers_module.serialize(layer) for layer in self.layers],
                "build_input_shape": None if self.build_input_shape is None else list(self.build_input_shape)}

    @classmethod
    def from_config(cls, config):
        model = cls(name=config.get("name"))
        for data in config.get("layers", []):
            layer = layers_module.deserialize(data)
            model.add(layer)
        if config.get("build_input_shape") is not None and not model.built:
            model.build(config["build_input_shape"])
        return model

    def save(self, path, include_optimizer=True):
        """Writes the model (architecture, weights, compile settings and optimizer state) to ``path``."""
        from .saving import save_model

        save_model(self, path, include_optimizer=include_optimizer)

    def save_weights(self, filepath, overwrite=True):
        """Writes the layers' weights to ``filepath`` (a safetensors file; see ``rnnkit.saving.save_weights``)."""
        from .saving import save_weights

        save_weights(self, filepath, overwrite=overwrite)

    def load_weights(self, filepath):
        """Sets the layers' weights from a file written by ``save_weights`` (see ``rnnkit.saving.load_weights``)."""
        from .saving import load_weights

        load_weights(self, filepath)


def _named(argument, get, identifier):
    try:
        return get(identifier)
    except (ValueError, TypeError) as e:
        raise type(e)(f"{argument}: {e}") from None


def _metric(identifier, loss):
    """(name for the logs, fn) from a metric name, a Metric, or a callable ``fn(y_true, y_pred, sample_mask)``."""
    if callable(identifier) and not isinstance(identifier, metrics_module.Metric):
        return getattr(identifier, "__name__", "metric"), identifier
    metric = _named("metrics", lambda m: metrics_module.get(m, loss=loss), identifier)
    return metric.name, metric


def _result(logs, metrics, return_dict):
    if return_dict:
        return dict(logs)
    return logs["loss"] if not metrics else [logs["loss"], *(logs[name] for name, _ in metrics)]


_INVALID_STEP = {  # fit's messages for a step it did not apply (a NaN or inf loss: TerminateOnNaN's)
    "gradient": "Invalid gradient (NaN or inf) with a finite loss",
    "update": "Invalid update (it would make a weight or the optimizer state NaN or inf)",
}


def _float_warnings_off():
    return np.errstate(over="ignore", invalid="ignore", divide="ignore")


def _fraction(validation_split):
    """validation_split as a float in [0, 1) (0: no split); TypeError / ValueError naming it otherwise."""
    if validation_split is None:
        return 0.0
    if not isinstance(validation_split, numbers.Real):
        raise TypeError(f"validation_split: expected a fraction in [0, 1), got {validation_split!r}")
    if not 0.0 <= float(validation_split) < 1.0:
        raise ValueError(f"validation_split: expected a fraction in [0, 1), got {validation_split!r}")
    return float(validation_split)


def _require_samples(what, x, name="x"):
    if x.shape[0] == 0:
        raise ValueError(f"{name}: {what} needs at least one sample, got an empty batch of shape {x.shape}")


def _positive_int(name, value, minimum=1):
    if value is None and name == "batch_size":
        return 32  # Keras' default
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)
