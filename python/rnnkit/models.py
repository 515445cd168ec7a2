"""Model and Sequential, with Keras' compile / fit / evaluate / predict / save.

``Model`` is the base of every model and runs the training loop. It is built one of two ways, as in Keras:
``Model(inputs, outputs)`` from ``rnnkit.Input`` tensors and the layers called on them (a functional model: a
graph, several inputs and outputs as lists or dicts, shared layers, models used as layers), or subclassed, with
layers made in ``__init__`` and a ``call(inputs, training=None)`` of the user's (the layers held in attributes,
lists and dicts are the model's). Either way a training step runs the model on eager tensors while the tape records
it and differentiates it backwards (``rnnkit.engine``). ``Sequential`` is the single-input stack, with its own
fast forward and backward.

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
from .engine import functional as graph_module
from .engine.calls import call_layer, own_backward, training_mode
from .engine.tape import Tensor, gradients, recording, value_of
from .layers import Bidirectional, Embedding, Layer, Recurrent
from .layers.base import as_float_array, backward_possible, no_backward
from .random import generator

__all__ = ["Model", "Sequential", "load_model"]


def __getattr__(name):
    """``load_model`` (keras.models.load_model), imported when first asked for: rnnkit.saving imports this module."""
    if name == "load_model":
        from .saving import load_model

        return load_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Model(Layer):
    """A model: ``Model(inputs, outputs, name=None)`` for a functional model, or a subclass with its own
    ``call(inputs, training=None)`` (see the module docstring). ``compile``, ``fit``, ``evaluate``, ``predict``,
    ``save`` and ``summary`` as in Keras.

    Data: ``x`` an array, or a list (in the order of ``inputs``) or a dict (by Input name) of arrays, one per
    input; ``y`` likewise per output (by output name: the name of the layer making it, or the key of a dict of
    outputs). ``compile(loss=...)`` takes one loss for every output, or a list or dict of them; ``loss_weights``
    weighs them in the total ``loss``; ``metrics`` a list (for every output), a list of lists or a dict. With
    several outputs the logs hold ``<output>_loss`` and ``<output>_<metric>`` beside ``loss``.
    """

    _transient = Layer._transient + ("_last_outputs", "_grads", "_all_layers_cache")

    def __init__(self, *args, **kwargs):
        inputs = kwargs.pop("inputs", args[0] if args else None)
        outputs = kwargs.pop("outputs", args[1] if len(args) > 1 else None)
        if len(args) > 2:
            raise TypeError(f"Model: takes inputs and outputs positionally, got {len(args)} positional arguments")
        name = kwargs.pop("name", None)
        trainable = kwargs.pop("trainable", True)
        dtype = kwargs.pop("dtype", None)
        if kwargs:
            raise TypeError(f"Model: unexpected keyword argument {next(iter(kwargs))!r}")
        self.name = name or _default_model_name(type(self))
        self.dtype = "float32" if dtype is None else str(np.dtype(dtype))
        self.trainable = bool(trainable)
        self.built, self.input_spec, self.batch_input_shape = False, None, None
        self.optimizer = self.loss = None
        self.metrics = []  # [(name, fn)] (one output), as Sequential
        self.compiled = False
        self.stop_training = False
        self.history = None
        self._graph = None
        self._compile_spec = None
        self._outputs_compiled = None  # [(output name, loss, weight, [(metric name, fn)])]
        self._out_structure = None
        self._last_outputs = self._grads = None
        self._input_shapes = None
        if inputs is not None or outputs is not None:
            if inputs is None or outputs is None:
                raise ValueError("Model: a functional model needs both inputs= and outputs=")
            self._graph = graph_module.Graph(inputs, outputs)
            self._out_structure = outputs
            self.built = True

    # ---- structure ------------------------------------------------------------------------------------
    @property
    def inputs(self):
        return list(self._graph.flat_inputs) if self._graph else None

    @property
    def outputs(self):
        return list(self._graph.flat_outputs) if self._graph else None

    @property
    def layers(self):
        """A functional model's layers in graph order (its Input layers first); a subclassed model's layers in the
        order its attributes were set."""
        return self._graph.layers() if self._graph else self.sublayers()

    def get_layer(self, name=None, index=None):
        """The layer called ``name``, or at position ``index`` of ``layers``; ValueError if there is none."""
        if index is not None:
            if not -len(self.layers) <= index < len(self.layers):
                raise ValueError(f"index: the model has {len(self.layers)} layers, got {index}")
            return self.layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"name: no layer named {name!r}; the layers are {[l.name for l in self.layers]}")

    def _all_layers(self):
        """Every layer inside the model once (layers within layers too), outermost first (a functional model's,
        once all are built, worked out once)."""
        cached = self.__dict__.get("_all_layers_cache")
        if cached is not None:
            return cached
        found, seen, stack = [], set(), list(reversed(self.layers))
        while stack:
            layer = stack.pop()
            if id(layer) in seen:
                continue
            seen.add(id(layer))
            found.append(layer)
            inner = layer.layers if isinstance(layer, Model) else layer.sublayers()
            stack.extend(reversed(inner))
        if self._graph is not None and all(layer.built for layer in found):
            self._all_layers_cache = found
        return found

    def _collect(self, trainable_only):
        arrays, seen = [], set()
        for layer in self._all_layers():
            if isinstance(layer, Model):
                continue
            owned = layer.weights if not trainable_only else layer.trainable_weights if self.trainable else []
            if trainable_only and not all(o.trainable for o in self._owners(layer)):
                owned = []
            for w in owned:
                if id(w) not in seen:
                    seen.add(id(w))
                    arrays.append(w)
        return arrays

    def _owners(self, layer):
        return ()

    @property
    def weights(self):
        return self._collect(False)

    @property
    def trainable_weights(self):
        return self._collect(True)

    @property
    def non_trainable_weights(self):
        trainable = {id(w) for w in self.trainable_weights}
        return [w for w in self.weights if id(w) not in trainable]

    def get_weights(self):
        self._require_built("get_weights")
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        self._require_built("set_weights")
        weights, own = list(weights), self.weights
        if len(weights) != len(own):
            raise ValueError(f"weights: the model has {len(own)} weight arrays, got {len(weights)}")
        for i, (w, new) in enumerate(zip(own, weights)):
            new = np.asarray(new)
            if new.shape != w.shape:
                raise ValueError(f"weights: array {i} should have shape {w.shape}, got {new.shape}")
        for w, new in zip(own, weights):
            w[...] = new

    def count_params(self):
        self._require_built("count_params")
        return int(sum(w.size for w in self.weights))

    def reset_states(self):
        for layer in self._all_layers():
            if hasattr(layer, "reset_states") and not isinstance(layer, Model):
                layer.reset_states()

    def _require_built(self, what):
        if not self.built:
            raise ValueError(f"{what}: the model is not built yet; call it on data (model(x)), or fit/predict first")

    def build(self, input_shape):
        """A subclassed model: runs ``call`` once on zeros of ``input_shape`` (None axes as 1), building its
        layers."""
        if self._graph is None and not self.built:
            self.built = True
            shapes = input_shape
            with no_backward():
                self._run(_zeros_of_shapes(shapes), training=False)
        self.built = True

    def build_from_shape(self, input_shape):
        self.built = True  # a model's layers build themselves during its call

    def summary(self, print_fn=None):
        """One line per layer (name and type, output shape, parameters, and for a functional model the layers
        each one reads), then the totals."""
        self._require_built("summary")
        print_fn = print_fn or print
        header, rows = self._summary_rows()
        widths = [max(len(r[i]) for r in rows + [header]) + 2 for i in range(len(header))]
        print_fn(f'Model: "{self.name}"')
        print_fn("-" * sum(widths))
        print_fn("".join(h.ljust(w) for h, w in zip(header, widths)))
        print_fn("=" * sum(widths))
        for row in rows:
            print_fn("".join(c.ljust(w) for c, w in zip(row, widths)))
        print_fn("=" * sum(widths))
        trainable = sum(w.size for w in self.trainable_weights)
        print_fn(f"Total params: {self.count_params():,}")
        print_fn(f"Trainable params: {trainable:,}")
        print_fn(f"Non-trainable params: {self.count_params() - trainable:,}")

    def _summary_rows(self):
        functional = self._graph is not None
        header = ("Layer (type)", "Output Shape", "Param #") + (("Connected to",) if functional else ())
        rows = []
        for layer in self.layers:
            nodes = [n for n in getattr(layer, "_inbound_nodes", []) if not functional or n in self._graph.nodes
                     or (n.outputs and n.outputs[0] in self._graph.flat_inputs)]
            shapes = [t.shape for n in nodes for t in n.outputs]
            shape = str(shapes[0] if len(shapes) == 1 else shapes) if shapes else "?"
            params = f"{layer.count_params():,}" if layer.built else "0 (unbuilt)"
            row = (f"{layer.name} ({type(layer).__name__})", shape, params)
            if functional:
                sources = [f"{t.node.layer.name}[{t.node.layer._inbound_nodes.index(t.node)}][{t.index}]"
                           for n in nodes for t in n.inputs]
                row += (", ".join(sources) or "-",)
            rows.append(row)
        return header, rows

    # ---- calling ----------------------------------------------------------------------------------------
    def call(self, inputs, training=None, mask=None):
        """A functional model: its graph on ``inputs`` (structured as the model's inputs)."""
        if self._graph is None:
            raise NotImplementedError(f"model {self.name!r}: a subclassed Model defines call(inputs, training=None)")
        flat = graph_module.flatten(inputs) if not isinstance(inputs, dict) else self._inputs_from_dict(inputs)
        if len(flat) != len(self._graph.flat_inputs):
            raise ValueError(f"inputs: model {self.name!r} takes {len(self._graph.flat_inputs)} inputs, got "
                             f"{len(flat)}")
        return graph_module.pack_like(self._out_structure, self._graph.run(flat))

    def _flat_inputs(self, inputs):
        return self._inputs_from_dict(inputs) if isinstance(inputs, dict) else graph_module.flatten(inputs)

    def _inputs_from_dict(self, inputs):
        names = [t.node.layer.name for t in self._graph.flat_inputs]
        if isinstance(self._graph.inputs, dict):
            names = list(self._graph.inputs)
        missing = [n for n in names if n not in inputs]
        if missing:
            raise ValueError(f"x: no array for input {missing[0]!r}; the model's inputs are {names}")
        return [inputs[n] for n in names]

    def symbolic_outputs(self, input_shapes):
        """(shapes, dtypes, returns a list) of a functional model used as a layer on symbolic tensors."""
        if self._graph is None:
            raise AttributeError("symbolic_outputs")
        flat = self._graph.flat_outputs
        return [t.shape for t in flat], [t.dtype for t in flat], len(flat) > 1 or isinstance(self._out_structure,
                                                                                              (list, tuple, dict))

    def __call__(self, *args, **kwargs):
        """On arrays: the outputs as arrays (a list or dict for several); on tensors (inside another model's
        call, or a layer's): tensors, differentiated through; on symbolic tensors: a node of a functional graph."""
        if not (len(args) == 1 and not kwargs and type(args[0]) is np.ndarray):  # the common case, quickly
            leaves = graph_module.flatten((args, kwargs))
            if any(isinstance(a, Tensor) or getattr(a, "_symbolic", False) for a in leaves):
                return call_layer(self, args, kwargs)
        if not args:
            raise TypeError(f"model {self.name!r}: expected inputs as the first argument")
        x = self._check_x(args[0])
        training = kwargs.pop("training", None)
        graph = self._graph
        if graph is not None and len(args) == 1 and not kwargs and graph.plain_plan() is not None:
            with no_backward(), _float_warnings_off():
                values, _ = graph.run_plain(x, bool(training))
            return values[0] if len(values) == 1 and graph.single_output else \
                graph_module.pack_like(self._out_structure, values)
        with no_backward():
            out = self._run(x, bool(training), *args[1:], **kwargs)
        return graph_module.pack_like(out, [value_of(t) for t in graph_module.flatten(out)])

    def _run(self, x, training, *args, **kwargs):
        """``call`` on eager tensors made of ``x`` (arrays), recording when a backward pass may follow."""
        tensors = graph_module.pack_like(x, [Tensor(a) for a in graph_module.flatten(x)])
        with training_mode(training):
            if training and backward_possible():
                with recording():
                    return call_layer(self, (tensors, *args), kwargs)
            return call_layer(self, (tensors, *args), kwargs)

    # ---- configuration ----------------------------------------------------------------------------------
    def get_config(self):
        """A functional model: its layers, the calls between them and its inputs and outputs (JSON data); a
        subclassed model: its constructor arguments (see ``Layer.get_config``)."""
        if self._graph is None:
            return Layer.get_config(self)
        from .engine.serialization import serialize_layer

        graph, where, counts, nodes = self._graph, {}, {}, []
        for t in graph.flat_inputs:
            where[id(t.node)] = (t.node.layer.name, 0)
        names = [layer.name for layer in graph.layers()]
        if len(set(names)) != len(names):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"model {self.name!r}: layer names must be unique to save it, {twice[0]!r} is used twice")
        for node in graph.nodes:
            k = counts.get(node.layer.name, 0)
            counts[node.layer.name] = k + 1
            where[id(node)] = (node.layer.name, k)

        def template(structure):
            leaves = [{"__tensor__": [*where[id(t.node)], t.index]} if isinstance(t, graph_module.KerasTensor) else t
                      for t in graph_module.flatten(structure)]
            return _lists(graph_module.pack_like(structure, leaves))

        for node in graph.nodes:
            nodes.append([node.layer.name, template(list(node.args)), template(node.kwargs)])
        return {"name": self.name, "trainable": self.trainable,
                "layers": [serialize_layer(layer) for layer in graph.layers()], "nodes": nodes,
                "inputs": template(graph.inputs), "outputs": template(graph.outputs)}

    @classmethod
    def from_config(cls, config):
        if "nodes" not in config:
            return cls(**config)
        from .engine.serialization import deserialize_layer

        layers, tensors, counts = {}, {}, {}
        for data in config["layers"]:
            if data.get("class_name") == "InputLayer":
                c = data["config"]
                layer = graph_module.Input(batch_shape=c["batch_shape"], dtype=c["dtype"], name=c["name"]).node.layer
                tensors[(layer.name, 0)] = [layer.output]
            else:
                layer = deserialize_layer(data)
            if layer.name in layers:
                raise ValueError(f"layers: the name {layer.name!r} is given to two layers")
            layers[layer.name] = layer

        def resolve(structure):
            if isinstance(structure, dict) and set(structure) == {"__tensor__"}:
                where = structure["__tensor__"]  # [layer name, its call, the output of that call]
                if not (isinstance(where, list) and len(where) == 3 and isinstance(where[0], str)
                        and all(type(n) is int and n >= 0 for n in where[1:])):
                    raise ValueError(f"nodes: expected a tensor as [layer name, call, output], got {where!r:.100}")
                name, k, i = where
                if (name, k) not in tensors or i >= len(tensors[(name, k)]):
                    raise ValueError(f"nodes: no tensor {where!r:.100} (made by a call that comes before this one)")
                return tensors[(name, k)][i]
            if isinstance(structure, list):
                return [resolve(s) for s in structure]
            if isinstance(structure, dict):
                return {key: resolve(v) for key, v in structure.items()}
            return structure

        for name, args, kwargs in config["nodes"]:
            if not isinstance(name, str) or isinstance(layers.get(name), graph_module._get_input_layer()) \
                    or name not in layers:
                raise ValueError(f"nodes: no layer named {name!r:.100} to call")
            if not isinstance(args, list) or not isinstance(kwargs, dict):
                raise ValueError(f"nodes: the call of {name!r} needs a list of arguments and a dict of keywords")
            out = layers[name](*resolve(args), **resolve(kwargs))
            k = counts.get(name, 0)
            counts[name] = k + 1
            tensors[(name, k)] = list(out) if isinstance(out, (list, tuple)) else [out]
        return cls(resolve(config["inputs"]), resolve(config["outputs"]), name=config.get("name"),
                   trainable=config.get("trainable", True))

    # ---- the training loop's hooks ----------------------------------------------------------------------
    def _forward(self, x, training):
        """x (checked) -> (flat list of output arrays, flat list of their masks)."""
        graph = self._graph
        if graph is not None and not (training and backward_possible()) and graph.plain_plan() is not None:
            with _float_warnings_off():  # every layer built in: arrays from layer to layer, no tensors
                return graph.run_plain(x if type(x) is list else self._flat_inputs(x), training)
        with _float_warnings_off():
            out = self._run(x, training)
        flat = [t if isinstance(t, Tensor) else Tensor(np.asarray(t)) for t in graph_module.flatten(out)]
        if self._graph is None:
            self._out_structure = graph_module.pack_like(out, [None] * len(flat))
        self._last_outputs = flat if training and backward_possible() else None
        return [t.value for t in flat], [t._keras_mask for t in flat]

    def _backward(self, grads):
        with _float_warnings_off():
            self._grads, _ = gradients(self._last_outputs, grads)
        self._last_outputs = None

    def _gradient_pairs(self):
        grads, self._grads = self._grads or {}, None
        return [(grads[id(w)][1] if id(w) in grads else np.zeros_like(w), w) for w in self.trainable_weights]

    def _predict_batch(self, x):
        values, _ = self._forward(x, training=False)
        if self._graph is not None and self._graph.single_output:
            return values[0]
        return graph_module.pack_like(self._out_structure, values)

    def _empty_output(self, x):
        if self._graph is None:
            raise ValueError("x: predict needs at least one sample to learn a subclassed model's output shape")
        return graph_module.pack_like(self._out_structure, [
            np.zeros((0, *(1 if d is None else d for d in t.shape[1:])), t.dtype) for t in self._graph.flat_outputs])

    def _output_names(self):
        if isinstance(self._out_structure, dict):
            return list(self._out_structure)
        if self._graph is not None:
            names = [t.node.layer.name for t in self._graph.flat_outputs]
            return names if len(set(names)) == len(names) else [f"output_{i}" for i in range(len(names))]
        n = len(graph_module.flatten(self._out_structure)) if self._out_structure is not None else 1
        return ["output"] if n == 1 else [f"output_{i + 1}" for i in range(n)]

    def _check_x(self, x, name="x"):
        if x is None:
            raise ValueError(f"{name}: expected an array, got None")
        if self._graph is None:
            leaves = graph_module.flatten(x)
            checked = [_input_array(a, self.dtype, name, keep_integers=True) for a in leaves]
            _same_count(checked, name)
            if self._input_shapes is None:  # what save records, to build the model again on load
                self._input_shapes = graph_module.pack_like(x, [(None, *a.shape[1:]) for a in checked])
            return graph_module.pack_like(x, checked)
        flat_in = self._graph.flat_inputs
        if isinstance(x, dict):
            leaves = self._inputs_from_dict(x)
        else:
            leaves = [x] if isinstance(x, np.ndarray) or not isinstance(x, (list, tuple)) else list(x)
        if len(leaves) != len(flat_in):
            raise ValueError(f"{name}: the model takes {len(flat_in)} inputs "
                             f"({[t.node.layer.name for t in flat_in]}), got {len(leaves)} arrays")
        checked = []
        for t, a in zip(flat_in, leaves):
            label = f"{name}[{t.node.layer.name!r}]" if len(flat_in) > 1 else name
            a = _input_array(a, t.dtype, label)
            if a.ndim != len(t.shape) or any(e is not None and e != d for e, d in zip(t.shape[1:], a.shape[1:])):
                raise ValueError(f"{label}: input {t.node.layer.name!r} takes arrays of shape {t.shape} (None: any "
                                 f"size), got {a.shape}")
            checked.append(a)
        if len(checked) > 1:
            _same_count(checked, name)
        return checked

    def _check_y(self, y, x, name="y"):
        if y is None:
            raise ValueError(f"{name}: expected target values, got None")
        self._resolve_compile()
        names = [o[0] for o in self._outputs_compiled]
        if isinstance(y, dict):
            missing = [n for n in names if n not in y]
            if missing:
                raise ValueError(f"{name}: no targets for output {missing[0]!r}; the outputs are {names}")
            leaves = [y[n] for n in names]
        elif isinstance(y, (list, tuple)):
            leaves = list(y)
        else:
            leaves = [y]
        if len(leaves) != len(names):
            raise ValueError(f"{name}: the model has {len(names)} outputs ({names}), got {len(leaves)} target arrays")
        n = _count(x)
        checked = []
        for out_name, loss, _, _ in self._outputs_compiled:
            target = np.asarray(leaves[len(checked)])
            label = f"{name}[{out_name!r}]" if len(names) > 1 else name
            if target.dtype.kind not in "biuf":
                raise TypeError(f"{label}: expected a real-valued numeric array, got dtype {target.dtype}")
            if not np.isfinite(target).all():
                raise ValueError(f"{label}: contains NaN or inf")
            if target.shape[:1] != (n,):
                raise ValueError(f"{label}: expected {n} samples to match x, got shape {target.shape}")
            checked.append(target if loss is not None and loss.sparse else target.astype(self.dtype, copy=False))
        return checked

    def _resolve_compile(self):
        """Pairs the compile settings with the model's outputs (a subclassed model's are known after its first
        call)."""
        if self._outputs_compiled is not None:
            return
        loss, loss_weights, metrics = self._compile_spec
        names = self._output_names()
        losses_ = _per_output("loss", loss, names)
        weights = _per_output("loss_weights", loss_weights, names) if loss_weights is not None else [1.0] * len(names)
        if metrics is None or (isinstance(metrics, (list, tuple)) and not any(isinstance(m, (list, tuple, dict))
                                                                            for m in metrics)):
            metric_lists = [list(metrics or [])] * len(names)
        else:
            metric_lists = [list(m or []) for m in _per_output("metrics", metrics, names)]
        outputs = []
        for out_name, l, w, ms in zip(names, losses_, weights, metric_lists):
            l = None if l is None else _named("loss", losses.get, l)
            outputs.append((out_name, l, float(w), [_metric(m, l) for m in ms]))
        self._outputs_compiled = outputs
        if len(outputs) == 1:
            self.loss, self.metrics = outputs[0][1], outputs[0][3]

    def _loss_and_metrics(self, y, y_pred, masks):
        logs, grads, total = {}, [], 0.0
        several = len(self._outputs_compiled) > 1
        with _float_warnings_off():
            for (name, loss, weight, metrics), target, pred, mask in zip(self._outputs_compiled, y, y_pred, masks):
                sample_mask = mask if mask is not None and pred.ndim == 3 else None
                if loss is None:
                    grads.append(None)
                    continue
                value, grad = loss.value_and_grad(target, pred, sample_mask=sample_mask)
                total += weight * value
                grads.append(grad * grad.dtype.type(weight) if weight != 1.0 else grad)
                if several:
                    logs[f"{name}_loss"] = value
                for metric_name, fn in metrics:
                    logs[f"{name}_{metric_name}" if several else metric_name] = float(
                        fn(target, pred, sample_mask=sample_mask))
        return {"loss": total, **logs}, grads

    def _result(self, logs, return_dict):
        if return_dict:
            return dict(logs)
        return logs["loss"] if len(logs) == 1 else list(logs.values())

    def _check_tbptt(self, tbptt_steps, x, y):
        raise ValueError("tbptt_steps: truncated BPTT is available for Sequential models")

    # ---- compile --------------------------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, metrics=None):
        """optimizer: a name ("adam", "sgd", ...), a config or an Optimizer; loss: a name or a Loss, or a list or
        dict of them (one per output); loss_weights: a list or dict of numbers weighing the outputs' losses;
        metrics: a list of names ("accuracy", "mae", "mse") or callables ``fn(y_true, y_pred, sample_mask)`` for
        every output, or a list of lists or dict of lists (per output)."""
        if loss is None:
            raise ValueError("loss: compile() needs a loss, e.g. loss='mse'")
        self.optimizer = _named("optimizer", optimizers.get, optimizer)
        self._compile_spec = (loss, loss_weights, metrics)
        self._outputs_compiled = None
        if self._graph is not None:
            self._resolve_compile()
        else:  # paired with the outputs at the first call; every name is checked now
            for leaf in _compile_leaves(loss):
                _named("loss", losses.get, leaf)
            for leaf in _compile_leaves(metrics):
                _metric(leaf, None)
        self.compiled = True

    def _check_compiled(self, what):
        if not self.compiled:
            raise RuntimeError(f"{what}: compile the model first, e.g. model.compile(optimizer='adam', loss='mse')")

    def _train_step(self, x, y, guard=False):
        """One optimizer step: (logs, None). With ``guard``, a step whose loss or gradients are NaN or inf, or whose
        update would make a weight or the optimizer's state NaN or inf, changes nothing (weights and optimizer
        state as before it) and returns (logs, "loss", "gradient" or "update")."""
        y_pred, mask = self._forward(x, training=True)
        logs, grad = self._loss_and_metrics(y, y_pred, mask)
        if guard and not math.isfinite(logs["loss"]):
            return logs, "loss"
        self._backward(grad)
        pairs = self._gradient_pairs()
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
        return self._result(logs, False)

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
            split = int(_count(x) * (1.0 - fraction))
            if split in (0, _count(x)):
                raise ValueError(f"validation_split: {validation_split} of {_count(x)} samples leaves an empty set")
            head, tail = slice(None, split), slice(split, None)
            x, y, val = _take(x, head), _take(y, head), (_take(x, tail), _take(y, tail))
        else:
            val = None
        if tbptt_steps is not None:
            tbptt_steps = self._check_tbptt(tbptt_steps, x, y)

        cbs = callbacks_module.CallbackList(
            callbacks or [], model=self, add_history=True, add_progbar=bool(verbose), add_terminate_on_nan=True,
            params={"epochs": epochs, "steps": math.ceil(_count(x) / batch_size), "verbose": verbose})
        self.stop_training = False
        N = _count(x)
        cbs.on_train_begin()
        for epoch in range(initial_epoch, epochs):
            cbs.on_epoch_begin(epoch)
            order = generator().permutation(N) if shuffle else np.arange(N)
            totals, seen = {}, 0
            for step, start in enumerate(range(0, N, batch_size)):
                index = order[start:start + batch_size]
                cbs.on_train_batch_begin(step)
                logs, invalid = self._train_batch(_take(x, index), _take(y, index), tbptt_steps, guard=True)
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

    def _evaluate(self, x, y, batch_size, cbs):
        """The loss and metrics over (x, y), calling the on_test_* hooks of ``cbs`` (a CallbackList)."""
        totals, seen = {}, 0
        cbs.on_test_begin()
        for step, start in enumerate(range(0, _count(x), batch_size)):
            xb, yb = _take(x, slice(start, start + batch_size)), _take(y, slice(start, start + batch_size))
            cbs.on_test_batch_begin(step)
            with no_backward():
                y_pred, mask = self._forward(xb, training=False)
            logs, _ = self._loss_and_metrics(yb, y_pred, mask)
            seen += _count(xb)
            for k, v in logs.items():
                totals[k] = totals.get(k, 0.0) + v * _count(xb)
            cbs.on_test_batch_end(step, {k: v / seen for k, v in totals.items()})
        logs = {k: v / _count(x) for k, v in totals.items()}
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
                                            params={"steps": math.ceil(_count(x) / batch_size), "verbose": verbose})
        logs = self._evaluate(x, y, batch_size, cbs)
        if verbose:
            print(" - ".join(f"{k}: {v:.4f}" for k, v in logs.items()), file=sys.stdout)
        return self._result(logs, return_dict)

    def predict(self, x, batch_size=32, verbose=0, callbacks=None):
        """The model's output for x, computed ``batch_size`` samples at a time (bounded memory); an empty batch
        ``[0, ...]`` gives an empty array of the output's shape (``[0, T, K]`` for a sequence output).
        ``callbacks`` get the on_predict_* hooks (each batch's logs hold its ``outputs``)."""
        x = self._check_x(x)
        batch_size = _positive_int("batch_size", batch_size)
        cbs = callbacks_module.CallbackList(callbacks or [], model=self,
                                            params={"steps": math.ceil(_count(x) / batch_size), "verbose": verbose})
        out = []
        cbs.on_predict_begin()
        for step, start in enumerate(range(0, _count(x), batch_size)):
            cbs.on_predict_batch_begin(step)
            with no_backward():
                out.append(self._predict_batch(_take(x, slice(start, start + batch_size))))
            cbs.on_predict_batch_end(step, {"outputs": out[-1]})
        cbs.on_predict_end()
        if not out:
            return self._empty_output(x)
        if len(out) == 1:  # one batch: its arrays are the result (nothing else holds them)
            return out[0]
        return graph_module.pack_like(out[0], [np.concatenate(parts) for parts in
                                               zip(*(graph_module.flatten(o) for o in out))])

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



