"""The scale-out backend: an S3-compatible bucket (AWS S3, MinIO, Ceph, moto's server).

boto3 rather than s3fs: whole objects are all we store, and boto3's ``upload_file`` /
``download_file`` already do multipart transfers and retries, without fsspec's caching
layers or an event loop in a thread. Credentials come the usual AWS ways (environment,
``~/.aws``, instance roles); ``endpoint_url`` points at a non-AWS server.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, cast

from .base import PROBE_BYTES, Storage, StorageError, check_key
from .faults import StorageUnavailable

_PROBE_KEY = "probes/00/" + "0" * 32
"""Where ``probe`` writes: a key no job makes (``check_key`` refuses it), so no job's file is
ever touched by a probe."""


class S3Storage(Storage):
    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None) -> None:
        try:
            import boto3
            from botocore.config import Config
        except ImportError as exc:  # pragma: no cover - boto3 is a dependency
            raise StorageError("s3:// storage needs boto3: pip install boto3") from exc
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        config = Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=5)
        self._client: Any = boto3.client("s3", endpoint_url=endpoint_url, config=config)
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
        from botocore.exceptions import ConnectionError as EndpointDown

        self._errors = (BotoCoreError, ClientError, S3UploadFailedError)
        self._unreachable = (EndpointDown, HTTPClientError)

    def _name(self, key: str) -> str:
        return self._prefixed(check_key(key))

    def _prefixed(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _missing(self, exc: Exception) -> bool:
        error = getattr(exc, "response", {}).get("Error", {})
        return str(error.get("Code")) in ("404", "NoSuchKey", "NotFound")

    def _fail(self, doing: str, exc: Exception) -> StorageError:
        message = (
            f"{self.describe()}: could not {doing} ({exc}); check the bucket, "
            "BGREMOVER_S3_ENDPOINT_URL and the AWS credentials"
        )
        if self._outage(exc):
            return StorageUnavailable(message, "results storage does not answer")
        return StorageError(message)

    def _outage(self, exc: BaseException | None) -> bool:
        """The server is down or failing (no connection, a timeout, a 5xx, throttling), as
        opposed to a request it refused (no such bucket, no permission)."""
        while exc is not None:
            if isinstance(exc, self._unreachable):
                return True
            response = getattr(exc, "response", None)
            if isinstance(response, dict):
                status = response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
                code = str(response.get("Error", {}).get("Code"))
                return int(status) >= 500 or code in ("SlowDown", "ServiceUnavailable")
            exc = exc.__cause__ or exc.__context__
        return False

    def put(self, key: str, source: Path) -> None:
        try:
            self._client.upload_file(str(source), self.bucket, self._name(key))
        except self._errors as exc:
            raise self._fail(f"store {key}", exc) from exc
        source.unlink()

    def get(self, key: str, target: Path) -> None:
        # Into a temporary name first: a reader of ``target`` never sees half a file.
        fd, part = tempfile.mkstemp(dir=target.parent, prefix=".part-")
        os.close(fd)
        try:
            self._client.download_file(self.bucket, self._name(key), part)
            os.replace(part, target)
        except self._errors as exc:
            if self._missing(exc):
                raise FileNotFoundError(key) from exc
            raise self._fail(f"read {key}", exc) from exc
        finally:
            Path(part).unlink(missing_ok=True)

    def open(self, key: str) -> BinaryIO:
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self._name(key))
        except self._errors as exc:
            if self._missing(exc):
                raise FileNotFoundError(key) from exc
            raise self._fail(f"read {key}", exc) from exc
        return cast(BinaryIO, response["Body"])

    def size(self, key: str) -> int | None:
        try:
            head = self._client.head_object(Bucket=self.bucket, Key=self._name(key))
        except self._errors as exc:
            if self._missing(exc):
                return None
            raise self._fail(f"look up {key}", exc) from exc
        return int(head["ContentLength"])

    def delete(self, key: str) -> bool:
        existed = self.exists(key)
        try:
            self._client.delete_object(Bucket=self.bucket, Key=self._name(key))
        except self._errors as exc:
            raise self._fail(f"delete {key}", exc) from exc
        return existed

    def describe(self) -> str:
        where = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        return f"{where} at {self.endpoint_url}" if self.endpoint_url else where

    def check(self) -> None:
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except self._errors as exc:
            raise self._fail("reach the bucket", exc) from exc

    def probe(self) -> None:
        try:
            self._client.put_object(
                Bucket=self.bucket, Key=self._prefixed(_PROBE_KEY), Body=bytes(PROBE_BYTES)
            )
            self._client.delete_object(Bucket=self.bucket, Key=self._prefixed(_PROBE_KEY))
        except self._errors as exc:
            raise self._fail("write a probe file", exc) from exc
