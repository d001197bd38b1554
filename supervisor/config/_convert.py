"""Read raw TOML values into the types the spec fields declare.

The converter walks a field's annotation (``Annotated``, ``Literal``,
optionals, tables, arrays, nested specs, scalars) beside the value, and says
what was expected in the words a config author knows ("a number > 0", "a
table"). It recurses only as deep as the schema does; free-form values
(``args``) are checked for depth without recursion.
"""

from __future__ import annotations

import functools
import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import msgspec

from ._checks import CHECKS
from ._types import Invalid, Match, Parse, Range, show

__all__ = ["MAX_DEPTH", "UNKNOWN_KEY", "at", "convert", "keys_of", "read_keys"]

MAX_DEPTH = 32  # arrays and tables inside a free-form value such as args
UNKNOWN_KEY = "unknown key (check the spelling against docs/CONFIG.md)"

_SCALARS: dict[type, str] = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def at(key: str | int, fn: Any, *args: Any) -> Any:
    """``fn(*args)``, blaming any :class:`Invalid` on ``key`` of the current value."""
    try:
        return fn(*args)
    except Invalid as exc:
        raise exc.within(key) from None


@functools.cache
def keys_of(cls: type[msgspec.Struct]) -> dict[str, msgspec.structs.FieldInfo]:
    """The config keys of a spec class: its fields but the ones the loader fills in."""
    skip: frozenset[str] = getattr(cls, "_not_keys", frozenset())
    return {f.name: f for f in msgspec.structs.fields(cls) if f.name not in skip}


def read_keys(data: Any, cls: type[msgspec.Struct], base_dir: Path) -> dict[str, Any]:
    """The keys given in table ``data``, each converted to its field's type."""
    if not isinstance(data, dict):
        raise Invalid(f"expected a table, got {show(data)}")
    fields = keys_of(cls)
    for key in data:
        if key not in fields:
            raise Invalid(UNKNOWN_KEY, (key,))
    for field in fields.values():
        if field.required and field.name not in data:
            raise Invalid("required key is missing", (field.name,))
    return {key: at(key, convert, value, fields[key].type, base_dir) for key, value in data.items()}


def build(cls: type[msgspec.Struct], given: dict[str, Any]) -> Any:
    """``cls(**given)``, then its cross-field check."""
    spec = cls(**given)
    check = CHECKS.get(cls)
    if check is not None:
        check(spec)
    return spec


def convert(value: Any, tp: Any, base_dir: Path) -> Any:
    """``value`` as type ``tp``; raise :class:`Invalid` if it is not one."""
    origin, args = get_origin(tp), get_args(tp)
    if tp is Any:
        if _depth(value) > MAX_DEPTH:
            raise Invalid(f"arrays and tables may nest at most {MAX_DEPTH} levels deep here")
        return value
    if origin is Annotated:
        return _annotated(value, args[0], args[1:], base_dir)
    if origin in (Union, types.UnionType):  # only `X | None` in the schema
        if value is None:
            return None
        (inner,) = (a for a in args if a is not type(None))
        return convert(value, inner, base_dir)
    if origin is Literal:
        if isinstance(value, str) and value in args:
            return value
        raise Invalid(f"expected one of {', '.join(sorted(map(show, args)))}, got {show(value)}")
    if origin is dict:
        if not isinstance(value, dict):
            raise Invalid(f"expected a table, got {show(value)}")
        key_type, value_type = args
        return {
            at(k, convert, k, key_type, base_dir): at(k, convert, v, value_type, base_dir)
            for k, v in value.items()
        }
    if origin in (list, tuple, frozenset):
        if not isinstance(value, list | tuple):
            raise Invalid(f"expected an array, got {show(value)}")
        return origin(at(i, convert, v, args[0], base_dir) for i, v in enumerate(value))
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return build(tp, read_keys(value, tp, base_dir))
    if tp not in _SCALARS:  # a schema bug, not a config problem
        raise TypeError(f"no config conversion for {tp!r}: use a scalar, Literal, table, array, spec or Parse")
    if _is_scalar(value, tp):
        return float(value) if tp is float else value
    raise Invalid(f"expected {_SCALARS[tp]}, got {show(value)}")


def _is_scalar(value: Any, tp: type) -> bool:
    if isinstance(value, bool):
        return tp is bool
    return isinstance(value, int | float) if tp is float else isinstance(value, tp)


def _annotated(value: Any, inner: Any, meta: tuple[Any, ...], base_dir: Path) -> Any:
    for rule in meta:
        if isinstance(rule, Parse):
            try:
                return rule.fn(value, base_dir)
            except ValueError as exc:
                raise Invalid(f"{exc}, got {show(value)}") from None
    try:
        result = convert(value, inner, base_dir)
        if all(rule.holds(result) for rule in meta if isinstance(rule, Range | Match)):
            return result
    except Invalid:
        pass  # the type is wrong: say what the whole annotation accepts
    expected = next((r.expected for r in meta if isinstance(r, Match)), None)
    if expected is None:
        bounds = " ".join(str(r) for r in meta if isinstance(r, Range))
        expected = f"{_SCALARS[inner]} {bounds}"
    raise Invalid(f"expected {expected}, got {show(value)}")


def _depth(value: Any) -> int:
    """How deep arrays and tables nest in ``value``, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list | tuple) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            break
        stack.extend((child, depth + 1) for child in children)
    return deepest
