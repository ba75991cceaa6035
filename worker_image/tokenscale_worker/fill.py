"""`tokenscale-worker fill` and `wait-model`: put one model into the shared cache, and hold the
replicas back until it is there.

fill downloads into `<cache>/<key>.partial/`, writes the complete marker there last and renames the
directory to `<cache>/<key>` (the layout in `tokenscale_contract.model_cache`). Each object is
tried once per process: a broken transfer exits 1 and the Kubernetes Job's backoff starts a new pod,
which keeps every object the failed one finished. One fill per key runs at a time (`fill_lock`).
wait-model, the replicas' init container, returns once `<cache>/<key>/.complete` exists.

boto3 and huggingface_hub are imported only when a fill needs them, so `serve` runs without them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from tokenscale_contract.model_cache import COMPLETE_MARKER, PARTIAL_SUFFIX, cache_key
from tokenscale_worker import fill_lock

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

CHUNK_BYTES = 1 << 20
WAIT_LOG_EVERY_S = 30.0
# The part file an object streams into before its rename; a final file is therefore whole.
PART_SUFFIX = ".part"
# huggingface_hub keeps its download bookkeeping here inside local_dir: not part of the model.
HF_METADATA_DIR = ".cache"
DEFAULT_REGION = "us-east-1"
INSTALL_HINT = "install tokenscale-worker[fill] (boto3, huggingface_hub)"

log = logging.getLogger(__name__)

# The exceptions an S3 call may raise; botocore's are known only once it is imported.
Errors = tuple[type[BaseException], ...]


class FillError(Exception):
    """The fill failed (network, storage, a bad object): exit 1, and the Job's next pod resumes."""


class MissingExtraError(Exception):
    """A library the fill needs is not installed: exit 2, retrying cannot help."""


@dataclass(frozen=True)
class Source:
    uri: str
    scheme: str  # "s3" or "hf"
    bucket: str  # the bucket for s3, the repository id for hf
    prefix: str  # s3 only: the key prefix without slashes at either end ("" for a whole bucket)


@dataclass(frozen=True)
class S3Object:
    key: str
    rel: PurePosixPath  # where it goes, relative to the cache entry
    size: int


@dataclass
class Tally:
    files: int = 0
    bytes: int = 0
    reused: int = 0
    reused_bytes: int = 0


# --- argument types ---------------------------------------------------------------------------


def model_source(text: str) -> Source:
    """argparse type for --source: s3://bucket[/prefix] or hf://org/name."""
    scheme, sep, rest = text.partition("://")
    rest = rest.strip("/")
    if sep and scheme == "s3" and rest:
        bucket, _, prefix = rest.partition("/")
        return Source(text, "s3", bucket, prefix.strip("/"))
    if sep and scheme == "hf" and rest and ".." not in rest.split("/"):
        return Source(text, "hf", rest, "")
    raise argparse.ArgumentTypeError(
        f"must be s3://bucket/prefix or hf://org/name, got {text[:80]!r}"
    )


def revision(text: str) -> str:
    """argparse type for --revision: a branch, tag or commit, one printable token."""
    if not text or not text.isprintable() or text != text.strip():
        raise argparse.ArgumentTypeError(f"must be a branch, tag or commit, got {text[:80]!r}")
    return text


def entry_key(text: str) -> str:
    """argparse type for --key: one directory name inside the cache, as cache_key makes it."""
    if not text or "/" in text or text in (".", "..") or not text.isprintable():
        raise argparse.ArgumentTypeError(
            f"must be one directory name inside --cache-dir, got {text[:80]!r}"
        )
    return text


# --- fill -------------------------------------------------------------------------------------


