"""Simulator engine: a continuous-batching model of a vLLM replica, and a server around it.

`engine.EngineModel` is the clock-free core (see its module docstring for the API); the benchmark
drives it in virtual time with `advance(until)`, the server in wall time with `step(now)`.
`profile.build_profile(model, gpu, quant, ...)` derives step timing and KV capacity from the
catalog.
"""

from tokenscale_sim.engine import AdvanceResult, EngineModel, FinishedRequest, StepResult
from tokenscale_sim.profile import EngineProfile, InfeasibleProfileError, build_profile

__all__ = [
    "AdvanceResult",
    "EngineModel",
    "EngineProfile",
    "FinishedRequest",
    "InfeasibleProfileError",
    "StepResult",
    "build_profile",
]
