"""Reading a spec file before validation: YAML with line numbers, `${VAR}` interpolation, unknown keys."""

from __future__ import annotations

import os
import re
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from harness.errors import SpecError

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of silently keeping the last."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        mark = key_node.start_mark
        try:
            hash(key)
        except TypeError:  # a mapping or a list as a key: `{top_k, {from: 1}}`, `[1]: x`
            raise yaml.constructor.ConstructorError(
                None, None, f"a key must be a plain value, not a {type(key).__name__} (line {mark.line + 1})", mark
            ) from None
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (line {mark.line + 1})", mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


MAX_SPEC_BYTES = 1 << 20  # a spec is a page of YAML; 1 MiB is far more than any real one
MAX_NODES = 100_000  # values after alias expansion ("billion laughs" stops here)
MAX_DEPTH = 32  # nesting of mappings and lists (a self-referencing alias stops here too)


def read_text(path: Path, *, what: str = "spec", limit: int = MAX_SPEC_BYTES) -> str:
    """The text of a regular file of at most `limit` bytes; FIFOs, devices and loops are refused."""
    import stat

    try:
        st = path.stat()  # follows symlinks; a loop raises ELOOP here, before any open
    except FileNotFoundError:
        raise SpecError("no such file", file=str(path)) from None
    except (OSError, RuntimeError) as exc:
        raise SpecError(f"cannot read ({_os_reason(exc)})", file=str(path)) from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file (a pipe or device?)"
        raise SpecError(f"{kind}; give a {what} file", file=str(path))
    if st.st_size > limit:
        raise SpecError(f"{st.st_size:,} bytes; a {what} may be at most {limit:,} bytes", file=str(path))
    try:
        with path.open("rb") as fh:
            raw = fh.read(limit + 1)
    except OSError as exc:
        raise SpecError(f"cannot read ({_os_reason(exc)})", file=str(path)) from None
    if len(raw) > limit:
        raise SpecError(f"more than {limit:,} bytes; a {what} may be at most {limit:,} bytes", file=str(path))
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpecError(f"not UTF-8 text (byte {exc.start}); save it as UTF-8", file=str(path)) from None


def _os_reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or exc.__class__.__name__


def read_yaml(path: Path) -> Any:
    """Parse a YAML file; syntax errors name the line and column; size, aliases and depth are bounded."""
    text = read_text(path)
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise SpecError(f"{where}YAML syntax error: {problem}", file=str(path)) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"YAML syntax error: {' '.join(str(exc).split())}", file=str(path)) from None
    except RecursionError:
        raise SpecError(f"nested too deeply; at most {MAX_DEPTH} levels", file=str(path)) from None
    except (ValueError, OverflowError) as exc:  # e.g. a timestamp PyYAML cannot build
        raise SpecError(f"YAML value error: {exc}", file=str(path)) from None
    check_shape(data, str(path))
    return data


def check_shape(data: Any, source: str) -> None:
    """Refuse data nested deeper than MAX_DEPTH, expanding to more than MAX_NODES values, or holding
    a string that is not valid Unicode (a lone surrogate from a `\\ud800` escape cannot be sent)."""
    sizes: dict[int, int] = {}

    def size(node: Any, depth: int, path: tuple[str, ...]) -> int:
        if depth > MAX_DEPTH:
            raise SpecError(f"nested deeper than {MAX_DEPTH} levels (or a self-referencing YAML alias)", file=source)
        if isinstance(node, str):
            _check_unicode(node, source, path)
            return 1
        if not isinstance(node, (dict, list)):
            return 1
        key = id(node)
        if key not in sizes:
            if isinstance(node, dict):
                items = [(_part(k), v) for k, v in node.items()]
                for k in node:
                    if isinstance(k, str):
                        _check_unicode(k, source, path)
            else:
                items = [(f"[{i}]", v) for i, v in enumerate(node)]
            total = 1 + sum(size(child, depth + 1, (*path, part)) for part, child in items)
            if total > MAX_NODES:
                raise SpecError(f"expands to more than {MAX_NODES:,} values (YAML aliases?); "
                                "write the values out or make the spec smaller", file=source)
            sizes[key] = total
        return sizes[key]

    size(data, 0, ())


def _part(key: Any) -> str:
    return str(key) if not isinstance(key, str) or key.isprintable() else repr(key)


def _check_unicode(text: str, source: str, path: tuple[str, ...]) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        where = "".join(p if p.startswith("[") else f".{p}" for p in path).lstrip(".") or None
        raise SpecError(f"contains {text[exc.start]!r} (a lone surrogate), not valid Unicode; fix the \\u escape "
                        "or the environment variable (it must be UTF-8)", file=source, key=where) from None


def interpolate(data: Any, env: Mapping[str, str] | None, source: str, path: str = "") -> Any:
    """Replace `${VAR}` / `${VAR:-default}` in every string; `$$` is a literal `$`."""
    env = os.environ if env is None else env
    if isinstance(data, dict):
        return {k: interpolate(v, env, source, _join(path, str(k))) for k, v in data.items()}
    if isinstance(data, list):
        return [interpolate(v, env, source, f"{path}[{i}]") for i, v in enumerate(data)]
    if not isinstance(data, str) or "$" not in data:
        return data

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise SpecError(
            f"environment variable {name} is not set (set it, or write ${{{name}:-default}})",
            file=source,
            key=path or None,
        )

    return _VAR.sub(sub, data)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _public_fields(model: type[BaseModel]) -> list[str]:
    return [name for name, field in model.model_fields.items() if not field.exclude]


def check_unknown_keys(data: Any, model: type[BaseModel], source: str, path: str = "") -> None:
    """Refuse keys a section does not know, by name, with a suggestion."""
    if not isinstance(data, dict):
        return
    allowed = _public_fields(model)
    for key, value in data.items():
        key_s = str(key)
        if key_s not in allowed:
            raise SpecError(_unknown_message(key_s, allowed, path), file=source, key=_join(path, key_s))
        sub = _model_of(model.model_fields[key_s].annotation)
        if sub is not None and isinstance(value, list):  # a list of sections (targets)
            for i, item in enumerate(value):
                check_unknown_keys(item, sub, source, f"{_join(path, key_s)}[{i}]")
        elif sub is not None:
            check_unknown_keys(value, sub, source, _join(path, key_s))


def _unknown_message(key: str, allowed: list[str], path: str) -> str:
    import difflib  # only for a message

    close = difflib.get_close_matches(key.replace("-", "_"), allowed, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}? " if close else ""
    extra = " (server-specific fields go under params.extra_body)" if path == "params" and not close else ""
    return f"unknown key; {hint}allowed: {', '.join(allowed)}{extra}"


__all__ = ["MAX_DEPTH", "MAX_NODES", "MAX_SPEC_BYTES", "check_shape", "check_unknown_keys", "interpolate",
           "read_text", "read_yaml"]
