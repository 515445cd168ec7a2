"""Saving and loading models, on the safetensors codec of ``rnnkit.safetensors`` (``write_safetensors`` /
``read_safetensors``, re-exported here) and the user classes of ``rnnkit.engine.serialization``
(``register_serializable``, ``custom_object_scope``, re-exported here).

The model file (``save_model`` / ``load_model``): tensors ``<layer name>/<weight name>`` (e.g. ``lstm/W_ih``,
PyTorch layout; ``<bidirectional>/forward/W_ih`` and ``.../backward/...`` for a wrapped layer) and the optimizer's
state ``optimizer/<slot>``; metadata ``format`` = ``rnnkit.model``, ``format_version`` = ``2``,
``rnnkit_version``, ``architecture`` (the model's JSON config, rebuilt only from rnnkit's own layer classes),
``compile`` (optimizer, loss and metric names as JSON) and ``sha256``. Loading checks each weight the
architecture declares against the stored tensor of its name (shape and dtype) as the layers are built
(``rnnkit.layers.base.weights_from``), and the stored arrays become the weights: no initializer runs, and what a
file makes rnnkit allocate is bounded by its own size. Every stored tensor must be a weight of the architecture
or the optimizer's state (checked against the weights it belongs to), and the rebuilt model's configuration must
say what the stored one says (no value of another type, none that another overrides). Files of version 1 (whose
digest, ``data_sha256``, covered only the tensor bytes) are still read, with that digest required.
"""

from __future__ import annotations

import hashlib
import json
import math
import os

import numpy as np

from . import losses, optimizers
from .engine.functional import TRIAL_LIMIT, flatten, pack_like
from .engine.serialization import (custom_object_scope, deserialize_layer, get_registered_name,
                                   get_registered_object, register_serializable, serialize_layer)
from .layers.base import weights_from
from .metrics import Metric
from .models import Model, Sequential
from .safetensors import (DIGEST, _bytes, _FileError, _le, _parse_json, _read, _what, read_safetensors,
                          write_safetensors)
from .version import __version__

register_keras_serializable = register_serializable  # Keras' name

__all__ = ["save_model", "load_model", "save_weights", "load_weights", "register_serializable",
           "register_keras_serializable", "get_registered_name", "get_registered_object", "custom_object_scope",
           "write_safetensors", "read_safetensors"]

FORMAT = "rnnkit.model"
FORMAT_VERSION = "2"
WEIGHTS_FORMAT = "rnnkit.weights"
WEIGHTS_VERSION = "1"
_LOADERS = {FORMAT: "rnnkit.load_model", "rnnkit.generative": "rnnkit.generative.load",
            WEIGHTS_FORMAT: "model.load_weights"}


# ---------------------------------------------------------------------------------------------- rnnkit's files

def read_rnnkit_file(path, kind, version, what):
    """(tensors, metadata) of the rnnkit file at ``path``: its metadata ``format`` must be ``kind`` and its
    ``format_version`` ``version``, and its digest is required. ``what`` names the kind of file in error messages."""
    tensors, metadata, order = _read(path)
    found = metadata.get("format")
    if found != kind:
        hint = f"; read it with {_LOADERS[found]}" if found in _LOADERS else ""
        raise _FileError(path, f"a safetensors file, but not {what} (metadata format is {_what(found)}, "
                               f"expected {kind!r}){hint}")
    found = metadata.get("format_version")
    if kind == FORMAT and found == "1":  # written before the digest covered the metadata
        digest = hashlib.sha256()
        for name in order:
            digest.update(_bytes(_le(tensors[name])))
        if metadata.get("data_sha256") != digest.hexdigest():
            raise _FileError(path, "not a valid model file (the tensor data does not match its recorded "
                                   "data_sha256 digest, or it has none; the file is corrupted)")
        return tensors, metadata
    if found != version:
        raise _FileError(path, f"{what} of format version {_what(found)}; this rnnkit reads version {version}")
    if DIGEST not in metadata:
        raise _FileError(path, f"not a valid model file (the metadata has no {DIGEST!r} digest, which every file "
                               "rnnkit writes has; the file is damaged)")
    return tensors, metadata


