"""`tokenscale-worker fill` and `wait-model` as real processes against a real S3 endpoint (moto),
with a proxy in between that counts requests and cuts a download half way."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.worker.s3_server import TEST_ENV, CuttingProxy, moto_server
from tokenscale_contract.model_cache import COMPLETE_MARKER, PARTIAL_SUFFIX, cache_key

pytestmark = pytest.mark.integration

BIG = "model.safetensors"
# A model in nested paths, one object of a few MiB (several 1 MiB read chunks).
MODEL = {
    "config.json": b'{"architectures": ["LlamaForCausalLM"]}',
    BIG: random.Random(7).randbytes(5 * 1024 * 1024 + 123),
    "tokenizer/tokenizer.json": b'{"version": "1.0"}' * 100,
    "tokenizer/special/special_tokens_map.json": b"{}",
}
# Objects next to the prefix that a prefix match without its slash would take in.
NEIGHBOURS = {"tiny2/config.json": b"wrong model", "tinyfile": b"not a directory"}
CLI = [sys.executable, "-m", "tokenscale_worker.cli"]


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server() as url:
        yield url


def s3(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=TEST_ENV["AWS_DEFAULT_REGION"],
        aws_access_key_id=TEST_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=TEST_ENV["AWS_SECRET_ACCESS_KEY"],
    )


def upload(endpoint: str, objects: dict[str, bytes]) -> str:
    """A fresh bucket holding `objects`; returns its name."""
    bucket = f"models-{uuid.uuid4().hex[:12]}"
    client = s3(endpoint)
    client.create_bucket(Bucket=bucket)
    for key, body in objects.items():
        client.put_object(Bucket=bucket, Key=key, Body=body)
    return bucket


@pytest.fixture
def bucket(endpoint: str) -> str:
    return upload(endpoint, {**{f"tiny/{k}": v for k, v in MODEL.items()}, **NEIGHBOURS})


def env_for(url: str, **extra: str) -> dict[str, str]:
    # Nothing from the host's AWS setup may leak in: only the test endpoint and credentials.
    base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return {
        **base,
        **TEST_ENV,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_ENDPOINT_URL": url,
        **extra,
    }


def run_fill(
    cache: Path, source: str, url: str, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "fill", "--source", source, "--cache-dir", str(cache), *extra],
        env=env or env_for(url),
        capture_output=True,
        text=True,
        timeout=120,
    )


def tree(root: Path) -> dict[str, bytes]:
    """Every file under `root` by its relative path."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("tokenscale-worker")]


def test_fill_downloads_the_prefix_byte_for_byte(
    endpoint: str, bucket: str, tmp_path: Path
) -> None:
    source = f"s3://{bucket}/tiny"
    result = run_fill(tmp_path, source, endpoint)
    assert result.returncode == 0, result.stderr
    entry = tmp_path / cache_key(source, None)
    files = tree(entry)
    marker = json.loads(files.pop(COMPLETE_MARKER))
    # Exactly the prefix's objects: neither tiny2/ nor tinyfile, no part files.
    assert files == MODEL
    total = sum(map(len, MODEL.values()))
    assert marker == {"source": source, "revision": None, "files": len(MODEL), "bytes": total}
    assert sorted(tmp_path.iterdir()) == [entry]  # no .partial left behind
    assert f"{len(MODEL)} files, {total} bytes, 0 reused" in result.stdout


def test_a_filled_cache_makes_no_request(endpoint: str, bucket: str, tmp_path: Path) -> None:
    source = f"s3://{bucket}/tiny"
    with CuttingProxy(endpoint) as proxy:
        first = run_fill(tmp_path, source, proxy.url)
        assert first.returncode == 0, first.stderr
        after_first = proxy.requests
        assert after_first > 0  # the proxy does see the fill's traffic
        second = run_fill(tmp_path, source, proxy.url)
        assert second.returncode == 0, second.stderr
        assert proxy.requests == after_first
    assert "already cached" in second.stderr
    assert second.stdout == ""


