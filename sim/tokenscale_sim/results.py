"""What the engine model reports: per-step events, per-request records, advance() totals."""

from __future__ import annotations

from dataclasses import dataclass, field

ReqId = int | str


@dataclass(frozen=True, slots=True)
class FinishedRequest:
    """One completed request, with the latencies vLLM's metrics record."""

    req_id: ReqId
    arrival: float
    scheduled_at: float
    first_token_at: float
    finished_at: float
    prompt_tokens: int
    generated_tokens: int
    finish_reason: str  # "length" (hit max_tokens or max_model_len) or "stop"
    preemptions: int

    @property
    def ttft(self) -> float:
        return self.first_token_at - self.arrival

    @property
    def queue_time(self) -> float:
        return self.scheduled_at - self.arrival

    @property
    def e2e(self) -> float:
        return self.finished_at - self.arrival

    @property
    def mean_itl(self) -> float:
        """vLLM's time per output token: decode time over the tokens after the first."""
        if self.generated_tokens < 2:
            return 0.0
        return (self.finished_at - self.first_token_at) / (self.generated_tokens - 1)


@dataclass(slots=True)
class StepResult:
    start: float
    end: float
    tokens: list[ReqId] = field(default_factory=list)
    first_tokens: list[ReqId] = field(default_factory=list)
    finished: list[FinishedRequest] = field(default_factory=list)
    preempted: list[ReqId] = field(default_factory=list)
    num_scheduled_tokens: int = 0
    prompt_tokens: int = 0  # prompts whose prefill completed this step (vLLM counts them then)

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(slots=True)
class AdvanceResult:
    first_tokens: list[tuple[ReqId, float]] = field(default_factory=list)
    finished: list[FinishedRequest] = field(default_factory=list)
    preempted: list[tuple[ReqId, float]] = field(default_factory=list)
    steps: int = 0
    busy_s: float = 0.0
    prompt_tokens: int = 0
    generation_tokens: int = 0

    def add_step(self, res: StepResult) -> None:
        self.first_tokens.extend((i, res.end) for i in res.first_tokens)
        self.finished.extend(res.finished)
        self.preempted.extend((i, res.start) for i in res.preempted)
        self.steps += 1
        self.busy_s += res.duration
        self.prompt_tokens += res.prompt_tokens
        self.generation_tokens += len(res.tokens)