def metadata_json(path, metadata, key):
    """The metadata entry ``key`` parsed as JSON (nested at most 32 deep); ValueError naming the file when it is
    missing or not JSON."""
    if key not in metadata:
        raise _FileError(path, f"not a valid model file (the metadata has no {key!r} entry)")
    return _parse_json(metadata[key], lambda reason: _FileError(path, f"not a valid model file ({reason})"),
                       f"the metadata's {key!r} entry")


def config_matches(stored, rebuilt):
    """True when every value of the ``stored`` JSON config is in ``rebuilt`` (a JSON-normalised ``get_config()``),
    of the same type: what a loader rebuilt from a file is what the file says (``rebuilt`` may have more keys,
    the defaults of options newer than the file)."""
    if isinstance(stored, dict):
        return isinstance(rebuilt, dict) and all(k in rebuilt and config_matches(v, rebuilt[k])
                                                 for k, v in stored.items())
    if isinstance(stored, list):
        return isinstance(rebuilt, list) and len(stored) == len(rebuilt) \
            and all(config_matches(a, b) for a, b in zip(stored, rebuilt))
    return type(stored) is type(rebuilt) and stored == rebuilt


# ---------------------------------------------------------------------------------------------- the model file

def _weight_tensors(model):
    """``<layer name>/<weight name>`` -> array, for every weight of ``model``'s layers."""
    return {f"{layer.name}/{name}": w for layer in model.layers for name, w in zip(layer.weight_names, layer.weights)}


def save_model(model, path, include_optimizer=True):
    """Writes ``model`` (a built Sequential, functional or subclassed model) to ``path``; see the module
    docstring for the format. ValueError, before anything is written, when the model holds a user's class that is
    not registered (``register_serializable``) or whose configuration does not rebuild it."""
    model._require_built("save")
    if type(model) is Sequential:
        architecture = {"class_name": "Sequential", "config": model.get_config()}
        tensors = _weight_tensors(model)
    else:
        architecture = serialize_layer(model)
        _check_rebuilds(model)
        if model._graph is None:
            architecture["build_input_shape"] = _json_shapes(model._input_shapes)
        tensors = dict(weight_paths(model))
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "rnnkit_version": __version__,
                "architecture": json.dumps(architecture)}
    if model.compiled:
        metadata["compile"] = json.dumps(_compile_config(model, include_optimizer))
        if include_optimizer:
            for key, value in model.optimizer.get_state().items():
                tensors[f"optimizer/{key}"] = np.asarray(value)
    write_safetensors(path, tensors, metadata)


def weight_paths(model):
    """[(path, array)] for every weight of ``model`` once: ``<layer>/<weight>`` for a functional model's layers, a
    layer inside a model used as a layer prefixed by that model's name (``<model>/<layer>/<weight>``); the layers a
    subclassed model or a layer holds are named by the attribute that holds them (``blocks.0/W``), so the paths
    do not depend on the default names layers get."""
    found, seen = [], set()

    def visit(layer, key, prefix):
        if isinstance(layer, Model):
            inner = "" if prefix is None else f"{prefix}{key}/"
            children = [(child.name, child) for child in layer.layers] if layer._graph is not None \
                else layer.named_sublayers()
            for child_key, child in children:
                visit(child, child_key, inner)
            return
        for name, w in zip(layer.weight_names, layer.weights):
            if id(w) not in seen:
                seen.add(id(w))
                found.append((f"{prefix}{key}/{name}", w))
        for child_key, child in layer.named_sublayers():
            visit(child, child_key, f"{prefix}{key}/")

    visit(model, model.name, None)
    return found


def _check_rebuilds(model):
    """ValueError naming the first user's layer whose ``get_config`` does not rebuild it."""
    for layer in model._all_layers():
        if get_registered_name(type(layer)) is None:
            continue
        try:
            type(layer).from_config(json.loads(json.dumps(layer.get_config())))
        except Exception as e:
            raise ValueError(f"layer {layer.name!r} ({type(layer).__qualname__}) cannot be rebuilt from its "
                             f"get_config() ({type(e).__name__}: {e}); define get_config() to return every "
                             "constructor argument") from None


def _json_shapes(shapes):
    if isinstance(shapes, dict):
        return {k: _json_shapes(v) for k, v in shapes.items()}
    if isinstance(shapes, list):
        return [_json_shapes(s) for s in shapes]
    return list(shapes)