def test_a_cut_download_fails_then_resumes(endpoint: str, bucket: str, tmp_path: Path) -> None:
    source = f"s3://{bucket}/tiny"
    entry = tmp_path / cache_key(source, None)
    partial = tmp_path / (entry.name + PARTIAL_SUFFIX)
    with CuttingProxy(endpoint, cut_path_suffix=BIG, cuts=1) as proxy:
        first = run_fill(tmp_path, source, proxy.url)
        assert first.returncode == 1, first.stderr
        [line] = error_lines(first.stderr)
        match = re.search(rf"s3://{bucket}/tiny/{BIG}: received (\d+) of (\d+) bytes", line)
        assert match, line
        assert int(match[1]) < int(match[2]) == len(MODEL[BIG])
        assert proxy.cuts_left == 0
        # Nothing published; the partial entry holds whole objects only, and no marker.
        assert not entry.exists()
        done = tree(partial)
        assert done, "the fill stopped before any object finished: the test proves nothing"
        assert BIG not in done and COMPLETE_MARKER not in done
        assert not any(name.endswith(".part") for name in done)
        assert all(MODEL[name] == body for name, body in done.items())

        second = run_fill(tmp_path, source, proxy.url)
        assert second.returncode == 0, second.stderr
        for name in MODEL:
            fetched = proxy.gets(f"/{bucket}/tiny/{name}")
            # Finished in run 1: kept. The cut one: fetched again. The rest: once, in run 2.
            assert fetched == (2 if name == BIG else 1), (name, fetched)
    assert f"reused {len(done)} of {len(MODEL)} objects" in second.stderr
    assert f"{len(done)} reused" in second.stdout
    files = tree(entry)
    assert COMPLETE_MARKER in files
    del files[COMPLETE_MARKER]
    assert files == MODEL
    assert not partial.exists()


@pytest.mark.parametrize("bad", ["a/../../x", "/x", "a/./x"])
def test_keys_that_escape_the_entry_are_refused(endpoint: str, tmp_path: Path, bad: str) -> None:
    bucket = upload(endpoint, {"tiny/config.json": b"{}", f"tiny/{bad}": b"escape"})
    cache = tmp_path / "cache"
    result = run_fill(cache, f"s3://{bucket}/tiny", endpoint)
    assert result.returncode == 1, result.stderr
    [line] = error_lines(result.stderr)
    assert f"object key 'tiny/{bad}'" in line and "rename the object" in line
    # Refused at listing time: nothing downloaded, in the cache (the volume's mount, which a pod
    # has anyway) or outside it; no lock left behind.
    assert [p for p in tmp_path.rglob("*") if p != cache] == []


def test_an_object_named_like_the_marker_is_refused(endpoint: str, tmp_path: Path) -> None:
    bucket = upload(endpoint, {"tiny/config.json": b"{}", f"tiny/{COMPLETE_MARKER}": b"{}"})
    result = run_fill(tmp_path, f"s3://{bucket}/tiny", endpoint)
    assert result.returncode == 1
    assert f"{COMPLETE_MARKER} marker" in result.stderr


def test_an_object_named_like_another_ones_part_file_is_refused(
    endpoint: str, tmp_path: Path
) -> None:
    bucket = upload(endpoint, {"tiny/w.bin": b"weights", "tiny/w.bin.part": b"other"})
    result = run_fill(tmp_path, f"s3://{bucket}/tiny", endpoint)
    assert result.returncode == 1
    [line] = error_lines(result.stderr)
    assert "'tiny/w.bin.part' collides with the part file of 'tiny/w.bin'" in line


def test_an_entry_without_its_marker_is_not_overwritten(
    endpoint: str, bucket: str, tmp_path: Path
) -> None:
    source = f"s3://{bucket}/tiny"
    stray = tmp_path / cache_key(source, None)
    stray.mkdir()
    (stray / "config.json").write_bytes(b"someone else's")
    result = run_fill(tmp_path, source, endpoint)
    assert result.returncode == 1
    [line] = error_lines(result.stderr)
    assert f"{stray} exists without {COMPLETE_MARKER}" in line and "remove it" in line
    assert tree(stray) == {"config.json": b"someone else's"}


