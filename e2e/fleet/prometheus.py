"""A real Prometheus server for e2e: scrapes every 5 s the targets the fleet emulators write as
file-based service discovery (`<sd_dir>/*.json`), keeps its TSDB in its own directory, listens on
a free local port, and can be stopped and started again on the same port and data."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from e2e.fleet.lifetime import die_with_parent

CONFIG = """\
global:
  scrape_interval: {interval}
  scrape_timeout: 4s
  evaluation_interval: {interval}
scrape_configs:
  - job_name: tokenscale-workers
    metrics_path: /metrics
    file_sd_configs:
      - files: ["{sd_dir}/*.json"]
        refresh_interval: 5s
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


BUILD_SH = Path(__file__).resolve().parents[1] / "cluster" / "build.sh"


def find_binary() -> str:
    """PROMETHEUS_BIN if set, else the one `make setup` unpacked into the cache (never one that
    happens to be on PATH: a fresh machine has none, and tests must find what set-up installs)."""
    found = os.environ.get("PROMETHEUS_BIN")
    if not found:
        paths = subprocess.run(
            ["bash", str(BUILD_SH), "--print"], capture_output=True, text=True, check=True
        ).stdout
        found = next(
            line.split("=", 1)[1] for line in paths.splitlines() if line.startswith("prometheus=")
        )
    if not Path(found).is_file():
        raise RuntimeError(f"no prometheus binary at {found}: run `make setup`")
    return found


@dataclass
class PrometheusServer:
    work_dir: Path
    binary: str = field(default_factory=find_binary)
    port: int = field(default_factory=free_port)
    scrape_interval: str = "5s"
    proc: subprocess.Popen[bytes] | None = None

    @property
    def sd_dir(self) -> Path:
        return self.work_dir / "sd"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> None:
        self.sd_dir.mkdir(parents=True, exist_ok=True)
        (self.work_dir / "data").mkdir(parents=True, exist_ok=True)
        config = self.work_dir / "prometheus.yml"
        config.write_text(CONFIG.format(interval=self.scrape_interval, sd_dir=self.sd_dir))
        log = (self.work_dir / "prometheus.log").open("ab")
        self.proc = subprocess.Popen(
            [
                self.binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.work_dir / 'data'}",
                "--storage.tsdb.retention.time=2h",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while not self.ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited {self.proc.returncode}: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"prometheus not ready after {timeout_s} s: {self.log_tail()}")
            time.sleep(0.2)

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's result vector."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.load(resp)
        if body.get("status") != "success":
            raise RuntimeError(f"query {promql!r} failed: {body}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def targets(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.url}/api/v1/targets", timeout=10) as resp:
            active: list[dict[str, Any]] = json.load(resp)["data"]["activeTargets"]
        return active

    def log_tail(self, lines: int = 30) -> str:
        path = self.work_dir / "prometheus.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])
