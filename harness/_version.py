"""The version of harness: the one place it is written (pyproject.toml reads it from here, so
`harness --version` needs no `importlib.metadata`, ~20-40 ms of start-up)."""

__version__ = "0.1.0"