def _compile_config(model, include_optimizer):
    optimizer = optimizers.serialize(model.optimizer) if include_optimizer else None
    if type(model) is Sequential:
        return {"loss": losses.serialize(model.loss),
                "metrics": [name for name, fn in model.metrics if not _is_plain_callable(fn)],
                "optimizer": optimizer}

    loss, loss_weights, metrics = model._compile_spec

    def named(structure, serialize):
        leaves = flatten(structure)
        return pack_like(structure, [None if leaf is None else serialize(leaf) for leaf in leaves])

    def metric_name(m):
        return m if isinstance(m, str) else m.name if not _is_plain_callable(m) else None

    def loss_config(spec):  # a serialized loss (as a loaded model holds it) is one loss, not a dict of them
        if isinstance(spec, dict) and set(spec) != {"class_name", "config"}:
            return {k: loss_config(v) for k, v in spec.items()}
        if isinstance(spec, (list, tuple)):
            return [loss_config(s) for s in spec]
        return None if spec is None else losses.serialize(losses.get(spec))

    metrics = named(metrics, metric_name) if metrics is not None else None
    if isinstance(metrics, list):
        metrics = [m for m in metrics if m is not None]
    return {"loss": loss_config(loss), "loss_weights": loss_weights,
            "metrics": metrics if metrics is not None else [], "optimizer": optimizer}


def _is_plain_callable(fn):
    return not isinstance(fn, Metric)


class _Mismatch(ValueError):
    """A weight of the architecture that the stored tensors do not hold."""


def load_model(path, custom_objects=None, compile=True, safe_mode=True):
    """The model read from ``path`` (written by ``model.save``), compiled as it was saved, with the
    optimizer state restored so training resumes exactly; ``compile=False`` skips that. A user's classes in the
    model are found among the registered ones (``register_serializable``) and in ``custom_objects`` (name ->
    class); nothing is imported or executed from the file. ValueError naming the file for anything wrong with it
    (see the module docstring)."""
    if isinstance(custom_objects, bool):  # load_model(path, False): the compile flag of older calls
        custom_objects, compile = None, custom_objects
    tensors, metadata = read_rnnkit_file(path, FORMAT, FORMAT_VERSION, "an rnnkit model")
    architecture = metadata_json(path, metadata, "architecture")
    if isinstance(architecture, dict) and architecture.get("class_name") != "Sequential" \
            and isinstance(architecture.get("config"), dict):
        model = _load_model_graph(path, tensors, architecture, custom_objects)
        return _compile_from_file(path, model, tensors, metadata, compile)
    if not isinstance(architecture, dict) or architecture.get("class_name") != "Sequential" \
            or not isinstance(architecture.get("config"), dict):
        found = architecture.get("class_name") if isinstance(architecture, dict) else architecture
        raise _FileError(path, f"the architecture in the file cannot be rebuilt: expected a Sequential "
                               f"{{'class_name': 'Sequential', 'config': {{...}}}}, got model class {_what(found)}")
    weights = {k: v for k, v in tensors.items() if not k.startswith("optimizer/")}
    used = set()

    folded = set()

    def stored(layer, name, shape, owners):
        key = _weight_key(layer, name, owners)
        array = weights.get(key)
        if array is None and name == "bias":
            array = _folded_bias(weights, key, used)
            folded.add(key)
        if array is None or key in used or array.shape != shape or array.dtype != layer.dtype:
            got = "none" if array is None else "it twice" if key in used else f"{array.dtype}{list(array.shape)}"
            raise _Mismatch(f"weight {key!r} should be {layer.dtype}{list(shape)}, the file has {got}")
        used.add(key)
        return array

    try:
        with weights_from(stored):
            model = Sequential.from_config(architecture["config"])
        rebuilt = json.loads(json.dumps(model.get_config()))
    except _Mismatch as e:
        raise _FileError(path, e) from None
    except Exception as e:  # the architecture is the file's data: whatever it breaks, the file is at fault
        raise _FileError(path, f"the architecture in the file cannot be rebuilt: {type(e).__name__}: {e}") from None
    if not model.built:
        raise _FileError(path, "the architecture in the file has no input shape, so it cannot hold weights")
    if not config_matches(architecture["config"], rebuilt):
        raise _FileError(path, "the architecture in the file is not the one its layers rebuild from it (a value of "
                               "the wrong type, or one that another contradicts)")
    for layer in model.layers:
        for name, w in zip(layer.weight_names, layer.weights):
            if weights.get(f"{layer.name}/{name}") is not w and not any(k.startswith(f"{layer.name}/") for k in folded):
                raise _FileError(path, f"weight {layer.name}/{name} is not stored under that name")
    if set(weights) - used:
        raise _FileError(path, f"tensor {sorted(set(weights) - used)[0]!r} is not a weight of the architecture")
    if folded and compile and any(k.startswith("optimizer/") for k in tensors):
        raise _FileError(path, "the file was written when SimpleRNN, LSTM and GRU(reset_after=False) layers trained two "
                               "biases (b_ih, b_hh); its weights load, as one bias b_ih + b_hh, but its optimizer state "
                               "does not fit the layers any more: load it with compile=False and compile it again")
    return _compile_from_file(path, model, tensors, metadata, compile)


