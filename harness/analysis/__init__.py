"""Stage 4 — numbers from stored rows: scoring, bootstrap intervals, per-cell metrics.

    scoring.py    scorers (exact, regex, contains, numeric, custom opt-in) → score columns
    bootstrap.py  seeded, vectorised cluster bootstrap intervals
    metrics.py    summarize: per-cell quality, diversity, logprob and latency metrics

`report/`, `compare/` and `whatif/` build on these.
"""
