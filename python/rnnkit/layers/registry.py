"""The layer classes a layer config may name, and a layer's config as plain JSON data.

``serialize(layer)`` / ``deserialize(data)`` turn a layer into plain JSON data ``{"class_name", "config"}``
and back; only the classes in ``_CLASSES`` (rnnkit's own, which ``rnnkit.layers`` enters there) can be rebuilt:
nothing is imported or executed from the data.
"""

__all__ = ["serialize", "deserialize"]

_CLASSES = {}  # class name -> layer class


def serialize(layer):
    """layer -> ``{"class_name": ..., "config": ...}`` (JSON-able)."""
    return {"class_name": type(layer).__name__, "config": layer.get_config()}


def deserialize(data):
    """``{"class_name": ..., "config": ...}`` -> a new, unbuilt layer of one of rnnkit's layer classes."""
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
        raise ValueError(f"layer config: expected {{'class_name': ..., 'config': {{...}}}}, got {data!r:.200}")
    cls = _CLASSES.get(data.get("class_name"))
    if cls is None:
        raise ValueError(f"layer config: unknown layer class {data.get('class_name')!r}; "
                         f"expected one of {sorted(_CLASSES)}")
    return cls.from_config(data["config"])
