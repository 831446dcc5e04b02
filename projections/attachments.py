"""The document store: supporting documents' bytes, kept by the SHA-256 of their content (docs/api.md).

The log records that a document was attached (`Declaration.DocumentAttached`);
the bytes live here, beside the log like the views and the recorded messages,
under their hash. The same bytes are stored once, however many declarations
attach them, and a key can never name other bytes than the ones it was written
with. Who may read a document is decided by the declaration it is attached to
(tradehub/visibility.py), never by knowing a hash.

Two stores, one interface:

- `DirectoryStore` (the default): files under `<data>/documents/ab/abcdef…`,
  written to a temporary file in the same directory, synced, and renamed into
  place, so a reader sees a whole file or none; files 0600, directories 0700.
- `S3Store`: an S3-compatible bucket (AWS S3, MinIO, Ceph, SeaweedFS) through
  the `minio` client, for hubs on several machines; `s3://bucket/prefix`.

The store is written before the event is recorded: a crash between the two
leaves bytes no declaration names (harmless: unreachable, and stored again
by the same hash if the client retries), never an event naming bytes the
store lacks.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import urlsplit

CHUNK = 1024 * 1024
_SHA256 = re.compile(r"[0-9a-f]{64}")


class DocumentStoreError(RuntimeError):
    """The store cannot keep or give a document now (a disk or network failure, a missing bucket)."""


class DocumentMissing(LookupError):
    """No document is stored under this hash."""


class DigestMismatch(ValueError):
    """The bytes handed to the store do not have the hash they were to be stored under."""


class DocumentStore(Protocol):
    """Where supporting documents' bytes are kept, by the SHA-256 of their content."""

    def put(self, sha256: str, source: BinaryIO, size: int, media_type: str) -> None:
        """Store `size` bytes read from `source` under `sha256` (already stored: nothing to do)."""

    def open(self, sha256: str) -> Iterator[bytes]:
        """The document's bytes, in chunks; `DocumentMissing` if none is stored under `sha256`."""

    def exists(self, sha256: str) -> bool: ...

    def describe(self) -> str:
        """Where the documents are, for logs and `/healthz` (no credentials)."""


def _checked(sha256: str) -> str:
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        raise DocumentMissing(f"not a SHA-256 digest: {str(sha256)[:80]!r}")
    return sha256


def key_of(sha256: str) -> str:
    """The document's place in either store: `ab/abcdef…`."""
    return f"{sha256[:2]}/{sha256}"


# ---- the default: a directory under the data directory ----------------------------------------------

class DirectoryStore:
    """Documents as files under `root`, each written whole and atomically."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def describe(self) -> str:
        return f"directory {self.root}"

    def _path(self, sha256: str) -> Path:
        return self.root / key_of(_checked(sha256))

    def exists(self, sha256: str) -> bool:
        return self._path(sha256).is_file()

    def put(self, sha256: str, source: BinaryIO, size: int, media_type: str) -> None:
        final = self._path(sha256)
        if final.is_file():
            return
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            final.parent.mkdir(mode=0o700, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=final.parent, prefix=".incoming-")  # 0600 whatever the umask
        except OSError as error:
            raise DocumentStoreError(f"cannot write to {self.root}: {error.strerror or error}") from None
        try:
            digest = hashlib.sha256()
            written = 0
            with os.fdopen(handle, "wb") as target:
                while chunk := source.read(CHUNK):
                    digest.update(chunk)
                    written += len(chunk)
                    target.write(chunk)
                target.flush()
                os.fsync(target.fileno())
            if digest.hexdigest() != sha256 or written != size:
                raise DigestMismatch(f"{written} bytes with SHA-256 {digest.hexdigest()}, expected {size} bytes "
                                     f"with {sha256}")
            os.replace(temporary, final)
            _sync_directory(final.parent)
        except OSError as error:
            raise DocumentStoreError(f"cannot write to {self.root}: {error.strerror or error}") from None
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)

    def open(self, sha256: str) -> Iterator[bytes]:
        try:
            handle = self._path(sha256).open("rb")
        except FileNotFoundError:
            raise DocumentMissing(f"no document {sha256}") from None
        except OSError as error:
            raise DocumentStoreError(f"cannot read {self.root}: {error.strerror or error}") from None
        return _chunks(handle)


def _chunks(handle: BinaryIO) -> Iterator[bytes]:
    with handle:
        while chunk := handle.read(CHUNK):
            yield chunk


def _sync_directory(path: Path) -> None:
    """Make a rename in `path` survive a power cut."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


# ---- S3-compatible object storage -----------------------------------------------------------------

