"""Named scales of every chapter: ``smoke`` (tests), ``cpu`` (the default book), ``paper`` (GPU).

Each setting keeps a table ``{preset: {name: default}}``; :func:`resolve` merges a chapter's
overrides into it, refusing unknown names and ill-typed values before any computation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PRESETS: tuple[str, ...] = ("smoke", "cpu", "paper")


def check_preset(preset: str) -> str:
    """Return ``preset`` if it names a scale, else raise ``ValueError`` listing the valid ones."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; valid presets: {', '.join(PRESETS)}")
    return preset


def type_name(value: Any) -> str:
    return type(value).__name__


def coerce(name: str, value: Any, default: Any) -> Any:
    """``value`` converted to the type of ``default``, or ``ValueError`` saying what was expected.

    ints are accepted where a float is expected; bools are never taken for numbers; ``None``
    defaults accept anything.
    """
    if default is None or value is None and default is None:
        return value
    expected = type(default)
    if isinstance(default, bool) or isinstance(value, bool):
        ok = isinstance(value, bool) and isinstance(default, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float))
        value = float(value) if ok else value
    elif isinstance(default, (list, tuple)):
        ok = isinstance(value, (list, tuple))
        value = expected(value) if ok else value
    else:
        ok = isinstance(value, expected)
    if not ok:
        raise ValueError(
            f"parameter {name!r} must be of type {expected.__name__} (like {default!r}), "
            f"got {value!r} of type {type_name(value)}"
        )
    return value


def resolve(
    table: Mapping[str, Mapping[str, Any]],
    preset: str,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The configuration of ``preset`` from ``table`` with ``overrides`` applied and checked."""
    check_preset(preset)
    if preset not in table:
        raise ValueError(f"preset {preset!r} is not defined here; defined: {', '.join(table)}")
    config = dict(table[preset])
    for name, value in (overrides or {}).items():
        if name not in config:
            valid = ", ".join(f"{k}: {type_name(v)}" for k, v in config.items())
            raise ValueError(f"unknown parameter {name!r}; valid parameters: {valid}")
        config[name] = coerce(name, value, config[name])
    return config


def check_config(
    config: Mapping[str, Any], setting: str, reference: Mapping[str, Any], at_least_one: tuple[str, ...] = ()
) -> None:
    """Raise ``ValueError`` unless ``config`` is a full config of ``setting``: the same keys as
    ``reference`` and every name in ``at_least_one`` >= 1."""
    if config.get("setting") != setting:
        raise ValueError(f"setting must be {setting!r}, got {config.get('setting')!r}")
    missing = sorted(set(reference) - set(config))
    extra = sorted(set(config) - set(reference))
    if missing or extra:
        raise ValueError(
            f"{setting} config: missing {missing}, unknown {extra}; valid keys: {', '.join(reference)}"
        )
    for name in at_least_one:
        if config[name] < 1:
            raise ValueError(f"{name} must be >= 1, got {config[name]}")