class Sequential(Model):
    """Sequential(layers=None, name=None): the output of each layer is the input of the next."""

    def __init__(self, layers=None, name=None):
        super().__init__(name=name or "sequential")
        self._layers = []
        self.build_input_shape = None
        self._input_shape = None  # from an rnnkit.Input given as the first entry
        for layer in layers or []:
            self.add(layer)

    @property
    def layers(self):
        return self._layers

    # ---- structure ------------------------------------------------------------------------------------
    def add(self, layer):
        """Appends ``layer``; builds it at once when the model's input shape is known. ``rnnkit.Input(shape=...)``
        as the first entry gives the input shape, as in Keras."""
        if isinstance(layer, graph_module.KerasTensor) and isinstance(layer.node.layer, graph_module._get_input_layer()):
            if self.layers or self.build_input_shape is not None or self._input_shape is not None:
                raise ValueError("layer: an Input can only be the first entry of a Sequential model")
            self._input_shape = layer.shape
            return
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
        first_shape = layer.batch_input_shape if layer.batch_input_shape is not None else self._input_shape
        if len(self.layers) == 1 and first_shape is not None:
            try:
                self.build(first_shape)
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

    @built.setter
    def built(self, value):
        pass  # built once it knows its input shape

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

    def _summary_rows(self):
        rows, shape = [], self.build_input_shape
        for layer in self.layers:
            shape = tuple(layer.compute_output_shape(shape))
            rows.append((f"{layer.name} ({type(layer).__name__})", str(shape), f"{layer.count_params():,}"))
        return ("Layer (type)", "Output Shape", "Param #"), rows

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

    # ---- the training loop's hooks ----------------------------------------------------------------------
    def _gradient_pairs(self):
        if self._on_tape():
            return Model._gradient_pairs(self)
        return [(g, w) for layer in self.layers if layer.trainable for g, w in zip(layer.grads, layer.weights)]

    def _predict_batch(self, x):
        return self._forward(x, training=False)[0]

    def _empty_output(self, x):
        return np.zeros(self._output_shape(input_shape=x.shape), self.layers[-1].dtype)

    def _result(self, logs, return_dict):
        return _result(logs, self.metrics, return_dict)

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

    # ---- forward, backward, one step ----------------------------------------------------------------
    # The model's own arithmetic runs with NumPy's floating-point warnings off: an overflow or an invalid value
    # (finite inputs too large for the dtype) becomes inf or NaN, which predict returns and fit detects and stops on.
    def _forward(self, x, training):
        """x -> (y_pred, mask of y_pred or None). Layers that differentiate themselves pass arrays from one to the
        next (and ``_backward`` calls their ``backward`` in reverse); a stack holding any other layer (a user's,
        ``RNN(cell)``, a merging or reshaping layer) runs on the tape instead."""
        if self._on_tape():
            values, masks = Model._forward(self, x, training)
            return values[0], masks[0]
        mask = None
        with _float_warnings_off():
            for layer in self.layers:  # arrays through built-in layers: their own call, nothing on a tape
                next_mask = layer.compute_mask(x, mask)
                x = layer._run(x, mask=mask, training=training)
                mask = next_mask
        return x, mask

    def call(self, inputs, training=None, mask=None):
        """The layers in turn on eager tensors (the tape path)."""
        x = inputs
        for layer in self.layers:
            x = layer(x)
        return x

    def _on_tape(self):
        return not all(own_backward(type(layer)) for layer in self.layers)

    def _backward(self, dy):
        if self._on_tape():
            return Model._backward(self, [dy])
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

    # ---- fit / evaluate / predict -------------------------------------------------------------------
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
    if _count(x) == 0:
        shape = x.shape if isinstance(x, np.ndarray) else [a.shape for a in graph_module.flatten(x)]
        raise ValueError(f"{name}: {what} needs at least one sample, got an empty batch of shape {shape}")


