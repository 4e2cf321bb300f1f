"""Typed, validated configuration: the one config mechanism every stage uses.

Configs are frozen dataclasses whose fields carry help text (``field(metadata={"help": ...})``,
built with :func:`option`). They are built from plain dicts (YAML files, sweep points, CLI
overrides) by :func:`from_dict`, which checks every key and type and names the file and the
dotted field in its error. Precedence is explicit and always the same:
dataclass defaults -> ``configs/*.yaml`` -> sweep point -> CLI ``key=value``.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import types
import typing
from pathlib import Path
from typing import Any, Mapping, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config value is missing, unknown or of the wrong type.

    The message always names where the value came from (a file, a sweep, the command line)
    and the dotted field, so one line tells the user what to fix.
    """

    def __init__(self, where: str, field: str, message: str):
        self.where, self.field = where, field
        loc = f"{where}: " if where else ""
        fld = f"field '{field}': " if field else ""
        super().__init__(f"{loc}{fld}{message}")


class FileFormatError(ValueError):
    """A data file (item set, manifest, metadata table) that cannot be read. The message names the
    file, where in it (``line 3``, ``item 2``) and the field, so one line says what to fix."""

    def __init__(self, path: str | os.PathLike, where: str, field: str, message: str):
        self.path, self.where, self.field = str(path), where, field
        loc = f"{path}" + (f" ({where})" if where else "")
        fld = f"field '{field}': " if field else ""
        super().__init__(f"{loc}: {fld}{message}")


def option(default: Any = dataclasses.MISSING, help: str = "", **kw: Any) -> Any:
    """A dataclass field with help text; mutable defaults (lists, dicts) are copied per instance."""
    meta = {"help": help}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda d=default: copy.deepcopy(d), metadata=meta, **kw)
    return dataclasses.field(default=default, metadata=meta, **kw)


# ----------------------------------------------------------------------------- building


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str, field: str) -> Any:
    """Check ``value`` against type hint ``tp`` and convert where it is lossless (int -> float,
    list -> tuple, dict -> nested dataclass)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where, field)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(where, field, f"expected {_type_name(tp)}, got {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(where, field, f"must be one of {list(args)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(where, field, f"expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, where=where, prefix=field)
    if origin in (list, tuple, typing.Sequence) or tp in (list, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(where, field, f"expected a list, got {value!r}")
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            items = [_coerce(v, args[0], where, f"{field}[{i}]") for i, v in enumerate(value)]
        elif origin is tuple and args:
            if len(args) != len(value):
                raise ConfigError(where, field, f"expected {len(args)} items, got {len(value)}")
            items = [_coerce(v, a, where, f"{field}[{i}]") for i, (v, a) in enumerate(zip(value, args))]
        else:
            inner = args[0] if args else Any
            items = [_coerce(v, inner, where, f"{field}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if (origin is tuple or tp is tuple) else list(items)
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(where, field, f"expected a mapping, got {value!r}")
        kt, vt = args if args else (Any, Any)
        return {_coerce(k, kt, where, field): _coerce(v, vt, where, f"{field}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            # YAML reads "3e-4" (no dot) as a string; accept numeric strings for floats only.
            if isinstance(value, str):
                try:
                    return float(value)
                except ValueError:
                    pass
            raise ConfigError(where, field, f"expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(where, field, f"expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(where, field, f"expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(where, field, f"expected a string, got {value!r}")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(where, field, f"expected {_type_name(tp)}, got {value!r}")
    return value


def from_dict(cls: type[T], data: Mapping[str, Any] | None, where: str = "", prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, validating every key and value.

    Unknown keys, missing required fields and wrong types raise :class:`ConfigError` naming
    ``where`` (a file path or "command line") and the dotted field. The dataclass's own
    ``__post_init__`` checks run too; a ``ValueError`` from them is re-raised with the location.
    """
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        name = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ConfigError(where, name, f"unknown field (known: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, f in fields.items():
        dotted = f"{prefix}.{name}" if prefix else name
        if name in data:
            kwargs[name] = _coerce(data[name], hints[name], where, dotted)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(where, dotted, "is required")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as e:
        raise ConfigError(where, prefix, str(e)) from None


def with_defaults(cls: type, data: Mapping[str, Any] | None) -> dict[str, Any]:
    """``data`` (e.g. a trial's config, which holds only what the sweep set) with ``cls``'s
    defaults filled in; ``data`` unchanged when it does not validate (summaries never fail on it)."""
    try:
        return to_dict(from_dict(cls, data))
    except ConfigError:
        return dict(data or {})


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain, YAML-safe dict of a config (tuples become lists)."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, Path):
            return str(v)
        return v

    return plain(cfg)


def config_hash(cfg: Any, length: int = 12) -> str:
    """Stable content hash of a config (or any JSON-able value)."""
    blob = json.dumps(to_dict(cfg) if dataclasses.is_dataclass(cfg) else cfg, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def describe(cls: type, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted name, default, help) for every field, nested configs expanded: for ``--help``."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        name = f"{prefix}{f.name}"
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            rows.extend(describe(tp, prefix=name + "."))
            continue
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = repr(f.default_factory())
        else:
            default = "(required)"
        rows.append((name, default, f.metadata.get("help", "")))
    return rows


# ----------------------------------------------------------------------------- dicts


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing, unreadable or non-mapping file raises ConfigError naming it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(str(path), "", "file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(str(path), "", f"not valid YAML{at}: {getattr(e, 'problem', e)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), "", f"expected a mapping at the top level, got {type(data).__name__}")
    return data


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive merge: mappings merge key by key, anything else in ``update`` replaces."""
    out = copy.deepcopy(dict(base))
    for k, v in update.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """``set_dotted(d, "probe.lr", 1e-3)`` sets ``d["probe"]["lr"]``, creating mappings on the way."""
    keys = dotted.split(".")
    node = data
    for k in keys[:-1]:
        nxt = node.get(k)
        if not isinstance(nxt, dict):
            nxt = node[k] = {}
        node = nxt
    node[keys[-1]] = value


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"probe.lr": 1}`` -> ``{"probe": {"lr": 1}}``."""
    out: dict[str, Any] = {}
    for k, v in flat.items():
        set_dotted(out, k, v)
    return out


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"probe": {"lr": 1}}`` -> ``{"probe.lr": 1}`` (lists stay values)."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def parse_overrides(items: list[str], where: str = "command line") -> dict[str, Any]:
    """Parse ``key=value`` strings (values read as YAML: ``3e-4``, ``[1,2]``, ``true``) to a nested dict."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(where, item, "an override must look like section.field=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        if isinstance(value, str):
            # YAML 1.1 reads 3e-4 as a string; numbers are what users mean.
            try:
                value = float(value) if any(c in value for c in ".eE") else int(value)
            except ValueError:
                pass
        set_dotted(out, key, value)
    return out
