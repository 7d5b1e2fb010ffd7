"""Where a run directory lives: a local folder (`pathlib.Path`) or a prefix on an object store.

    as_run_path("runs/x")                 → Path("runs/x")           (unchanged, fast local path)
    as_run_path("s3://bucket/runs/x")     → ObjectPath (pyarrow.fs.S3FileSystem)
    as_run_path("gs://bucket/runs/x")     → ObjectPath (pyarrow.fs.GcsFileSystem)
    as_run_path("az://container/runs/x")  → ObjectPath (pyarrow.fs.AzureFileSystem)

`ObjectPath` has the few `pathlib` methods the run-directory code calls (`/`, `name`, `parent`,
`exists`, `is_dir`, `iterdir`, `read_bytes`, `write_bytes`, `unlink`…), so layout, manifest,
store and results code reads the same for both. What an object store cannot do — append, rename,
flock — is handled where it matters (`store.ObjectRunStore`, `lock.ObjectLock`, `commit_tmp`).

Credentials come only from each cloud's standard environment and configuration (AWS_* variables,
~/.aws profiles, instance roles; GOOGLE_APPLICATION_CREDENTIALS; Azure's default credential);
a URL carrying credentials is refused. The endpoint of an S3-compatible store (MinIO, moto, R2…)
comes from HARNESS_S3_ENDPOINT, else AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, Union
from urllib.parse import urlsplit

from harness.errors import UsageError

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

SCHEMES = ("s3", "gs", "gcs", "az", "abfs")
_T = TypeVar("_T")


class ObjectStoreError(OSError):
    """The object store refused or failed a request (no such bucket, access denied, unreachable).
    One line: the URL and the store's first line of explanation (never a credential)."""

    def __init__(self, where: str, exc: BaseException) -> None:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0].partition("; Details:")[0]
        first = re.sub(r"(?i)(signature|credential|token|secret)[^,;]*", r"\1 …", first)[:240]
        super().__init__(f"{where}: {first}")
        self.strerror = first
        self.where = where


def _guard(where: str, call: Callable[[], _T]) -> _T:
    """Run one store request; an error other than not-found becomes ObjectStoreError."""
    try:
        return call()
    except (FileNotFoundError, FileExistsError, ObjectStoreError):
        raise
    except OSError as exc:
        raise ObjectStoreError(where, exc) from None
_URL = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


def is_remote(location: object) -> bool:
    """Whether `location` names an object store (an `ObjectPath` or an `s3://`-like URL)."""
    if isinstance(location, ObjectPath):
        return True
    return isinstance(location, str) and bool(_URL.match(location))