def test_an_empty_prefix_is_an_error(endpoint: str, tmp_path: Path) -> None:
    bucket = upload(endpoint, {"nothing2/config.json": b"{}", "other/config.json": b"{}"})
    result = run_fill(tmp_path, f"s3://{bucket}/nothing", endpoint)
    assert result.returncode == 1
    assert error_lines(result.stderr) == [
        f"tokenscale-worker fill: s3://{bucket}/nothing: no objects under this prefix"
    ]
    assert list(tmp_path.iterdir()) == []  # not even a partial directory


def test_a_missing_bucket_names_the_source(endpoint: str, tmp_path: Path) -> None:
    result = run_fill(tmp_path, "s3://no-such-bucket-here/tiny", endpoint)
    assert result.returncode == 1
    [line] = error_lines(result.stderr)
    assert "s3://no-such-bucket-here/tiny: listing failed" in line and "NoSuchBucket" in line


def test_usage_errors_exit_2_on_one_line(tmp_path: Path) -> None:
    for argv in (
        ["fill", "--source", "gs://bucket/model", "--cache-dir", str(tmp_path)],
        ["fill", "--source", "s3://", "--cache-dir", str(tmp_path)],
        ["wait-model", "--cache-dir", str(tmp_path), "--key", "../elsewhere"],
        ["wait-model", "--cache-dir", str(tmp_path), "--key", "k", "--poll-seconds", "0"],
    ):
        result = subprocess.run([*CLI, *argv], capture_output=True, text=True, timeout=60)
        assert result.returncode == 2, (argv, result.stderr)
        assert len(result.stderr.splitlines()) == 1, result.stderr


def test_without_boto3_the_fill_names_the_extra(tmp_path: Path) -> None:
    # None in sys.modules makes `import boto3` fail as if it were not installed.
    code = (
        "import sys; sys.modules['boto3'] = None; from tokenscale_worker.cli import main; "
        f"sys.exit(main(['fill', '--source', 's3://b/p', '--cache-dir', {str(tmp_path)!r}]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "install tokenscale-worker[fill]" in result.stderr


# A stand-in huggingface_hub: writes what the real one would into local_dir, including its own
# bookkeeping directory, and fails for one repository.
FAKE_HF = """
import json, pathlib
def snapshot_download(repo_id, revision=None, local_dir=None):
    if repo_id == "org/missing":
        raise RuntimeError("404 Client Error: Repository Not Found for url:\\n https://hf.co/x")
    root = pathlib.Path(local_dir)
    (root / ".cache" / "huggingface").mkdir(parents=True, exist_ok=True)
    (root / ".cache" / "huggingface" / "config.json.metadata").write_text("bookkeeping")
    (root / "config.json").write_text(json.dumps({"repo": repo_id, "revision": revision}))
    (root / "model.safetensors").write_bytes(b"w" * 1000)
    return str(root)
"""


def hf_env(tmp_path: Path) -> dict[str, str]:
    package = tmp_path / "fake" / "huggingface_hub"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(FAKE_HF)
    return {**os.environ, "PYTHONPATH": f"{package.parent}:{os.environ.get('PYTHONPATH', '')}"}


def test_hf_fill_downloads_the_revision_into_the_entry(tmp_path: Path) -> None:
    cache, source = tmp_path / "cache", "hf://org/name"
    result = run_fill(cache, source, "", "--revision", "abc123", env=hf_env(tmp_path))
    assert result.returncode == 0, result.stderr
    entry = cache / cache_key(source, "abc123")
    config = (entry / "config.json").read_bytes()
    assert json.loads(config) == {"repo": "org/name", "revision": "abc123"}
    marker = json.loads((entry / COMPLETE_MARKER).read_text())
    # The library's bookkeeping (.cache/) is not counted as the model.
    assert marker == {
        "source": source,
        "revision": "abc123",
        "files": 2,
        "bytes": 1000 + len(config),
    }
    assert sorted(p.name for p in cache.iterdir()) == [entry.name]


def test_hf_failure_exits_1_on_one_line(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    result = run_fill(cache, "hf://org/missing", "", env=hf_env(tmp_path))
    assert result.returncode == 1
    [line] = error_lines(result.stderr)
    assert "hf://org/missing: download failed (404 Client Error" in line
    assert not (cache / cache_key("hf://org/missing", None)).exists()


def wait_model(cache: Path, key: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, "wait-model", "--cache-dir", str(cache), "--key", key, "--poll-seconds", "0.05"],
        stderr=subprocess.PIPE,
        text=True,
    )


def first_line_with(proc: subprocess.Popen[str], text: str, within_s: float = 60.0) -> str:
    """Read stderr until a line holds `text`; the process must still be running."""
    assert proc.stderr is not None
    found: list[str] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if text in line:
                found.append(line)
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(within_s)
    assert found, f"no line with {text!r} within {within_s} s"
    return found[0]


def publish(cache: Path, key: str) -> None:
    """What a fill's last step does: a complete partial directory renamed to its key."""
    partial = cache / f"{key}{PARTIAL_SUFFIX}"
    partial.mkdir(parents=True, exist_ok=True)
    (partial / "config.json").write_text("{}")
    (partial / COMPLETE_MARKER).write_text("{}")
    os.replace(partial, cache / key)


def test_wait_model_returns_once_the_entry_is_published(tmp_path: Path) -> None:
    key = "s3-models-tiny-0123456789ab"
    proc = wait_model(tmp_path, key)
    try:
        line = first_line_with(proc, "waiting for the model cache fill")
        assert str(tmp_path / key) in line
        assert proc.poll() is None
        publisher = threading.Timer(0.3, publish, (tmp_path, key))
        publisher.start()
        assert proc.wait(timeout=60) == 0
        publisher.join()
    finally:
        proc.kill()
        proc.wait()


def test_wait_model_keeps_waiting_on_a_partial_entry(tmp_path: Path) -> None:
    key = "s3-models-tiny-0123456789ab"
    # A partial directory already holding the marker (the instant before the rename) and an
    # entry directory without one: neither is a published entry.
    partial = tmp_path / f"{key}{PARTIAL_SUFFIX}"
    partial.mkdir()
    (partial / COMPLETE_MARKER).write_text("{}")
    (tmp_path / key).mkdir()
    proc = wait_model(tmp_path, key)
    try:
        first_line_with(proc, "waiting for the model cache fill")
        # Many polls later it is still waiting.
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=2)
    finally:
        proc.kill()
        proc.wait()