def _folded_bias(weights, key, used):
    """The one ``bias`` of a recurrent layer from a file of the two-bias layers: ``b_ih + b_hh``, both marked used;
    None when the file has not both."""
    prefix = key[:-len("bias")]
    b_ih, b_hh = weights.get(prefix + "b_ih"), weights.get(prefix + "b_hh")
    if b_ih is None or b_hh is None or b_ih.shape != b_hh.shape or b_ih.dtype != b_hh.dtype:
        return None
    used.update((prefix + "b_ih", prefix + "b_hh"))
    return b_ih + b_hh


def _compile_from_file(path, model, tensors, metadata, compile):
    """The model compiled with the file's settings and optimizer state (checked first)."""
    state = {k[len("optimizer/"):]: v for k, v in tensors.items() if k.startswith("optimizer/")}
    if "compile" not in metadata:
        if state:
            raise _FileError(path, "the file holds an optimizer state but no compile settings")
        return model
    config = metadata_json(path, metadata, "compile")
    keys = {"loss", "metrics", "optimizer"}
    if not isinstance(config, dict) or not keys <= set(config) <= keys | {"loss_weights"} \
            or not isinstance(config["metrics"], (list, dict)):
        raise _FileError(path, f"the compile settings must be an object with loss, metrics (a list) and "
                               f"optimizer, got {_what(config)}")
    if (config["optimizer"] is None) != (not state):
        raise _FileError(path, "the compile settings and the optimizer state disagree: "
                               + ("a state without an optimizer" if state else "an optimizer without its state"))
    if compile:
        try:
            extra = {"loss_weights": config["loss_weights"]} if "loss_weights" in config else {}
            model.compile(optimizer="rmsprop" if config["optimizer"] is None else config["optimizer"],
                          loss=config["loss"], metrics=config["metrics"], **extra)
            if state:
                _restore_optimizer(model, state)
        except Exception as e:
            raise _FileError(path, f"the compile settings in the file cannot be restored: {type(e).__name__}: "
                                   f"{e}") from None
    return model


