"""The tiny model `make setup` builds: its files match the checked-in sha256 manifest, and a copy
with one changed byte is reported as changed (so the set-up step rebuilds it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from tests.tools import TINY_MODEL_PY, tiny_model, vllm_python

MANIFEST = TINY_MODEL_PY.with_name("tiny_model.sha256.json")


def check(model_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TOKENSCALE_TINY_MODEL": str(model_dir)}
    return subprocess.run(
        [vllm_python(), str(TINY_MODEL_PY), "--check"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def test_cached_model_matches_the_manifest(tmp_path: Path) -> None:
    built = Path(tiny_model())
    files = json.loads(MANIFEST.read_text())["files"]
    assert sorted(p.name for p in built.iterdir()) == sorted(files)
    copy = tmp_path / "tiny-llama"
    shutil.copytree(built, copy)
    assert check(copy).returncode == 0
    with (copy / "config.json").open("a") as f:
        f.write(" ")
    changed = check(copy)
    assert changed.returncode == 1
    assert "missing or changed" in changed.stderr


def test_a_missing_model_is_reported(tmp_path: Path) -> None:
    missing = check(tmp_path / "nowhere")
    assert missing.returncode == 1
    assert "run: make setup" in missing.stderr