@dataclass(frozen=True)
class S3Location:
    """`s3://bucket/optional/prefix` and how to reach it."""

    bucket: str
    prefix: str
    endpoint: str  # scheme://host[:port]
    access_key: str
    secret_key: str
    region: str = ""

    @classmethod
    def parse(cls, url: str, endpoint: str, access_key: str, secret_key: str, region: str = "") -> S3Location:
        """`ValueError` naming what is wrong (never the secret)."""
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"a document store in S3 is s3://bucket[/prefix], got {url[:80]!r}")
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", parts.netloc):
            raise ValueError(f"{parts.netloc!r} is not an S3 bucket name (3-63 of a-z, 0-9, '.', '-')")
        if not endpoint:
            raise ValueError("an S3 document store needs an endpoint (https://host[:port])")
        target = urlsplit(endpoint)
        if target.scheme not in ("http", "https") or not target.netloc or target.path not in ("", "/"):
            raise ValueError(f"the S3 endpoint must be http(s)://host[:port], got {endpoint[:80]!r}")
        if not access_key or not secret_key:
            raise ValueError("an S3 document store needs an access key and a secret key")
        return cls(parts.netloc, parts.path.strip("/"), endpoint.rstrip("/"), access_key, secret_key, region)


class S3Store:
    """Documents as objects `<prefix>/ab/abcdef…` in one bucket, created on first use if it is missing."""

    def __init__(self, location: S3Location) -> None:
        import urllib3
        from minio import Minio

        self.location = location
        target = urlsplit(location.endpoint)
        # Short timeouts and few retries: a request waits seconds for a store that is down, not minutes.
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=5, read=60), maxsize=16,
            retries=urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504)))
        self.client = Minio(target.netloc, access_key=location.access_key, secret_key=location.secret_key,
                            secure=target.scheme == "https", region=location.region or None, http_client=http)
        self._bucket_ready = False
        self._lock = threading.Lock()

    def describe(self) -> str:
        prefix = f"/{self.location.prefix}" if self.location.prefix else ""
        return f"s3://{self.location.bucket}{prefix} at {self.location.endpoint}"

    def _key(self, sha256: str) -> str:
        key = key_of(_checked(sha256))
        return f"{self.location.prefix}/{key}" if self.location.prefix else key

    def _errors(self, doing: str) -> _S3Errors:
        return _S3Errors(doing, self.describe())

    def _ensure_bucket(self) -> None:
        if self._bucket_ready:
            return
        with self._lock, self._errors("checking the bucket"):
            if not self.client.bucket_exists(self.location.bucket):
                self.client.make_bucket(self.location.bucket)
            self._bucket_ready = True

    def exists(self, sha256: str) -> bool:
        from minio.error import S3Error

        key = self._key(sha256)
        with self._errors("looking up a document"):
            try:
                self.client.stat_object(self.location.bucket, key)
            except S3Error as error:
                if error.code in ("NoSuchKey", "NoSuchObject", "NotFound", "NoSuchBucket"):
                    return False
                raise
        return True

    def put(self, sha256: str, source: BinaryIO, size: int, media_type: str) -> None:
        self._ensure_bucket()
        if self.exists(sha256):
            return
        with self._errors("storing a document"):
            self.client.put_object(self.location.bucket, self._key(sha256), source, size, content_type=media_type,
                                   metadata={"x-amz-meta-sha256": sha256})

    def open(self, sha256: str) -> Iterator[bytes]:
        from minio.error import S3Error

        key = self._key(sha256)
        with self._errors("reading a document"):
            try:
                response = self.client.get_object(self.location.bucket, key)
            except S3Error as error:
                if error.code in ("NoSuchKey", "NoSuchObject", "NotFound", "NoSuchBucket"):
                    raise DocumentMissing(f"no document {sha256}") from None
                raise
        return _streamed(response)


def _streamed(response: object) -> Iterator[bytes]:
    try:
        yield from response.stream(CHUNK)  # type: ignore[attr-defined]
    finally:
        response.close()  # type: ignore[attr-defined]
        response.release_conn()  # type: ignore[attr-defined]


class _S3Errors:
    """Turns the client's failures into `DocumentStoreError`, naming the store but never its credentials."""

    def __init__(self, doing: str, where: str) -> None:
        self.doing, self.where = doing, where

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, _: object) -> bool:
        if error is None or isinstance(error, DocumentMissing):
            return False
        from minio.error import MinioException
        from urllib3.exceptions import HTTPError

        if isinstance(error, MinioException | HTTPError | OSError):
            code = getattr(error, "code", "") or type(error).__name__
            raise DocumentStoreError(f"{self.doing} in {self.where} failed: {code}") from None
        return False
