"""Each image installs only what it runs: this checkout's wheels, installed offline and without
their dependencies into the clean per-image environments `make setup` made (each holding one
image's distributions and exactly their declared dependencies), start their entry points, and
the other side is not there to import. A worker module that imports the operator, or an operator
module that needs the simulator or an undeclared dependency, fails here."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tools import ROOT, wheel_venvs

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
DISTRIBUTIONS = {
    "tokenscale_contract": ROOT / "contract",
    "tokenscale_sim": ROOT / "sim",
    "tokenscale_worker": ROOT / "worker_image",
    "tokenscale": ROOT,
}
IMAGES = {
    "operator": ("tokenscale_contract", "tokenscale"),
    "worker": ("tokenscale_contract", "tokenscale_sim", "tokenscale_worker"),
}


def sources(into: Path) -> list[Path]:
    """A copy of each distribution's sources: an in-tree build would leave build/ in the
    checkout."""
    skip = shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    copies = []
    for name, src in DISTRIBUTIONS.items():
        dest = into / name
        if src == ROOT:  # the operator: its pyproject, README and operator/ only
            dest.mkdir()
            shutil.copy(ROOT / "pyproject.toml", dest)
            shutil.copy(ROOT / "README.md", dest)
            shutil.copytree(ROOT / "operator", dest / "operator", ignore=skip)
        else:
            shutil.copytree(src, dest, ignore=skip)
        copies.append(dest)
    return copies


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Build this checkout's four wheels and install each image's into its environment."""
    venvs, dist = wheel_venvs(), tmp_path_factory.mktemp("dist")
    copies = sources(tmp_path_factory.mktemp("src"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "-w", str(dist), *map(str, copies)],
        check=True,
    )  # fmt: skip
    for image, names in IMAGES.items():
        wheels = [str(next(dist.glob(f"{name}-0.1.0-*.whl"))) for name in names]
        subprocess.run(
            [str(venvs / image / "bin" / "pip"), "install", "--quiet", "--no-deps", "--no-index",
             "--force-reinstall", *wheels],
            check=True,
        )  # fmt: skip
    return {image: venvs / image / "bin" for image in IMAGES}


def run(bin_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bin_dir / args[0]), *args[1:]], capture_output=True, text=True, check=False
    )


def importable(bin_dir: Path, module: str) -> bool:
    found = run(bin_dir, "python", "-c", f"import {module}")
    if found.returncode and "ModuleNotFoundError" not in found.stderr:
        pytest.fail(f"importing {module} failed otherwise:\n{found.stderr}")
    return found.returncode == 0


def test_the_operator_image_runs_without_the_worker_or_the_simulator(
    images: dict[str, Path],
) -> None:
    operator = images["operator"]
    for entry in ("tokenscale.handlers.lifecycle", "tokenscale.handlers.autoscale"):
        assert importable(operator, entry), entry
    planned = run(operator, "tokenscale", "plan", "--model", "llama-3.1-8b", "--gpu", "l4-24gb")
    assert planned.returncode == 0, planned.stderr
    assert "l4-24gb" in planned.stdout
    for absent in ("tokenscale_worker", "tokenscale_sim"):
        assert not importable(operator, absent), f"{absent} is in the operator image"
    # The benchmark needs the `bench` extra: the command is not offered here.
    assert "bench" not in run(operator, "tokenscale", "--help").stdout


def test_the_worker_image_runs_without_the_operator(images: dict[str, Path]) -> None:
    worker = images["worker"]
    helped = run(worker, "tokenscale-worker", "serve", "--help")
    assert helped.returncode == 0, helped.stderr
    for entry in ("tokenscale_worker.gateway", "tokenscale_worker.launcher", "tokenscale_sim"):
        assert importable(worker, entry), entry
    for absent in ("tokenscale", "kopf", "kubernetes", "prometheus_api_client"):
        assert not importable(worker, absent), f"{absent} is in the worker image"
