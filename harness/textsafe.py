"""Text from a run (model output, ids, model names, error messages) made safe for where it goes.

- `visible_controls`: control characters (NUL, ESC, BEL, DEL, C1 controls, …) become visible
  `\\x1b`-style escapes, so they cannot drive a terminal, hide text or corrupt HTML/Markdown.
  Newline and tab are kept (callers that need one line fold whitespace themselves).
- `csv_cell` / `csv_safe_frame`: a string cell that a spreadsheet would run as a formula
  (first character `=`, `+`, `-`, `@`, tab or carriage return) gets a leading apostrophe, the
  OWASP "CSV injection" advice. Numbers stay numbers, so a negative metric is not touched.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def visible_controls(text: str) -> str:
    """Control characters other than newline and tab as `\\xNN` text."""
    return _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def csv_cell(value: Any) -> Any:
    """A string that a spreadsheet would evaluate, prefixed with `'`; anything else unchanged."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def csv_safe_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of `frame` whose text cells (and column names) are safe to open in a spreadsheet."""
    out = frame.copy()
    for col in out.columns:
        if not (pd.api.types.is_numeric_dtype(out[col]) or pd.api.types.is_bool_dtype(out[col])):
            out[col] = out[col].map(csv_cell)
    out.columns = [csv_cell(str(c)) for c in out.columns]
    return out


__all__ = ["csv_cell", "csv_safe_frame", "visible_controls"]
