"""A local S3 server for the tests: moto's server mode on 127.0.0.1, and pyarrow/boto3 views of it."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow.fs as pafs

BUCKET = "harness-test"
SECRET = "moto-secret-key-4b7e1f09"  # must never appear in anything harness writes or prints


@dataclass(frozen=True)
class LocalS3:
    """A running moto server: its endpoint and the environment a harness process needs to use it."""

    endpoint: str
    env: dict[str, str]

    def fs(self) -> pafs.S3FileSystem:
        return pafs.S3FileSystem(endpoint_override=self.endpoint, access_key="testing", secret_key=SECRET,
                                 region="us-east-1", allow_delayed_open=True)

    def keys(self, prefix: str) -> list[str]:
        """Every object under `prefix` (no bucket), bucket-relative, sorted."""
        selector = pafs.FileSelector(f"{BUCKET}/{prefix}", recursive=True, allow_not_found=True)
        infos = self.fs().get_file_info(selector)
        return sorted(i.path.partition("/")[2] for i in infos if i.type == pafs.FileType.File)

    def download(self, prefix: str, local: str) -> None:
        """Copy a prefix (a run directory) to a local folder."""
        pafs.copy_files(f"{BUCKET}/{prefix}", local, source_filesystem=self.fs(),
                        destination_filesystem=pafs.LocalFileSystem())

    def upload(self, local: str, prefix: str) -> None:
        pafs.copy_files(local, f"{BUCKET}/{prefix}", source_filesystem=pafs.LocalFileSystem(),
                        destination_filesystem=self.fs())


@contextlib.contextmanager
def moto_server() -> Iterator[LocalS3]:
    """moto's ThreadedMotoServer on a free loopback port, with one bucket; the AWS_* environment set
    (and restored) so harness in this process and its children reach it through HARNESS_S3_ENDPOINT."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "HARNESS_S3_ENDPOINT": endpoint,
    }
    saved = {k: os.environ.get(k) for k in [*env, "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"]}
    os.environ.update(env)
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        os.environ.pop(name, None)
    try:
        import boto3

        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
        yield LocalS3(endpoint=endpoint, env=env)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()