def _positive_int(name, value, minimum=1):
    if value is None and name == "batch_size":
        return 32  # Keras' default
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def _lists(structure):
    """Tuples as lists, all the way down (JSON has no tuples)."""
    if isinstance(structure, (list, tuple)):
        return [_lists(s) for s in structure]
    if isinstance(structure, dict):
        return {k: _lists(v) for k, v in structure.items()}
    return structure


def _count(x):
    """The number of samples in x (an array, or a list / dict of arrays with as many each)."""
    if isinstance(x, np.ndarray):
        return x.shape[0]
    leaves = graph_module.flatten(x)
    return leaves[0].shape[0] if leaves else 0


def _take(x, index):
    """The samples ``index`` (an index array or a slice) of every array in x."""
    if isinstance(x, np.ndarray):
        return x[index]
    if isinstance(x, list) and all(isinstance(a, np.ndarray) for a in x):
        return [a[index] for a in x]
    return graph_module.pack_like(x, [a[index] for a in graph_module.flatten(x)])


def _same_count(arrays, name):
    counts = {a.shape[0] for a in arrays}
    if len(counts) > 1:
        raise ValueError(f"{name}: every input needs the same number of samples, got {sorted(counts)}")


def _input_array(a, dtype, name, keep_integers=False):
    """One input array of ``dtype``: integers stay integers for an integer input (ids for an Embedding), or with
    ``keep_integers``; TypeError for other data, ValueError for NaN or inf, or fewer than 1 axis."""
    a = np.asarray(value_of(a))
    if a.ndim < 1:
        raise ValueError(f"{name}: expected a batch [N, ...], got a scalar")
    if a.dtype == dtype and a.dtype.kind == "f":  # the input's own dtype: only the values to check
        if not np.isfinite(a).all():
            raise ValueError(f"{name}: contains NaN or inf (first at index "
                             f"{np.argwhere(~np.isfinite(a))[0].tolist()})")
        return a
    if a.dtype.kind in "iub" and (keep_integers or np.dtype(dtype).kind in "iub"):
        return a
    if dtype is not None and np.dtype(dtype).kind in "iu":
        if a.dtype.kind != "f" or not np.isfinite(a).all() or not np.all(a == np.round(a)):
            raise TypeError(f"{name}: expected integer ids, got dtype {a.dtype}")
        return a.astype(dtype)
    a = as_float_array(a, dtype, name)
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: contains NaN or inf (first at index {np.argwhere(~np.isfinite(a))[0].tolist()})")
    return a


