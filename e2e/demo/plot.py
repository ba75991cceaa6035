"""The demo's PNG timeline: offered and observed load, replicas (held, ready, wanted) and the cap,
TTFT and ITL at the percentile against their objectives, and a marker at every decision."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from e2e.demo.view import Frame, Objective, decision_kind

KIND_COLOURS = {"scale-up": "tab:red", "scale-down": "tab:green", "cap": "tab:purple"}


def plot_timeline(
    frames: Sequence[Frame],
    decisions: Sequence[tuple[float, dict[str, Any]]],
    objective: Objective,
    path: Path,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [f.t for f in frames]
    fig, (load, reps, lat) = plt.subplots(3, 1, sharex=True, figsize=(10, 8))
    load.plot(t, [f.offered_rps for f in frames], label="offered (script)", color="tab:gray")
    load.plot(t, [f.arrival_rps for f in frames], label="seen by the operator", color="tab:blue")
    load.set_ylabel("requests/s")
    reps.step(t, [f.replicas for f in frames], where="post", label="replicas", color="tab:blue")
    reps.step(t, [f.ready for f in frames], where="post", label="ready", color="tab:cyan", ls=":")
    reps.step(t, [f.desired for f in frames], where="post", label="wanted", color="tab:orange")
    reps.set_ylabel("replicas")
    cap = reps.twinx()
    cap.step(t, [f.cap for f in frames], where="post", label="cap", color="tab:purple", ls="--")
    cap.set_ylabel("concurrency cap / replica")
    cap.set_ylim(0, max((f.cap or 0 for f in frames), default=1) + 1)
    p = objective.percentile
    lat.plot(t, [f.ttft_s for f in frames], label=f"TTFT p{p} (s)", color="tab:red")
    lat.axhline(objective.ttft_s, color="tab:red", ls="--", lw=0.8, label="TTFT objective")
    lat.plot(t, [_x10(f.itl_s) for f in frames], label=f"ITL p{p} x10 (s)", color="tab:brown")
    lat.axhline(objective.itl_s * 10, color="tab:brown", ls=":", lw=0.8, label="ITL objective x10")
    lat.set_ylabel("seconds")
    lat.set_xlabel("seconds into the scripted day")
    for at, decision in decisions:
        colour = KIND_COLOURS.get(decision_kind(decision))
        if colour:
            for ax in (load, reps, lat):
                ax.axvline(at, color=colour, alpha=0.35, lw=1)
    for ax in (load, reps, lat):
        ax.legend(loc="upper left", fontsize=7)
        ax.grid(alpha=0.3)
    cap.legend(loc="upper right", fontsize=7)
    fig.suptitle("tokenscale demo: calm -> burst -> calm (vertical lines: decisions)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _x10(value: float | None) -> float | None:
    return None if value is None else value * 10