def run_fill(args: argparse.Namespace) -> int:
    source: Source = args.source
    cache = Path(args.cache_dir)
    key = cache_key(source.uri, args.revision)
    final = cache / key
    # Checked before anything else: a filled cache costs no network call.
    if (final / COMPLETE_MARKER).is_file():
        log.info("already cached: %s (%s)", final, source.uri)
        return EXIT_OK
    log.info("filling %s into %s", source.uri, final)
    started = time.monotonic()
    done = (final / COMPLETE_MARKER).is_file
    try:
        cache.mkdir(parents=True, exist_ok=True)  # the volume's mount in a pod; a directory here
        with fill_lock.exclusive(cache / f"{key}{fill_lock.LOCK_SUFFIX}", done) as held:
            if not held or done():
                log.info("filled by another fill meanwhile: %s (%s)", final, source.uri)
                return EXIT_OK
            tally = _fill(source, args.revision, cache, key)
    except MissingExtraError as err:
        print(f"tokenscale-worker fill: {err}", file=sys.stderr)
        return EXIT_USAGE
    except FillError as err:
        print(f"tokenscale-worker fill: {err}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as err:
        print(f"tokenscale-worker fill: {_one_line(err)}; check the cache volume", file=sys.stderr)
        return EXIT_FAILED
    print(_summary(source, final, tally, time.monotonic() - started))
    return EXIT_OK


def _fill(source: Source, rev: str | None, cache: Path, key: str) -> Tally:
    final = cache / key
    if final.exists():
        # A fill never leaves this name without the marker, so something else made it.
        raise FillError(
            f"{final} exists without {COMPLETE_MARKER}: it was not written by a fill; remove it"
        )
    partial = cache / f"{key}{PARTIAL_SUFFIX}"
    if source.scheme == "s3":
        tally = _fill_s3(source, partial)
    else:
        tally = _fill_hf(source, rev, partial)
    _finalize(source, rev, partial, final, tally)
    return tally


def _finalize(source: Source, rev: str | None, partial: Path, final: Path, tally: Tally) -> None:
    """Make every file durable, write the marker last, then publish the directory by renaming
    it: a crash at any point leaves either no `<key>` or a complete one."""
    for path in _walk_files(partial):
        _fsync_path(path)
    marker = {"source": source.uri, "revision": rev, "files": tally.files, "bytes": tally.bytes}
    with open(partial / COMPLETE_MARKER, "w") as f:
        json.dump(marker, f)
        f.flush()
        os.fsync(f.fileno())
    for directory in _walk_dirs(partial):
        _fsync_path(directory)
    os.replace(partial, final)
    _fsync_path(final.parent)


def _summary(source: Source, final: Path, tally: Tally, seconds: float) -> str:
    fetched = tally.bytes - tally.reused_bytes
    rate = fetched / 1e6 / seconds if seconds > 0 else 0.0
    return (
        f"filled {source.uri} into {final}: {tally.files} files, {tally.bytes} bytes, "
        f"{tally.reused} reused, {seconds:.1f} s, {rate:.1f} MB/s"
    )


# --- s3 ---------------------------------------------------------------------------------------


def _fill_s3(source: Source, partial: Path) -> Tally:
    client, errors = _s3_client()
    objects = _list_objects(client, errors, source)
    # Only now: a source that lists nothing usable leaves no trace in the cache.
    partial.mkdir(parents=True, exist_ok=True)
    tally = Tally(files=len(objects), bytes=sum(o.size for o in objects))
    for obj in objects:
        target = partial / obj.rel
        if target.is_file() and target.stat().st_size == obj.size:
            # Finished by an earlier pod of this Job: its part file was renamed only when whole.
            tally.reused += 1
            tally.reused_bytes += obj.size
            continue
        _download(client, errors, source, obj, target)
    if tally.reused:
        log.info("reused %d of %d objects from an earlier attempt", tally.reused, tally.files)
    return tally


def _s3_client() -> tuple[Any, Errors]:
    """A client configured from the environment (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...), and
    the exceptions its calls raise."""
    try:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError as err:
        raise MissingExtraError(f"s3 sources need boto3 ({err}); {INSTALL_HINT}") from None
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
    custom = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3")
    # In-cluster stores (MinIO, Ceph) answer on a service name where `<bucket>.<host>` does
    # not resolve: address them by path.
    config = Config(
        retries={"mode": "standard"},
        s3={"addressing_style": "path" if custom else "auto"},
    )
    client = boto3.client("s3", region_name=region, config=config)
    return client, (BotoCoreError, ClientError, OSError)


def _list_objects(client: Any, errors: Errors, source: Source) -> list[S3Object]:
    # The trailing slash keeps s3://b/tiny from matching s3://b/tiny2/...
    prefix = f"{source.prefix}/" if source.prefix else ""
    objects: list[S3Object] = []
    try:
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=source.bucket, Prefix=prefix
        ):
            for item in page.get("Contents", []):
                key, size = str(item["Key"]), int(item["Size"])
                if key.endswith("/") and size == 0:
                    continue  # a console "folder" marker, not a file
                objects.append(S3Object(key, _relative_path(source, key, prefix), size))
    except errors as err:
        raise FillError(
            f"{source.uri}: listing failed ({_one_line(err)}); check the bucket, the "
            "endpoint and the credentials"
        ) from None
    if not objects:
        raise FillError(f"{source.uri}: no objects under this prefix")
    _refuse_part_collisions(source, objects)
    return objects


def _relative_path(source: Source, key: str, prefix: str) -> PurePosixPath:
    """The object's path under the cache entry; refuses a key that would land outside it or on
    the marker, since object names come from whoever can write the bucket."""
    rel = key[len(prefix) :]
    parts = rel.split("/")
    if any(p in ("", ".", "..") for p in parts) or "\0" in rel:
        raise FillError(
            f"{source.uri}: object key {key!r} has an empty, '.' or '..' path segment and "
            "cannot be stored under the cache entry; rename the object"
        )
    if rel == COMPLETE_MARKER:
        raise FillError(
            f"{source.uri}: object key {key!r} would stand in for the fill's own "
            f"{COMPLETE_MARKER} marker; rename the object"
        )
    return PurePosixPath(rel)


