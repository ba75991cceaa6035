"""Scaling policies the benchmark compares: the operator's own `decide()`, peak provisioning,
and (in `baselines.py`) the public autoscalers at their released defaults.

Every policy runs behind the same gateway and picks its per-replica concurrency cap from the
same options (`CAP_OPTIONS`): the cap the operator renders for the plan (the KV-cache room for
`engine.expectedSequenceTokens`) or vLLM's own `max_num_seqs` (256 by default), so no policy is
handicapped by a batch size it was not allowed to choose.
"""

from __future__ import annotations

from tokenscale.bench.metrics import Recorder
from tokenscale.bench.scenario import Scenario
from tokenscale.domain import slo_reach
from tokenscale.domain.observation import Observation, ScalerState
from tokenscale.domain.scaling import decide
from tokenscale.domain.scaling_constants import CONSTANTS, ScalingConstants

# "rendered": the static cap the lifecycle handler renders (plan.max_concurrency);
# "vllm": no gateway cap below the engine's own max_num_seqs.
CAP_OPTIONS = ("rendered", "vllm")


def cap_for(scenario: Scenario, option: str) -> int:
    if option == "rendered":
        return scenario.plan.max_concurrency
    if option == "vllm":
        return scenario.plan.max_num_seqs
    raise ValueError(f"cap option {option!r}: choose one of {', '.join(CAP_OPTIONS)}")


class Policy:
    name = "policy"
    config = ""
    # Seconds between decisions; None: the scenario's tick (15 s, the operator's loop).
    tick_s: float | None = None
    cap_option = "vllm"
    # The longest prompt the policy knows to be in reach of the TTFT objective: TTFT is then
    # read over the requests in reach (the operator's reading); None: over every request.
    reach_limit: int | None = None

    def initial_cap(self, scenario: Scenario) -> int:
        return cap_for(scenario, self.cap_option)

    def decide(self, now: float, obs: Observation, rec: Recorder) -> tuple[int, int | None]:
        """(replicas, concurrency cap or None to keep it)."""
        raise NotImplementedError


class Tokenscale(Policy):
    name = "tokenscale"

    def __init__(self, scenario: Scenario, constants: ScalingConstants = CONSTANTS) -> None:
        self.spec = scenario.spec()
        self.plan = scenario.plan
        self.state = ScalerState()
        self.constants = constants
        self.config = "defaults" if scenario.batch_tuning else "batch tuning off"
        if constants != CONSTANTS:  # the benchmark's utilization sweep
            self.config = f"utilization target {constants.target_utilization:g}"
        self.reasons: list[tuple[float, str]] = []
        # As the operator's tick: from the plan's roofline, not the simulator's profile.
        longest = slo_reach.longest_prompt_within(self.spec, self.plan)
        self.reach_limit = longest if longest < self.spec.model.max_model_len else None

    def initial_cap(self, scenario: Scenario) -> int:
        return self.plan.max_concurrency

    def decide(self, now: float, obs: Observation, rec: Recorder) -> tuple[int, int | None]:
        d = decide(self.spec, self.plan, obs, self.state, now, self.constants)
        self.state = d.state
        if d.replicas != d.previous_replicas:
            self.reasons.append((now, d.reason))
        return d.replicas, d.concurrency_cap


class Static(Policy):
    name = "static"

    def __init__(self, replicas: int, label: str = "", cap_option: str = "vllm") -> None:
        self.replicas = replicas
        self.config = label or f"{replicas} replicas"
        self.cap_option = cap_option

    def decide(self, now: float, obs: Observation, rec: Recorder) -> tuple[int, int | None]:
        return self.replicas, None
