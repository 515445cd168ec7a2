"""Layers and models as JSON data, and the user classes a file may name.

``serialize_layer(layer)`` gives ``{"class_name", "config"}`` for rnnkit's own classes, and adds
``"registered_name"`` (``"<package>>(name)"``) for a user's class, which must be registered with
``register_serializable`` — a model holding an unregistered class cannot be saved, since the file could not be
read back. ``deserialize_layer(data)`` rebuilds only rnnkit's classes, the registered ones and those passed in
``custom_objects`` (``load_model(..., custom_objects=)`` or ``custom_object_scope``): nothing is imported or
executed from the data itself.
"""

from __future__ import annotations

import contextlib
import contextvars
import json

__all__ = ["register_serializable", "get_registered_name", "get_registered_object", "custom_object_scope",
           "serialize_layer", "deserialize_layer", "json_config"]

_REGISTERED = {}  # "<package>><name>" -> class
_CUSTOM = contextvars.ContextVar("rnnkit_custom_objects", default=None)


def register_serializable(package="Custom", name=None):
    """Class decorator (Keras' ``register_keras_serializable``): saved models may hold instances of the class,
    and ``load_model`` rebuilds them with ``cls.from_config(config)``."""
    if not isinstance(package, str) or ">" in package:
        raise ValueError(f"package: expected a str without '>', got {package!r}")

    def decorate(cls):
        key = f"{package}>{name or cls.__name__}"
        _REGISTERED[key] = cls
        cls._registered_name = key
        return cls

    return decorate


def get_registered_name(cls):
    key = cls.__dict__.get("_registered_name")
    return key if key is not None and _REGISTERED.get(key) is cls else None


def get_registered_object(name, custom_objects=None):
    """The class registered (or given in ``custom_objects`` / the current scope) as ``name``, or None."""
    for objects in (custom_objects, _CUSTOM.get()):
        if objects and name in objects:
            return objects[name]
    return _REGISTERED.get(name)


@contextlib.contextmanager
def custom_object_scope(objects):
    """Classes by name (``{"MyLayer": MyLayer}``) that ``deserialize_layer`` may build inside the block."""
    token = _CUSTOM.set({**(_CUSTOM.get() or {}), **dict(objects or {})})
    try:
        yield
    finally:
        _CUSTOM.reset(token)


def _builtin(cls):
    from ..layers import registry
    from ..models import Model, Sequential
    from .functional import _get_input_layer

    if cls is _get_input_layer():
        return "InputLayer"
    if cls is Model:
        return "Functional"
    if cls is Sequential:
        return "Sequential"
    return cls.__name__ if registry._CLASSES.get(cls.__name__) is cls else None


def serialize_layer(layer):
    """``{"class_name", "config"[, "registered_name"]}``; ValueError for a user's class that is not registered or
    whose configuration is not JSON data."""
    cls = type(layer)
    name = _builtin(cls)
    if name is not None:
        return {"class_name": name, "config": layer.get_config()}
    key = get_registered_name(cls) or _scoped_name(cls)
    if key is None:
        raise ValueError(
            f"layer {layer.name!r} is an instance of {cls.__module__}.{cls.__qualname__}, which is not registered, so "
            f"a saved file could not be read back. Decorate the class with @rnnkit.saving.register_serializable() "
            f"(give it a get_config() returning its constructor arguments if it takes any), then save again")
    config = json_config(layer, layer.get_config())
    return {"class_name": cls.__name__, "registered_name": key, "config": config}


def _scoped_name(cls):
    """The name a class given in ``custom_objects`` (the current scope) is serialized under, or None."""
    for name, obj in (_CUSTOM.get() or {}).items():
        if obj is cls:
            return cls.__dict__.get("_registered_name") or name
    return None


def json_config(layer, config):
    """``config`` checked to be JSON data (ValueError naming the layer otherwise)."""
    try:
        json.dumps(config)
    except (TypeError, ValueError) as e:
        raise ValueError(f"layer {layer.name!r} ({type(layer).__qualname__}): its get_config() is not JSON data "
                         f"({e}); return only numbers, strings, lists and dicts from get_config()") from None
    return config


def deserialize_layer(data):
    """A new layer or model from ``serialize_layer``'s data."""
    from ..layers import registry
    from ..models import Model, Sequential

    if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
        raise ValueError(f"layer config: expected {{'class_name': ..., 'config': {{...}}}}, got {data!r:.200}")
    key = data.get("registered_name")
    if key is not None:
        cls = get_registered_object(key) or get_registered_object(data.get("class_name"))
        if cls is None:
            raise ValueError(f"layer config: class {key!r} is not known here; register it with "
                             f"@rnnkit.saving.register_serializable() or pass custom_objects={{{data.get('class_name')!r}"
                             ": the class}} to load_model")
        return cls.from_config(data["config"])
    if data.get("class_name") == "Functional":
        return Model.from_config(data["config"])
    if data.get("class_name") == "Sequential":
        return Sequential.from_config(data["config"])
    return registry.deserialize(data)
