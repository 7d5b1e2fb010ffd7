"""The result row: one per request, ok or error. Column names are the contract (DESIGN.md).

The Arrow schema is explicit and versioned; it is never inferred, so an all-null batch keeps
its types and a `0` stays a float where a float is meant.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from harness.rundir.layout import SCHEMA_VERSION
from harness.spec.parameters import FLOAT_COLUMNS, INT_COLUMNS, PARAM_COLUMNS

TOP_LOGPROB = pa.struct([("token", pa.string()), ("logprob", pa.float64())])
TOKEN_LOGPROB = pa.struct(
    [
        ("token", pa.string()),
        ("logprob", pa.float64()),
        ("top_logprobs", pa.list_(TOP_LOGPROB)),
    ]
)

# Parameter columns come from the registry (harness.spec.parameters): float64 or int64, null when not sent.
# The stored column order (floats, then ints) is fixed by schema version 1; PARAM_COLUMNS is the
# canonical order to *show* them in (plan, summarize, report).
FLOAT_PARAMS: tuple[str, ...] = FLOAT_COLUMNS
INT_PARAMS: tuple[str, ...] = INT_COLUMNS
SWEEPABLE: tuple[str, ...] = PARAM_COLUMNS

_FIELDS: list[pa.Field] = [
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("request_id", pa.string(), nullable=False),
    pa.field("cell_id", pa.string(), nullable=False),
    pa.field("prompt_id", pa.string(), nullable=False),
    pa.field("sample", pa.int64(), nullable=False),
    pa.field("model", pa.string()),
    *[pa.field(name, pa.float64()) for name in FLOAT_PARAMS],
    *[pa.field(name, pa.int64()) for name in INT_PARAMS],
    pa.field("status", pa.string(), nullable=False),
    pa.field("http_status", pa.int64()),
    pa.field("error_type", pa.string()),
    pa.field("error_message", pa.string()),
    pa.field("attempts", pa.int64(), nullable=False),
    pa.field("started_at", pa.timestamp("us", tz="UTC")),
    pa.field("latency_s", pa.float64()),
    pa.field("ttft_s", pa.float64()),
    pa.field("content", pa.string()),
    pa.field("finish_reason", pa.string()),
    pa.field("reasoning", pa.string()),
    pa.field("prompt_tokens", pa.int64()),
    pa.field("completion_tokens", pa.int64()),
    pa.field("logprobs", pa.list_(TOKEN_LOGPROB)),
    pa.field("reference", pa.string()),
    # Beyond the contract: useful for analysis, never change the meaning of the above.
    pa.field("point_json", pa.string()),  # canonical JSON of the sweep point (swept params only)
    pa.field("inter_token_s", pa.list_(pa.float64())),  # streamed: gaps between tokens
    pa.field("response_bytes", pa.int64()),
    pa.field("system_fingerprint", pa.string()),
    pa.field("sent_json", pa.string()),  # the dialect spelled a value differently: what was sent (JSON)
    pa.field("target", pa.string()),  # the target's name (`default` for a spec with one unnamed target)
    pa.field("replica", pa.string()),  # the redacted base URL that answered (the last tried, for an error)
]

SCHEMA = pa.schema(_FIELDS, metadata={b"harness_schema_version": str(SCHEMA_VERSION).encode()})
COLUMNS: tuple[str, ...] = tuple(SCHEMA.names)


def rows_to_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Build a table with the explicit schema; unknown keys are dropped, missing ones null."""
    columns = {name: [row.get(name) for row in rows] for name in COLUMNS}
    return pa.Table.from_pydict(columns, schema=SCHEMA)


__all__ = [
    "COLUMNS",
    "FLOAT_PARAMS",
    "INT_PARAMS",
    "PARAM_COLUMNS",
    "SCHEMA",
    "SCHEMA_VERSION",
    "SWEEPABLE",
    "TOKEN_LOGPROB",
    "TOP_LOGPROB",
    "rows_to_table",
]