def _zeros_of_shapes(shapes):
    if isinstance(shapes, (list, dict)) and not (isinstance(shapes, list) and all(
            d is None or isinstance(d, (int, np.integer)) for d in shapes)):
        items = shapes.items() if isinstance(shapes, dict) else enumerate(shapes)
        built = {k: _zeros_of_shapes(v) for k, v in items}
        return built if isinstance(shapes, dict) else list(built.values())
    return np.zeros(tuple(1 if d is None else d for d in shapes), np.float32)


def _compile_leaves(spec):
    """The losses or metrics in ``spec`` (one, or a list or dict of them per output; a serialized loss is one)."""
    if isinstance(spec, dict) and set(spec) != {"class_name", "config"}:
        return [leaf for value in spec.values() for leaf in _compile_leaves(value)]
    if isinstance(spec, (list, tuple)):
        return [leaf for value in spec for leaf in _compile_leaves(value)]
    return [] if spec is None else [spec]


def _per_output(argument, spec, names):
    """``spec`` (one value for every output, a list in output order, or a dict by output name) as a list."""
    if isinstance(spec, dict) and set(spec) != {"class_name", "config"}:  # not one serialized loss
        unknown = [k for k in spec if k not in names]
        if unknown:
            raise ValueError(f"{argument}: no output named {unknown[0]!r}; the outputs are {names}")
        return [spec.get(n) for n in names]
    if isinstance(spec, (list, tuple)):
        if len(spec) != len(names):
            raise ValueError(f"{argument}: expected one entry per output ({len(names)}: {names}), got {len(spec)}")
        return list(spec)
    return [spec] * len(names)


def _default_model_name(cls):
    from .layers.base import _default_name

    return _default_name("Functional" if cls is Model else cls.__name__)
