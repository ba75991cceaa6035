"""The tuning-file watcher: survives every transient error and refuses unbounded values."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path

import pytest

from tokenscale_worker.tuning import MAX_TUNING_BYTES, Tuning, TuningWatcher, parse_tuning

START = Tuning(8, 32)
CAP_RANGE = "concurrencyCap must be an integer from 1 to 65536"
QUEUE_RANGE = "queueLimit must be an integer from 0 to 1048576"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"concurrencyCap": 1e18}', f"{CAP_RANGE}, got 1e+18"),
        ('{"concurrencyCap": 1000000000000000000}', f"{CAP_RANGE}, got 1000000000000000000"),
        ('{"concurrencyCap": 65537}', f"{CAP_RANGE}, got 65537"),
        ('{"concurrencyCap": 0}', f"{CAP_RANGE}, got 0"),
        ('{"concurrencyCap": -3}', f"{CAP_RANGE}, got -3"),
        ('{"concurrencyCap": NaN}', f"{CAP_RANGE}, got nan"),
        ('{"concurrencyCap": Infinity}', f"{CAP_RANGE}, got inf"),
        ('{"concurrencyCap": -Infinity}', f"{CAP_RANGE}, got -inf"),
        ('{"concurrencyCap": true}', f"{CAP_RANGE}, got True"),
        ('{"concurrencyCap": "24"}', f"{CAP_RANGE}, got '24'"),
        ('{"concurrencyCap": 24.0}', f"{CAP_RANGE}, got 24.0"),
        ('{"concurrencyCap": 24.5}', f"{CAP_RANGE}, got 24.5"),
        ('{"concurrencyCap": null}', f"{CAP_RANGE}, got None"),
        ('{"concurrencyCap": [24]}', f"{CAP_RANGE}, got [24]"),
        ('{"concurrencyCap": {"v": 24}}', f"{CAP_RANGE}, got {{'v': 24}}"),
        ('{"concurrencyCap": ' + "9" * 40 + "}", f"{CAP_RANGE}, got a huge int"),
        ('{"queueLimit": -1}', f"{QUEUE_RANGE}, got -1"),
        ('{"queueLimit": 1e18}', f"{QUEUE_RANGE}, got 1e+18"),
        ('{"queueLimit": 2000000}', f"{QUEUE_RANGE}, got 2000000"),
        ('{"queueLimit": false}', f"{QUEUE_RANGE}, got False"),
        ('{"concurrencyCap": 2, "concurrencyCap": 3}',
         "not a tuning document: key 'concurrencyCap' appears twice"),
        ("[24]", 'must be a JSON object such as {"concurrencyCap": 24}'),
        ("24", 'must be a JSON object such as {"concurrencyCap": 24}'),
        ("null", 'must be a JSON object such as {"concurrencyCap": 24}'),
        ('{"concurrencyCap": 2', "not JSON: Expecting ',' delimiter at line 1"),
        ("", "not JSON: Expecting value at line 1"),
        ("[" * 100_000 + "]" * 100_000, "not a tuning document: nested too deeply"),
    ],
)  # fmt: skip
def test_bad_values_are_refused_with_key_and_range(text: str, message: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_tuning(text, START)
    assert str(err.value) == message


def test_huge_integer_literal_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^not a tuning document: Exceeds the limit"):
        parse_tuning('{"concurrencyCap": ' + "9" * 5000 + "}", START)


def test_bounds_are_inclusive_and_missing_keys_keep_values() -> None:
    assert parse_tuning('{"concurrencyCap": 65536, "queueLimit": 0}', START) == Tuning(65536, 0)
    assert parse_tuning('{"queueLimit": 1048576}', START) == Tuning(8, 1048576)
    assert parse_tuning("{}", START) == START


def test_unknown_keys_are_logged_not_silent(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert parse_tuning('{"concurrencycap": 2, "concurrencyCap": 4}', START) == Tuning(4, 32)
    assert "tuning file: ignoring unknown keys 'concurrencycap'" in caplog.text


class Applied:
    def __init__(self) -> None:
        self.values: list[Tuning] = []

    def __call__(self, tuning: Tuning) -> None:
        self.values.append(tuning)


def write(path: Path, cap: int) -> None:
    path.write_text(json.dumps({"concurrencyCap": cap}))


def test_watcher_survives_every_transient_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Each bad state is logged and kept out; the next good file still applies."""
    conf = tmp_path / "tuning"
    conf.mkdir()
    path = conf / "tuning.json"
    applied = Applied()
    w = TuningWatcher(str(path), START, applied)
    caplog.set_level(logging.WARNING)
    assert not w.poll_once()  # missing: defaults stay, nothing logged
    write(path, 4)
    assert w.poll_once() and applied.values == [Tuning(4, 32)]

    def recovers(cap: int) -> None:
        if path.is_dir():
            path.rmdir()
        write(path, cap)
        assert w.poll_once(), cap
        assert applied.values[-1] == Tuning(cap, 32)

    path.write_text('{"concurrencyCap": ')  # half-written
    assert not w.poll_once()
    recovers(5)
    path.unlink()
    path.mkdir()  # the file replaced by a directory
    assert not w.poll_once()
    assert "cannot read it (Is a directory)" in caplog.text
    recovers(6)
    path.write_bytes(b'{"concurrencyCap": \xff}')  # not UTF-8
    assert not w.poll_once()
    recovers(7)
    path.write_text(" " * (MAX_TUNING_BYTES + 1))
    assert not w.poll_once()
    assert f"larger than {MAX_TUNING_BYTES} bytes" in caplog.text
    recovers(8)
    # A path component turned into a file: stat raises NotADirectoryError.
    os.replace(conf, tmp_path / "moved")
    conf.write_text("not a directory")
    assert not w.poll_once()
    assert "cannot stat it (Not a directory)" in caplog.text
    conf.unlink()
    os.replace(tmp_path / "moved", conf)
    write(path, 9)
    assert w.poll_once() and applied.values[-1] == Tuning(9, 32)
    assert w.current == Tuning(9, 32)


def test_watcher_retries_a_file_it_could_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PermissionError cannot be produced for root by chmod, so open() is made to raise it once;
    the file is unchanged afterwards, and it must still be read on the next poll."""
    path = tmp_path / "tuning.json"
    write(path, 3)
    applied = Applied()
    w = TuningWatcher(str(path), START, applied)
    real_open = open
    calls = {"n": 0}

    def denied_once(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 1:
            raise PermissionError(13, "Permission denied")
        return real_open(*args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr("builtins.open", denied_once)
    assert not w.poll_once()
    assert w.poll_once() and applied.values == [Tuning(3, 32)]


async def test_run_loop_survives_an_unexpected_error(tmp_path: Path) -> None:
    path = tmp_path / "tuning.json"
    seen: list[Tuning] = []

    def apply(t: Tuning) -> None:
        seen.append(t)
        if len(seen) == 1:
            raise RuntimeError("a bug in apply")

    w = TuningWatcher(str(path), START, apply, interval_s=0.01)
    task = asyncio.create_task(w.run())
    try:
        write(path, 2)
        for _ in range(500):
            if seen:
                break
            await asyncio.sleep(0.01)
        write(path, 11)
        path.touch()
        for _ in range(500):
            if seen[-1] == Tuning(11, 32):
                break
            await asyncio.sleep(0.01)
        assert seen[-1] == Tuning(11, 32)
        assert not task.done()
    finally:
        task.cancel()