def _load_model_graph(path, tensors, architecture, custom_objects):
    """A functional or subclassed model rebuilt from the file's architecture, its weights the stored tensors.

    The layers are built inside ``weights_from`` with weights that are zero-stride views (nothing drawn or
    allocated), at most as many values as the file stores, then each view is replaced, everywhere it is held, by
    the stored tensor of its path (``weight_paths``). The layers and ops tried on zero arrays while the graph is
    rebuilt are bounded by ``engine.functional.TRIAL_LIMIT`` (what they are given and, before they run, what they
    would make), and a graph's configuration must be the one the rebuilt model gives (no unused layer, no call or
    value more)."""
    weights = {k: v for k, v in tensors.items() if not k.startswith("optimizer/")}
    budget, requested = sum(int(v.size) for v in weights.values()), [0]

    def placeholder(layer, name, shape, owners):
        requested[0] += math.prod(shape)
        if requested[0] > budget:
            raise _Mismatch(f"the architecture declares more weight values than the file's {budget} (at "
                            f"{layer.name}/{name}, shape {list(shape)})")
        return np.broadcast_to(np.zeros((), layer.dtype), shape)

    try:
        with weights_from(placeholder), custom_object_scope(custom_objects):
            model = deserialize_layer({k: v for k, v in architecture.items() if k != "build_input_shape"})
            if getattr(model, "_graph", True) is None:
                shapes = architecture.get("build_input_shape")
                if shapes is None:
                    raise _Mismatch("a subclassed model's file must record the shape of its inputs")
                shapes = _tuple_shapes(shapes)
                values = sum(math.prod(1 if d is None else d for d in s)
                             for s in (shapes.values() if isinstance(shapes, dict) else
                                       shapes if isinstance(shapes, list) else [shapes]))
                if not all(d is None or (type(d) is int and d >= 0) for d in flatten(shapes)) \
                        or values > TRIAL_LIMIT:
                    raise _Mismatch(f"the recorded input shapes {_what(shapes)} are not shapes of at most "
                                    f"{TRIAL_LIMIT} values")
                model.build(shapes)
            # a graph's file says what its layers rebuild from it, and nothing else (no layer, call or value more)
            rebuilt = json.loads(json.dumps(model.get_config())) if getattr(model, "_graph", None) else None
    except _Mismatch as e:
        raise _FileError(path, e) from None
    except Exception as e:  # the architecture is the file's data: whatever it breaks, the file is at fault
        raise _FileError(path, f"the architecture in the file cannot be rebuilt: {type(e).__name__}: {e}") from None
    if not isinstance(model, Model):
        raise _FileError(path, f"the architecture in the file is a {type(model).__name__}, not a model")
    keys = {"class_name", "config"} | ({"registered_name"} if "registered_name" in architecture else set()) \
        | ({"build_input_shape"} if model._graph is None else set())
    if set(architecture) != keys:
        kind = "functional" if model._graph is not None else "subclassed"
        raise _FileError(path, f"the architecture in the file has the entries {sorted(architecture)}, a {kind} "
                               f"model's has {sorted(keys)}")
    if rebuilt is not None and not config_matches(architecture["config"], rebuilt):
        raise _FileError(path, "the architecture in the file is not the one its layers rebuild from it (a value of "
                               "the wrong type, one that another contradicts, or a layer or call outside the graph)")
    replace, used = {}, set()
    for key, view in weight_paths(model):
        array = weights.get(key)
        if array is None or array.shape != view.shape or array.dtype != view.dtype:
            got = "none" if array is None else f"{array.dtype}{list(array.shape)}"
            raise _FileError(path, f"weight {key!r} should be {view.dtype}{list(view.shape)}, the file has {got}")
        replace[id(view)] = array
        used.add(key)
    if set(weights) - used:
        raise _FileError(path, f"tensor {sorted(set(weights) - used)[0]!r} is not a weight of the architecture")
    _replace_arrays(model, replace)
    return model


def _tuple_shapes(shapes):
    if isinstance(shapes, dict):
        return {k: _tuple_shapes(v) for k, v in shapes.items()}
    if isinstance(shapes, list) and shapes and isinstance(shapes[0], (list, dict)):
        return [_tuple_shapes(s) for s in shapes]
    return tuple(shapes)


def _replace_arrays(model, replace):
    """Every reference a layer holds to an array in ``replace`` (by id) now points at its replacement."""
    stack, seen = [model], set()
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        held = layer.__dict__.get("weights")
        if isinstance(held, list):
            for i, w in enumerate(held):
                if id(w) in replace:
                    held[i] = replace[id(w)]
        for variable in layer.__dict__.get("_variables", ()):
            if id(variable.value) in replace:
                variable.value = replace[id(variable.value)]
        stack.extend(layer.layers if isinstance(layer, Model) else ())
        stack.extend(layer.sublayers())


def _weight_key(layer, name, owners):
    """The file's name of ``layer``'s weight ``name``: ``<layer>/<name>`` for a model's own layers; a layer that a
    Bidirectional builds is its forward or backward layer, whose weights it calls ``forward/<name>`` and
    ``backward/<name>``."""
    if not owners:
        return f"{layer.name}/{name}"
    outer = owners[-1]
    roles = [role for role in ("forward", "backward") if getattr(outer, f"{role}_layer", None) is layer]
    if not roles:
        raise _Mismatch(f"layer {layer.name!r}, built by {outer.name!r}, has no weights in the model file")
    return _weight_key(outer, f"{roles[0]}/{name}", owners[:-1])


