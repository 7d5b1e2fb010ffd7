"""Shared fixtures."""

from __future__ import annotations

import os

# Tests never need a display and must not pick up a user's matplotlib config.
os.environ.setdefault("MPLBACKEND", "Agg")