def test_a_second_fill_of_the_same_entry_waits_for_the_first_and_fetches_nothing(
    endpoint: str, bucket: str, tmp_path: Path
) -> None:
    """Two services sharing a claim run two fill Jobs for one key: the second waits while the
    first holds the entry's lock (touched as it works), then finds the entry complete."""
    source = f"s3://{bucket}/tiny"
    key = cache_key(source, None)
    lock = tmp_path / f"{key}.lock"
    lock.write_text("another fill\n")  # held and fresh: its mtime is now
    with CuttingProxy(endpoint) as proxy:
        second = subprocess.Popen(
            [*CLI, "fill", "--source", source, "--cache-dir", str(tmp_path)],
            env=env_for(proxy.url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            # The process must still be waiting when this expires (a wait bound to expire).
            with pytest.raises(subprocess.TimeoutExpired):
                second.wait(timeout=5)
            assert not (tmp_path / f"{key}{PARTIAL_SUFFIX}").exists()
            # The first fill publishes the entry and lets go of the lock.
            entry = tmp_path / key
            entry.mkdir()
            (entry / COMPLETE_MARKER).write_text("{}")
            lock.unlink()
            _out, err = second.communicate(timeout=60)
        finally:
            if second.poll() is None:
                second.kill()
        assert second.returncode == 0, err
        assert proxy.requests == 0, "the waiting fill read the bucket"


def test_a_stale_lock_is_taken_over(endpoint: str, bucket: str, tmp_path: Path) -> None:
    """A holder killed with SIGKILL leaves its lock behind: untouched for longer than the
    staleness limit, it is taken over, and the fill completes and releases it."""
    source = f"s3://{bucket}/tiny"
    key = cache_key(source, None)
    lock = tmp_path / f"{key}.lock"
    lock.write_text("a killed fill\n")
    hour_ago = os.stat(lock).st_mtime - 3600
    os.utime(lock, (hour_ago, hour_ago))
    result = run_fill(tmp_path, source, endpoint)
    assert result.returncode == 0, result.stderr
    assert "taking over" in result.stderr
    assert (tmp_path / key / COMPLETE_MARKER).is_file()
    assert not lock.exists()