def endpoint_override() -> str | None:
    """The S3 endpoint to use instead of AWS's (HARNESS_S3_ENDPOINT, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL)."""
    for name in ("HARNESS_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


@functools.cache
def _filesystem(scheme: str, account: str | None, endpoint: str | None) -> pafs.FileSystem:
    import pyarrow.fs as pafs

    if scheme == "s3":
        # allow_delayed_open: a small object is one PutObject (no multipart upload), and an
        # object appears only when its stream is closed
        return pafs.S3FileSystem(endpoint_override=endpoint, allow_delayed_open=True)
    if scheme in ("gs", "gcs"):
        return pafs.GcsFileSystem()
    return pafs.AzureFileSystem(account_name=account or "")


def filesystem(scheme: str) -> pafs.FileSystem:
    """The pyarrow filesystem for a URL scheme, configured from the environment (cached)."""
    account = os.environ.get("AZURE_STORAGE_ACCOUNT_NAME") if scheme in ("az", "abfs") else None
    if scheme in ("az", "abfs") and not account:
        raise UsageError("az:// needs AZURE_STORAGE_ACCOUNT_NAME in the environment", key="--out")
    try:
        return _filesystem(scheme, account, endpoint_override() if scheme == "s3" else None)
    except (OSError, ValueError, ImportError) as exc:  # pyarrow built without this filesystem
        raise UsageError(f"{scheme}:// is not available here ({str(exc).splitlines()[0][:120]})", key="--out") from None


def _parse(url: str) -> tuple[str, str]:
    """(scheme, "bucket/key") of an object-store URL; UsageError on anything else."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise UsageError(f"{scheme}:// is not a storage harness knows; allowed: a local folder, s3://, gs://, az://",
                         file=redact_location(url))
    if "@" in parts.netloc or parts.password or parts.query or parts.fragment:
        raise UsageError("credentials or options in a storage URL are refused; use the cloud's standard "
                         "environment (AWS_* variables, profiles) and HARNESS_S3_ENDPOINT",
                         file=redact_location(url))
    if not parts.netloc:
        raise UsageError("has no bucket; write s3://BUCKET/PREFIX", file=url)
    key = "/".join(p for p in parts.path.split("/") if p and p != ".")
    if ".." in key.split("/"):
        raise UsageError("'..' is not allowed in a storage URL", file=url)
    return scheme, f"{parts.netloc}/{key}".rstrip("/")


def redact_location(text: str) -> str:
    """A location as it may be printed or stored: user info and query of a URL removed."""
    if not _URL.match(text):
        return text
    parts = urlsplit(text)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}"


@dataclass(frozen=True)
class ObjectStat:
    """What `ObjectPath.stat` knows: the size."""

    st_size: int


class ObjectPath:
    """A path on an object store: `scheme://bucket/key`. Immutable; compares by its URL."""

    __slots__ = ("_kind", "path", "scheme")

    def __init__(self, url: str, *, _kind: int | None = None) -> None:
        self.scheme, self.path = _parse(url)
        self._kind = _kind  # the pyarrow FileType when known from a listing (saves a request)

    @classmethod
    def _make(cls, scheme: str, path: str, kind: int | None = None) -> ObjectPath:
        obj = cls.__new__(cls)
        obj.scheme, obj.path, obj._kind = scheme, path.rstrip("/"), kind
        return obj

    # -- pure path arithmetic ------------------------------------------------------------

    def __str__(self) -> str:
        return f"{self.scheme}://{self.path}"

    def __repr__(self) -> str:
        return f"ObjectPath({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectPath) and str(other) == str(self)

    def __hash__(self) -> int:
        return hash(str(self))

    def __truediv__(self, name: str | Path) -> ObjectPath:
        name = str(name).strip("/")
        if not name or ".." in name.split("/"):
            raise ValueError(f"bad name {name!r}")
        return ObjectPath._make(self.scheme, f"{self.path}/{name}")

    @property
    def name(self) -> str:
        return self.path.rpartition("/")[2]

    @property
    def suffix(self) -> str:
        name = self.name
        dot = name.rfind(".")
        return name[dot:] if 0 < dot < len(name) - 1 else ""

    @property
    def stem(self) -> str:
        suffix = self.suffix
        return self.name[: -len(suffix)] if suffix else self.name

    @property
    def parent(self) -> ObjectPath:
        head = self.path.rpartition("/")[0]
        return ObjectPath._make(self.scheme, head) if head else self

    @property
    def bucket(self) -> str:
        return self.path.partition("/")[0]

    def with_name(self, name: str) -> ObjectPath:
        return self.parent / name

    def resolve(self) -> ObjectPath:
        return self

    @property
    def fs(self) -> pafs.FileSystem:
        return filesystem(self.scheme)

    # -- the store -----------------------------------------------------------------------

    def _type(self) -> int:
        import pyarrow.fs as pafs

        if self._kind is not None and self._kind != int(pafs.FileType.Unknown):
            return self._kind
        return int(_guard(str(self), lambda: self.fs.get_file_info(self.path)).type)

    def exists(self) -> bool:
        import pyarrow.fs as pafs

        return self._type() != int(pafs.FileType.NotFound)

    def is_dir(self) -> bool:
        import pyarrow.fs as pafs

        return self._type() == int(pafs.FileType.Directory)

    def is_file(self) -> bool:
        import pyarrow.fs as pafs

        return self._type() == int(pafs.FileType.File)

    def stat(self) -> ObjectStat:
        """The object's size (`st_size`), as `Path.stat` gives it."""
        info = _guard(str(self), lambda: self.fs.get_file_info(self.path))
        if info.size is None:
            raise FileNotFoundError(2, "No such object", str(self))
        return ObjectStat(st_size=int(info.size))

    def iterdir(self) -> Iterator[ObjectPath]:
        """The objects and "folders" right under this prefix (one listing request)."""
        import pyarrow.fs as pafs

        selector = pafs.FileSelector(self.path, allow_not_found=True, recursive=False)
        for info in _guard(str(self), lambda: self.fs.get_file_info(selector)):
            yield ObjectPath._make(self.scheme, info.path, int(info.type))

    def glob(self, pattern: str) -> Iterator[ObjectPath]:
        """Children whose name matches `pattern` (no recursion)."""
        return (p for p in self.iterdir() if fnmatch.fnmatchcase(p.name, pattern))

    def read_bytes(self) -> bytes:
        def read() -> bytes:
            with self.fs.open_input_stream(self.path) as fh:
                return bytes(fh.read())

        try:
            return _guard(str(self), read)
        except ObjectStoreError:
            if not self.is_file():
                raise FileNotFoundError(2, "No such object", str(self)) from None
            raise

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def write_bytes(self, data: bytes) -> int:
        """One PUT: the object is replaced whole or not at all."""

        def write() -> int:
            with self.fs.open_output_stream(self.path) as fh:
                fh.write(data)
            return len(data)

        return _guard(str(self), write)

    def write_text(self, text: str, encoding: str = "utf-8") -> int:
        return self.write_bytes(text.encode(encoding))

    def unlink(self, missing_ok: bool = False) -> None:
        try:
            _guard(str(self), lambda: self.fs.delete_file(self.path))
        except FileNotFoundError:
            if not missing_ok:
                raise

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """Object stores have no folders; a prefix that already holds objects counts as existing."""
        if not exist_ok and self.is_dir():
            raise FileExistsError(17, "prefix already holds objects", str(self))

    def rmdir(self) -> None:
        """No folders to remove (an empty prefix does not exist)."""

    def move_to(self, target: ObjectPath) -> None:
        """Copy to `target` (a server-side, all-or-nothing copy) and delete this object."""
        _guard(str(target), lambda: self.fs.move(self.path, target.path))


RunPath = Union[Path, ObjectPath]  # noqa: UP007 - a runtime alias


def as_run_path(location: str | os.PathLike[str] | ObjectPath) -> RunPath:
    """A local `Path`, or an `ObjectPath` for `s3://`, `gs://`, `az://` URLs."""
    if isinstance(location, (Path, ObjectPath)):
        return location
    text = os.fspath(location)
    if _URL.match(text):
        return ObjectPath(text)
    return Path(text)


# -- Parquet on either ---------------------------------------------------------------------


def parquet_file(path: RunPath) -> pq.ParquetFile:
    import pyarrow.parquet as pq

    if isinstance(path, ObjectPath):
        return _guard(str(path), lambda: pq.ParquetFile(path.fs.open_input_file(path.path)))
    return pq.ParquetFile(path)


def read_parquet(path: RunPath, columns: list[str] | None = None, schema: pa.Schema | None = None) -> pa.Table:
    import pyarrow.parquet as pq

    if isinstance(path, ObjectPath):
        return _guard(str(path), lambda: pq.read_table(path.path, columns=columns, schema=schema, filesystem=path.fs))
    return pq.read_table(path, columns=columns, schema=schema)


def read_parquet_schema(path: RunPath) -> pa.Schema:
    import pyarrow.parquet as pq

    if isinstance(path, ObjectPath):

        def read() -> pa.Schema:
            with path.fs.open_input_file(path.path) as fh:
                return pq.read_schema(fh)

        return _guard(str(path), read)
    return pq.read_schema(path)


def parquet_writer(path: RunPath, schema: pa.Schema) -> pq.ParquetWriter:
    import pyarrow.parquet as pq

    if isinstance(path, ObjectPath):
        return _guard(str(path), lambda: pq.ParquetWriter(path.path, schema, filesystem=path.fs))
    return pq.ParquetWriter(path, schema)


def display(path: Any) -> str:
    """How a run location is printed (URLs redacted)."""
    return redact_location(str(path))


__all__ = [
    "SCHEMES",
    "ObjectPath",
    "ObjectStoreError",
    "RunPath",
    "as_run_path",
    "display",
    "endpoint_override",
    "filesystem",
    "is_remote",
    "parquet_file",
    "parquet_writer",
    "read_parquet",
    "read_parquet_schema",
    "redact_location",
]
