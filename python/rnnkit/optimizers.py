"""Optimizers and learning-rate schedules with Keras 3's defaults and update rules, in NumPy.

    opt = rnnkit.optimizers.get("adam")                  # or Adam(learning_rate=1e-3, clipnorm=1.0)
    opt.apply_gradients([(g_0, w_0), (g_1, w_1), ...])   # updates each w_i in place

One step, as Keras' ``BaseOptimizer.apply`` does it:
  1. clip the gradients (at most one of ``clipnorm``, ``global_clipnorm``, ``clipvalue``);
  2. decoupled weight decay when ``weight_decay`` is set: ``w -= w * weight_decay * lr``;
  3. each optimizer's own rule per variable (``_update``), with ``lr`` the learning rate at
     step ``iterations`` (a schedule is called with ``iterations`` before it is incremented);
  4. ``iterations += 1``.

Variables are identified by their position in the list given to ``apply_gradients``; the same
list, in the same order, must be given every step. Arithmetic happens in each variable's dtype
(gradients are cast to it); optimizer slots have the variable's shape and dtype.

State for exact resumption: ``get_state()`` returns ``{"iterations": int64 array,
"<i>/<slot>": array}`` (``i`` the variable's position); ``set_state`` restores it bitwise.
The configuration (hyperparameters and the current learning rate) is ``get_config()``;
``serialize(opt)`` / ``deserialize(data)`` wrap it as ``{"class_name": ..., "config": ...}``.
"""

from __future__ import annotations

import contextlib
import math
import numbers

import numpy as np

from .initializers import Configurable, deserialize_object, get_object, serialize_object

__all__ = [
    "Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad",
    "LearningRateSchedule", "ExponentialDecay", "PiecewiseConstantDecay", "CosineDecay", "InverseTimeDecay",
    "clip_gradients", "get", "serialize", "deserialize",
]


def _check_range(name, value, low=0.0, high=math.inf, *, high_open=False):
    """``value`` as a float in [low, high] (or [low, high) when ``high_open``), else ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not (low <= value <= high) or (high_open and value == high):
        closing = ")" if high_open else "]"
        raise ValueError(f"{name} must be in [{low}, {high}{closing}, got {value}")
    return value


def clip_gradients(grads, *, clipnorm=None, clipvalue=None, global_clipnorm=None):
    """Keras' gradient clipping; returns new arrays (the inputs are not modified).

    clipnorm:        each g becomes ``g * clipnorm / max(||g||, clipnorm)``
    global_clipnorm: every g is multiplied by ``global_clipnorm / max(G, global_clipnorm)`` with
                     ``G = sqrt(sum_i ||g_i||^2)``; a non-finite G makes every gradient NaN (as Keras)
    clipvalue:       each element is clipped to ``[-clipvalue, clipvalue]``
    """
    if clipnorm is not None:
        return [g * (clipnorm / max(float(np.sqrt(np.sum(np.square(g)))), clipnorm)) for g in grads]
    if global_clipnorm is not None:
        norm = math.sqrt(sum(float(np.sum(np.square(g))) for g in grads))
        scale = global_clipnorm / max(norm, global_clipnorm) if math.isfinite(norm) else math.nan
        return [g * scale for g in grads]
    if clipvalue is not None:
        return [np.clip(g, -clipvalue, clipvalue) for g in grads]
    return list(grads)


# ----------------------------------------------------------------------------------------------
# learning-rate schedules: callables step -> learning rate (step = optimizer.iterations, from 0)
# ----------------------------------------------------------------------------------------------

class LearningRateSchedule(Configurable):
    """Base class: ``schedule(step) -> float``; ``get_config()`` returns the constructor arguments."""

    def __call__(self, step: int) -> float:
        raise NotImplementedError


class _DecaySchedule(LearningRateSchedule):
    """Shared arguments of ExponentialDecay and InverseTimeDecay; ``_progress(step)`` is
    ``step / decay_steps``, floored when ``staircase``."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False):
        self.initial_learning_rate = _check_range("initial_learning_rate", initial_learning_rate)
        self.decay_steps = decay_steps
        if not decay_steps > 0:
            raise ValueError(f"decay_steps must be > 0, got {decay_steps!r}")
        self.decay_rate = _check_range("decay_rate", decay_rate)
        self.staircase = bool(staircase)

    def _progress(self, step):
        p = step / self.decay_steps
        return math.floor(p) if self.staircase else p