def _refuse_part_collisions(source: Source, objects: list[S3Object]) -> None:
    """`x` streams through `x.part`, so an object named `x.part` next to `x` would be
    overwritten by it."""
    names = {o.rel for o in objects}
    for obj in objects:
        stem = obj.rel.name.removesuffix(PART_SUFFIX)
        if stem != obj.rel.name and obj.rel.with_name(stem) in names:
            raise FillError(
                f"{source.uri}: object key {obj.key!r} collides with the part file of "
                f"{obj.key.removesuffix(PART_SUFFIX)!r}; rename one of them"
            )


def _download(
    client: Any,
    errors: Errors,
    source: Source,
    obj: S3Object,
    target: Path,
) -> None:
    """One attempt: stream into `<target>.part`, check the length, rename. No retry around a
    broken body: the Job retries the pod, and the objects finished so far are kept."""
    uri = f"s3://{source.bucket}/{obj.key}"
    part = target.with_name(target.name + PART_SUFFIX)
    expected, received = obj.size, 0
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        response = client.get_object(Bucket=source.bucket, Key=obj.key)
        expected = int(response["ContentLength"])
        with open(part, "wb") as f:
            for chunk in response["Body"].iter_chunks(CHUNK_BYTES):
                f.write(chunk)
                received += len(chunk)
            f.flush()
            # Resume trusts a final file by its size: it must be on disk before its rename.
            os.fsync(f.fileno())
    except errors as err:
        part.unlink(missing_ok=True)
        raise FillError(
            f"{uri}: received {received} of {expected} bytes ({_one_line(err)}); the Job's "
            "next attempt keeps the objects already complete"
        ) from None
    if received != expected or expected != obj.size:
        part.unlink(missing_ok=True)
        raise FillError(
            f"{uri}: received {received} bytes, the response announced {expected} and the "
            f"listing {obj.size}; the object changed or the transfer was cut, the Job retries"
        )
    os.replace(part, target)


# --- huggingface ------------------------------------------------------------------------------


def _fill_hf(source: Source, rev: str | None, partial: Path) -> Tally:
    try:
        from huggingface_hub import snapshot_download
    except ImportError as err:
        raise MissingExtraError(
            f"hf sources need huggingface_hub ({err}); {INSTALL_HINT}"
        ) from None
    partial.mkdir(parents=True, exist_ok=True)
    before = {p: p.stat().st_size for p in _model_files(partial)}
    try:
        # The library reads HF_TOKEN itself and skips files a previous attempt finished.
        snapshot_download(repo_id=source.bucket, revision=rev, local_dir=str(partial))
    except Exception as err:  # its errors span its own, HTTP-client and OS exceptions
        raise FillError(
            f"{source.uri}: download failed ({_one_line(err)}); check the repository id, the "
            "revision and HF_TOKEN"
        ) from None
    tally = Tally()
    for path in _model_files(partial):
        size = path.stat().st_size
        tally.files += 1
        tally.bytes += size
        if before.get(path) == size:
            tally.reused += 1
            tally.reused_bytes += size
    if tally.files == 0:
        raise FillError(f"{source.uri}: the repository has no files at this revision")
    return tally


def _model_files(root: Path) -> Iterator[Path]:
    for path in _walk_files(root):
        if path.relative_to(root).parts[0] != HF_METADATA_DIR:
            yield path


# --- wait-model -------------------------------------------------------------------------------


def run_wait_model(args: argparse.Namespace) -> int:
    """Block until the fill has published the entry. No timeout: how long a fill may take is the
    fill Job's to decide (its backoff limit and deadline), not each replica's."""
    entry = Path(args.cache_dir) / args.key
    marker = entry / COMPLETE_MARKER
    next_log = 0.0
    while not marker.is_file():
        now = time.monotonic()
        if now >= next_log:
            log.info("waiting for the model cache fill (%s)", entry)
            next_log = now + WAIT_LOG_EVERY_S
        time.sleep(args.poll_seconds)
    log.info("model cache ready: %s", entry)
    return EXIT_OK


# --- helpers ----------------------------------------------------------------------------------


def _walk_files(root: Path) -> Iterator[Path]:
    for directory, _dirs, files in os.walk(root):
        for name in files:
            yield Path(directory) / name


def _walk_dirs(root: Path) -> Iterator[Path]:
    for directory, _dirs, _files in os.walk(root):
        yield Path(directory)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 240 else text[:237] + "..."
