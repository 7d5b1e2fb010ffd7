"""Journal read speed: the Arrow fast path, the line-by-line fallback, and a segment with a huge line.

    PYTHONPATH=. python bench/bench_journal.py [--rows 10000]

Prints rows/s and MB/s for each case; run once, briefly, and note the machine load (`uptime`).
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from harness.rundir import journal
from harness.rundir.journal import encode_row, read_segment_rows


def _rows(n: int, tokens: int, top: int) -> list[dict[str, Any]]:
    alts = [{"token": f"alt{j}", "logprob": -1.0 - j / 7} for j in range(top)]
    lp = [{"token": f"t{i}", "logprob": -0.5, "top_logprobs": alts} for i in range(tokens)]
    return [{"run_id": "r", "request_id": f"id{i}", "cell_id": "c", "prompt_id": "p", "sample": 0, "status": "ok",
             "attempts": 1, "content": "Paris is the capital", "started_at": "2030-01-02T03:04:05+00:00",
             "temperature": 0.5, "logprobs": lp, "completion_tokens": tokens} for i in range(n)]


def _time(label: str, data: bytes, rows: int) -> None:
    start = time.perf_counter()
    read = read_segment_rows(data)
    took = time.perf_counter() - start
    assert read.table.num_rows == rows, (read.table.num_rows, rows)
    print(f"{label:<44} {rows:>6} rows {len(data) / 1e6:7.1f} MB  {took:6.2f} s  "
          f"{rows / took:9,.0f} rows/s  {len(data) / 1e6 / took:6.1f} MB/s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    data = b"".join(encode_row(r) for r in _rows(args.rows, 16, 5))
    _time("16 tokens x top 5, fast path", data, args.rows)
    torn = data + b'{"run_id": "r", "requ'
    _time("same + a torn tail (kill -9)", torn, args.rows)
    lines = data.split(b"\n")
    lines[len(lines) // 2] = lines[len(lines) // 2][:50]
    _time("same, one torn line in the middle", b"\n".join(lines), args.rows - 1)
    big = b"".join(encode_row(r) for r in _rows(20, 1000, 20))
    _time("20 rows of 1,000 tokens x top 20 (>1 MiB each)", big, 20)
    fast = journal._fast
    journal._fast = lambda _data: None  # type: ignore[assignment]
    try:
        _time("20 big rows, fallback only", big, 20)
    finally:
        journal._fast = fast  # type: ignore[assignment]


if __name__ == "__main__":
    main()