class ExponentialDecay(_DecaySchedule):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)`` (integer division if ``staircase``)."""

    def __call__(self, step):
        return self.initial_learning_rate * self.decay_rate ** self._progress(step)


class InverseTimeDecay(_DecaySchedule):
    """``initial_learning_rate / (1 + decay_rate * step / decay_steps)`` (floored if ``staircase``)."""

    def __call__(self, step):
        return self.initial_learning_rate / (1.0 + self.decay_rate * self._progress(step))


class PiecewiseConstantDecay(LearningRateSchedule):
    """``values[0]`` while ``step <= boundaries[0]``, ``values[i]`` while
    ``boundaries[i-1] < step <= boundaries[i]``, ``values[-1]`` after ``boundaries[-1]``."""

    def __init__(self, boundaries, values):
        self.boundaries = [int(b) for b in boundaries]
        self.values = [float(v) for v in values]
        if len(self.boundaries) != len(self.values) - 1:
            raise ValueError(f"values must have one more entry than boundaries, got {len(self.values)} "
                             f"values for {len(self.boundaries)} boundaries")
        if any(b1 >= b2 for b1, b2 in zip(self.boundaries, self.boundaries[1:])):
            raise ValueError(f"boundaries must be strictly increasing, got {self.boundaries}")

    def __call__(self, step):
        return self.values[sum(step > b for b in self.boundaries)]


class CosineDecay(LearningRateSchedule):
    """Optional linear warmup from ``initial_learning_rate`` to ``warmup_target`` over
    ``warmup_steps``, then cosine decay over ``decay_steps`` from ``warmup_target`` (or
    ``initial_learning_rate`` when ``warmup_target`` is None) down to ``alpha`` times that:
    ``lr0 * ((1 - alpha) * 0.5 * (1 + cos(pi * min(s, decay_steps) / decay_steps)) + alpha)``."""

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, warmup_target=None, warmup_steps=0):
        self.initial_learning_rate = _check_range("initial_learning_rate", initial_learning_rate)
        if not decay_steps > 0:
            raise ValueError(f"decay_steps must be > 0, got {decay_steps!r}")
        self.decay_steps = decay_steps
        self.alpha = _check_range("alpha", alpha, 0.0, 1.0)
        self.warmup_target = None if warmup_target is None else _check_range("warmup_target", warmup_target)
        self.warmup_steps = int(_check_range("warmup_steps", warmup_steps))

    def __call__(self, step):
        lr0 = self.initial_learning_rate
        if self.warmup_target is not None:
            if step < self.warmup_steps:
                return lr0 + (self.warmup_target - lr0) * step / self.warmup_steps
            lr0, step = self.warmup_target, step - self.warmup_steps
        cosine = 0.5 * (1.0 + math.cos(math.pi * min(step, self.decay_steps) / self.decay_steps))
        return lr0 * ((1.0 - self.alpha) * cosine + self.alpha)


# ----------------------------------------------------------------------------------------------
# optimizers
# ----------------------------------------------------------------------------------------------

class Optimizer(Configurable):
    """Base class. Subclasses define ``_slots()`` (slot name -> initial value) and
    ``_update(g, w, slots, lr, t)``, which updates ``w`` and its ``slots`` in place for step
    ``t = iterations + 1`` with the clipped gradient ``g`` (same dtype as ``w``)."""

    def __init__(self, learning_rate, *, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None):
        if sum(c is not None for c in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError("only one of clipnorm, clipvalue and global_clipnorm can be set, got "
                             f"clipnorm={clipnorm}, clipvalue={clipvalue}, global_clipnorm={global_clipnorm}")
        for name, c in (("clipnorm", clipnorm), ("clipvalue", clipvalue), ("global_clipnorm", global_clipnorm)):
            if c is not None and not _check_range(name, c) > 0:
                raise ValueError(f"{name} must be > 0, got {c}")
            setattr(self, name, None if c is None else float(c))
        self.weight_decay = None if weight_decay is None else _check_range("weight_decay", weight_decay)
        if isinstance(learning_rate, dict):
            learning_rate = deserialize(learning_rate)
        if isinstance(learning_rate, LearningRateSchedule):
            self._learning_rate = learning_rate
        else:
            self._learning_rate = _check_range("learning_rate", learning_rate)
        self.iterations = 0
        self._slot_arrays: list[dict[str, np.ndarray]] | None = None

    # -- learning rate ------------------------------------------------------------------------
    @property
    def learning_rate(self) -> float:
        """The learning rate of the next step (a schedule evaluated at ``iterations``)."""
        if isinstance(self._learning_rate, LearningRateSchedule):
            return float(self._learning_rate(self.iterations))
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        if isinstance(self._learning_rate, LearningRateSchedule):
            raise TypeError("this optimizer's learning_rate is a LearningRateSchedule and cannot be set; "
                            "create the optimizer with a float learning_rate to change it during training")
        self._learning_rate = _check_range("learning_rate", value)

    # -- the step -----------------------------------------------------------------------------
    def _slots(self) -> dict:
        return {}

    def _update(self, g, w, slots, lr, t):
        raise NotImplementedError

    def apply_gradients(self, grads_and_vars, *, keep_finite=False) -> bool:
        """Apply one step. grads_and_vars: iterable of ``(grad, variable)``, each ``grad`` with its
        variable's shape; each variable a writable floating ``ndarray``, updated in place.

        ``keep_finite=True``: a step that would leave a NaN or inf in a variable or in the optimizer's
        state (an overflow, e.g. a squared gradient beyond float32) is undone: the variables, slots and
        ``iterations`` are restored to their values before it, at the cost of one copy of each. Returns
        whether the step was applied (always True without ``keep_finite``)."""
        pairs = list(grads_and_vars)
        variables = [w for _, w in pairs]
        for i, w in enumerate(variables):
            if not (isinstance(w, np.ndarray) and np.issubdtype(w.dtype, np.floating) and w.flags.writeable):
                raise TypeError(f"variable {i} must be a writable floating numpy array, got "
                                f"{type(w).__name__} {getattr(w, 'dtype', '')}")
        grads = [np.asarray(g, dtype=w.dtype) for g, w in pairs]
        for i, (g, w) in enumerate(zip(grads, variables)):
            if g.shape != w.shape:
                raise ValueError(f"gradient {i} has shape {g.shape}, expected its variable's shape {w.shape}")
        if self._slot_arrays is None:
            self._build(variables)
        elif len(self._slot_arrays) != len(variables):
            raise ValueError(f"apply_gradients got {len(variables)} variables, but this optimizer was "
                             f"built for {len(self._slot_arrays)}; pass the same variables every step")
        for i, (w, slots) in enumerate(zip(variables, self._slot_arrays)):
            for name, arr in slots.items():
                if arr.shape != w.shape or arr.dtype != w.dtype:
                    raise ValueError(f"optimizer slot '{i}/{name}' has shape {arr.shape} and dtype {arr.dtype}, "
                                     f"but variable {i} has shape {w.shape} and dtype {w.dtype}")
        grads = clip_gradients(grads, clipnorm=self.clipnorm, clipvalue=self.clipvalue,
                               global_clipnorm=self.global_clipnorm)
        if keep_finite:
            before = ([w.copy() for w in variables], [{name: a.copy() for name, a in slots.items()}
                                                      for slots in self._slot_arrays], self.iterations)
        lr, t = self.learning_rate, self.iterations + 1
        # with keep_finite an overflow is expected and handled below: no NumPy warning for it
        with np.errstate(over="ignore", invalid="ignore") if keep_finite else contextlib.nullcontext():
            for g, w, slots in zip(grads, variables, self._slot_arrays):
                if self.weight_decay is not None:
                    # w = w - w * wd * lr   (decoupled weight decay, before the update)
                    w -= w * self.weight_decay * lr
                self._update(g, w, slots, lr, t)
        self.iterations = t
        if keep_finite and not all(np.isfinite(a).all() for w, slots in zip(variables, self._slot_arrays)
                                   for a in (w, *slots.values())):
            saved, self._slot_arrays, self.iterations = before
            for w, old in zip(variables, saved):
                w[...] = old
            return False
        return True

    def _build(self, variables):
        self._slot_arrays = [{name: np.full_like(w, value) for name, value in self._slots().items()}
                             for w in variables]

    # -- state and configuration -----------------------------------------------------------------
    def get_state(self) -> dict:
        """``{"iterations": int64 0-d array, "<i>/<slot>": copy of slot array}``."""
        state = {"iterations": np.array(self.iterations, dtype=np.int64)}
        for i, slots in enumerate(self._slot_arrays or []):
            state.update({f"{i}/{name}": arr.copy() for name, arr in slots.items()})
        return state

    def set_state(self, state: dict) -> None:
        """Restore what ``get_state`` returned (from this optimizer or one with the same config).
        Slot shapes and dtypes are checked against the variables at the next ``apply_gradients``."""
        names = self._slots()
        slot_keys = set(state) - {"iterations"}
        count = len({key.partition("/")[0] for key in slot_keys})
        if "iterations" not in state or slot_keys != {f"{i}/{n}" for i in range(count) for n in names}:
            raise ValueError(f"optimizer state keys {sorted(state)} do not match 'iterations' plus "
                             f"'<i>/<slot>' for the slots {sorted(names)} of {type(self).__name__}")
        if count:
            self._slot_arrays = [{n: np.array(state[f"{i}/{n}"], copy=True) for n in names}
                                 for i in range(count)]
        self.iterations = int(state["iterations"])

    def get_config(self) -> dict:
        """Constructor arguments (JSON data); ``learning_rate`` is the current value or the serialized schedule."""
        config = super().get_config()
        if isinstance(self._learning_rate, LearningRateSchedule):
            config["learning_rate"] = serialize(self._learning_rate)
        return config



class SGD(Optimizer):
    """Gradient descent with optional (Nesterov) momentum (Keras 3).

        v = momentum * v - lr * g
        w += v                           (nesterov: w += momentum * v - lr * g)
        without momentum: w -= lr * g

    With a constant lr this is ``torch.optim.SGD(lr, momentum, nesterov)`` (dampening 0): Keras'
    ``v`` is ``-lr`` times PyTorch's momentum buffer.
    """

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, *, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None):
        super().__init__(learning_rate, weight_decay=weight_decay, clipnorm=clipnorm, clipvalue=clipvalue,
                         global_clipnorm=global_clipnorm)
        self.momentum = _check_range("momentum", momentum, 0.0, 1.0)
        self.nesterov = bool(nesterov)

    def _slots(self):
        return {"momentum": 0.0} if self.momentum > 0 else {}

    def _update(self, g, w, slots, lr, t):
        if self.momentum == 0:
            w -= lr * g
            return
        v = slots["momentum"]
        # v = momentum * v - lr * g
        v *= self.momentum
        v -= lr * g
        if self.nesterov:
            # w = w + momentum * v - lr * g
            w += self.momentum * v - lr * g
        else:
            w += v


class Adam(Optimizer):
    """Adam (Keras 3 form, epsilon added to sqrt(v) with the bias corrections folded into lr):

        m += (g - m) * (1 - beta_1)
        v += (g**2 - v) * (1 - beta_2)
        (amsgrad: v_hat = max(v_hat, v), used in place of v below)
        alpha = lr * sqrt(1 - beta_2**t) / (1 - beta_1**t)
        w -= alpha * m / (sqrt(v) + epsilon)

    ``torch.optim.Adam`` computes ``w -= lr / (1 - beta_1**t) * m / (sqrt(v) / sqrt(1 - beta_2**t) + eps)``;
    multiplying out, the two are equal exactly when ``epsilon = eps * sqrt(1 - beta_2**t)``. So a
    constant epsilon matches PyTorch only for ``epsilon = eps = 0``; to reproduce a Keras run in
    PyTorch set ``param_group["eps"] = epsilon / sqrt(1 - beta_2**t)`` before step ``t``.
    """

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False, *,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None):
        super().__init__(learning_rate, weight_decay=weight_decay, clipnorm=clipnorm, clipvalue=clipvalue,
                         global_clipnorm=global_clipnorm)
        self.beta_1 = _check_range("beta_1", beta_1, 0.0, 1.0, high_open=True)
        self.beta_2 = _check_range("beta_2", beta_2, 0.0, 1.0, high_open=True)
        self.epsilon = _check_range("epsilon", epsilon)
        self.amsgrad = bool(amsgrad)

    def _slots(self):
        return dict.fromkeys(("momentum", "velocity", "velocity_hat") if self.amsgrad
                             else ("momentum", "velocity"), 0.0)

    def _update(self, g, w, slots, lr, t):
        m, v = slots["momentum"], slots["velocity"]
        m += (g - m) * (1.0 - self.beta_1)
        v += (np.square(g) - v) * (1.0 - self.beta_2)
        if self.amsgrad:
            v = np.maximum(slots["velocity_hat"], v, out=slots["velocity_hat"])
        alpha = lr * math.sqrt(1.0 - self.beta_2 ** t) / (1.0 - self.beta_1 ** t)
        w -= m * alpha / (np.sqrt(v) + self.epsilon)


class AdamW(Adam):
    """Adam with decoupled weight decay (Keras 3): before the Adam step, ``w -= w * weight_decay * lr``.

    Equals ``torch.optim.AdamW`` (``w *= 1 - lr * weight_decay``, then Adam) under the epsilon
    mapping described in :class:`Adam`. Keras' defaults differ from PyTorch's (weight_decay 0.004
    vs 0.01, epsilon 1e-7 vs 1e-8).
    """

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, *, clipnorm=None, clipvalue=None, global_clipnorm=None):
        if weight_decay is None:
            raise ValueError("AdamW needs a float weight_decay, got None")
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad, weight_decay=weight_decay,
                         clipnorm=clipnorm, clipvalue=clipvalue, global_clipnorm=global_clipnorm)


class RMSprop(Optimizer):
    """RMSprop (Keras 3; epsilon inside the square root, plain momentum):

        v = rho * v + (1 - rho) * g**2
        centered:  a = rho * a + (1 - rho) * g;  d = v - a**2 + epsilon    else  d = v + epsilon
        inc = lr * g / sqrt(d)
        momentum > 0:  p = momentum * p + inc;  w -= p          else  w -= inc

    ``torch.optim.RMSprop(alpha=rho)`` puts eps outside the root (``sqrt(d) + eps``); with
    ``epsilon = eps = 0`` and a constant lr the two agree (PyTorch's buffer is ``p / lr``).
    """

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, *,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None):
        super().__init__(learning_rate, weight_decay=weight_decay, clipnorm=clipnorm, clipvalue=clipvalue,
                         global_clipnorm=global_clipnorm)
        self.rho = _check_range("rho", rho, 0.0, 1.0, high_open=True)
        self.momentum = _check_range("momentum", momentum, 0.0, 1.0)
        self.epsilon = _check_range("epsilon", epsilon)
        self.centered = bool(centered)

    def _slots(self):
        names = ["velocity"] + ["momentum"] * (self.momentum > 0) + ["average_gradient"] * self.centered
        return dict.fromkeys(names, 0.0)

    def _update(self, g, w, slots, lr, t):
        v = slots["velocity"]
        v *= self.rho
        v += (1.0 - self.rho) * np.square(g)
        if self.centered:
            a = slots["average_gradient"]
            a *= self.rho
            a += (1.0 - self.rho) * g
            denominator = v - np.square(a) + self.epsilon
        else:
            denominator = v + self.epsilon
        increment = lr * g / np.sqrt(denominator)
        if self.momentum > 0:
            p = slots["momentum"]
            p *= self.momentum
            p += increment
            w -= p
        else:
            w -= increment


class Adagrad(Optimizer):
    """Adagrad (Keras 3; epsilon inside the square root):

        acc += g**2          (acc starts at initial_accumulator_value)
        w -= lr * g / sqrt(acc + epsilon)

    ``torch.optim.Adagrad`` uses ``sqrt(acc) + eps`` and starts at 0 by default; with
    ``epsilon = eps = 0`` and equal initial accumulators the two agree.
    """

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, *,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None):
        super().__init__(learning_rate, weight_decay=weight_decay, clipnorm=clipnorm, clipvalue=clipvalue,
                         global_clipnorm=global_clipnorm)
        self.initial_accumulator_value = _check_range("initial_accumulator_value", initial_accumulator_value)
        self.epsilon = _check_range("epsilon", epsilon)

    def _slots(self):
        return {"accumulator": self.initial_accumulator_value}

    def _update(self, g, w, slots, lr, t):
        acc = slots["accumulator"]
        acc += np.square(g)
        w -= lr * g / np.sqrt(acc + self.epsilon)


# ----------------------------------------------------------------------------------------------
# lookup and serialization
# ----------------------------------------------------------------------------------------------

_NAMES = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop, "adagrad": Adagrad}
_CLASSES = {cls.__name__: cls for cls in (*_NAMES.values(), ExponentialDecay, PiecewiseConstantDecay,
                                          CosineDecay, InverseTimeDecay)}


def serialize(obj) -> dict:
    """``{"class_name": ..., "config": ...}`` for an optimizer or a learning-rate schedule."""
    return serialize_object(obj)


def deserialize(data: dict):
    """Rebuild an optimizer or schedule from ``serialize``'s output (fresh state: see ``set_state``)."""
    return deserialize_object(data, _CLASSES, "optimizer or schedule")


def get(identifier) -> Optimizer:
    """An optimizer from a name ("adam", case-insensitive, Keras defaults), ``serialize``'s output,
    or an Optimizer instance (returned as is)."""
    return get_object(identifier, _NAMES, _CLASSES, Optimizer, "optimizer")