def _restore_optimizer(model, state):
    """Checks the stored optimizer state against the model's trainable weights, then restores it."""
    iterations = state.get("iterations")
    if iterations is None or iterations.shape != () or iterations.dtype != np.int64 or iterations < 0:
        raise ValueError("optimizer/iterations must be a non-negative int64 scalar, got "
                         + ("none" if iterations is None else f"{iterations.dtype}{list(iterations.shape)}"))
    variables = model.trainable_weights
    slots = {k: v for k, v in state.items() if k != "iterations"}
    count = len({key.partition("/")[0] for key in slots})
    for key, value in slots.items():
        i = key.partition("/")[0]
        w = variables[int(i)] if count == len(variables) and i.isdecimal() and int(i) < count else None
        if value.dtype.kind != "f" or (w is not None and (value.shape != w.shape or value.dtype != w.dtype)):
            raise ValueError(f"optimizer slot {key!r} is {value.dtype}{list(value.shape)}"
                             + (f", but its weight is {w.dtype}{list(w.shape)}" if w is not None else ""))
    model.optimizer.set_state(state)


# ---------------------------------------------------------------------------------------------- the weights file

def save_weights(model, path, overwrite=True):
    """Writes the weights of ``model`` (built) to ``path``: the model file's tensors (``<layer name>/<weight
    name>``) and their names in order, without the architecture or the optimizer, atomically and with the digest,
    as ``save_model``."""
    model._require_built("save_weights")
    path = os.fspath(path)
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"{path}: exists, and overwrite=False")
    if type(model) is Sequential:
        tensors, order = _weight_tensors(model), {"layers": json.dumps([layer.name for layer in model.layers])}
    else:
        pairs = weight_paths(model)
        tensors, order = dict(pairs), {"weights": json.dumps([key for key, _ in pairs])}
    metadata = {"format": WEIGHTS_FORMAT, "format_version": WEIGHTS_VERSION, "rnnkit_version": __version__, **order}
    write_safetensors(path, tensors, metadata)


def load_weights(model, path):
    """Sets the weights of ``model`` (built, with the architecture they were saved from) from the weights file at
    ``path``. Layers (weights, for a model other than Sequential) are matched by position, so a model built again
    with other default layer names loads them; every weight's shape and dtype is checked before any is set
    (ValueError naming the file)."""
    model._require_built("load_weights")
    tensors, metadata = read_rnnkit_file(path, WEIGHTS_FORMAT, WEIGHTS_VERSION, "an rnnkit weights file")
    if type(model) is not Sequential:
        keys = metadata_json(path, metadata, "weights")
        own = weight_paths(model)
        if not isinstance(keys, list) or len(keys) != len(own) or set(keys) != set(tensors):
            raise _FileError(path, f"the file holds {len(tensors)} weights, the model has {len(own)}")
        for key, (name, w) in zip(keys, own):
            t = tensors[key]
            if t.shape != w.shape or t.dtype != w.dtype:
                raise _FileError(path, f"weight {name!r} needs {w.dtype}{list(w.shape)}, the file's {key!r} is "
                                       f"{t.dtype}{list(t.shape)}")
        for key, (_, w) in zip(keys, own):
            w[...] = tensors[key]
        return
    names = metadata_json(path, metadata, "layers")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or len(names) != len(model.layers):
        raise _FileError(path, f"the weights are of {len(names) if isinstance(names, list) else 'no'} layers, the "
                               f"model has {len(model.layers)}")
    arrays, used = [], set()
    for stored_name, layer in zip(names, model.layers):
        layer_arrays = []
        for name, w in zip(layer.weight_names, layer.weights):
            key = f"{stored_name}/{name}"
            t = tensors.get(key)
            if t is None or t.shape != w.shape or t.dtype != w.dtype:
                got = "none" if t is None else f"{t.dtype}{list(t.shape)}"
                raise _FileError(path, f"layer {layer.name!r} needs {key!r} of {w.dtype}{list(w.shape)}, the file has "
                                       f"{got}")
            layer_arrays.append(t)
            used.add(key)
        arrays.append(layer_arrays)
    if set(tensors) - used:
        raise _FileError(path, f"tensor {sorted(set(tensors) - used)[0]!r} is not a weight of the model")
    for layer, layer_arrays in zip(model.layers, arrays):
        layer.set_weights(layer_arrays)
