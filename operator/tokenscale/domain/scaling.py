"""`decide(spec, plan, observation, state, now) -> Decision`: the autoscaler, as a pure function.

Time comes in as `now` (seconds), metrics as an `Observation`, memory as a `ScalerState`; the
result is a frozen `Decision` carrying the new state and a reason in words. The operator's 15 s
loop and the benchmark call this same function (Knative `pkg/autoscaler/scaling/autoscaler.go`
`Scale(now)` style). docs/autoscaling.md walks through it with numbers.

Replica count, held to ITL, TTFT and queueing: the largest of
  rate need        arrival rate / (ITL-feasible per-replica throughput x 0.8 utilization)
                   e.g. 40 req/s / (4.4 req/s x 0.8) = 11.4 -> 12 replicas
  concurrency need (running + queued) / (cap x 0.8): 37 queued + 300 running at cap 36 -> 11.7
  TTFT feedback    TTFT over the objective with a queue and nothing starting:
                   ready x min(2, observed/objective): 6 x 1.4 s / 1.0 s = 8.4 -> 9
  burst margin     max(arrival rate x 1.5, the rate this service's bursts have shown it
                   reaches within a cold start (domain.burst_reserve)) / (throughput with every
                   slot of the cap in force busy): a burst before new replicas are ready meets
                   slower tokens, not a queue
then a tolerance band (scale down only below 90% of the current count), scale-down
stabilization (the highest recommendation of the window; one more than 20% above the present
need is a passed burst and holds only for coldStartSeconds), burst mode (a need of 2x the ready
replicas scales up at once and blocks scale-down for 60 s), no scale-down while requests queue
past the TTFT objective or while the objective is missed with a replica still starting, rate
limits, min/max and the
cluster's schedulable capacity. The learned model corrections are updated only in steady
state: no replica starting and no scale event within the last metrics window.
"""

from __future__ import annotations

import math
from dataclasses import replace

from tokenscale.api.v1alpha1 import InferenceServiceSpec
from tokenscale.domain.burst_reserve import rate_within_noise, remember, reserved_rate
from tokenscale.domain.capacity import Plan
from tokenscale.domain.observation import Decision, Observation, ScalerState
from tokenscale.domain.prefill_wait import prefill_wait_need
from tokenscale.domain.probes import DEFAULT_COLD_START_SECONDS, cold_start_seconds
from tokenscale.domain.scaling_cap import CapChoice, cap_bounds, choose_cap, static_cap
from tokenscale.domain.scaling_constants import CONSTANTS, ScalingConstants
from tokenscale.domain.scaling_model import ServiceModel, service_model
from tokenscale.domain.ttft_objective import in_reach_percentile, ttft_objective

__all__ = ["Decision", "Observation", "ScalerState", "decide"]


def decide(
    spec: InferenceServiceSpec,
    plan: Plan,
    observation: Observation,
    state: ScalerState,
    now: float,
    constants: ScalingConstants = CONSTANTS,
) -> Decision:
    """One autoscaling decision for one service at time `now`. The operator passes the
    constants for its metrics window (`for_window`); the benchmark's sweeps pass others
    (scaling_constants.py says where each value came from)."""
    spec = _with_cold_start(spec, plan)
    obs, scaling, c = observation, spec.scaling, constants
    current = obs.replicas_now()
    if scaling.mode == "off":
        return _off(spec, plan, obs, state, current)
    missing = _missing_metrics(obs, now, c)
    if missing:
        return _hold(spec, plan, obs, state, current, now, missing)
    model = service_model(spec, plan, obs.prompt_tokens, obs.output_tokens)
    rate = obs.arrival_rate or 0.0
    state = replace(state, burst=remember(state.burst, now, rate, _cold_start(spec), c))
    if _steady(spec, obs, state, now, c):
        state = _learn(state, obs, model, c)
    cap = choose_cap(spec, plan, obs, state, now, c)
    need, driver = _need(spec, obs, model, state, cap.cap, c)
    burst_until = state.burst_until if state.burst_until and state.burst_until > now else None
    if need >= c.panic_threshold * max(1, obs.ready_replicas or 0) and need > current:
        burst_until = now + c.burst_hold_s
    target, recs, hold_note = _stabilize(spec, state, current, need, burst_until, now, c)
    blocker = _scale_down_blocker(spec, obs) if target < current else ""
    if blocker:
        target, hold_note = current, f"no scale-down while {blocker}"
    limited, limit_note = _rate_limit(spec, current, target, c)
    final, short = _capacity(obs, limited)
    final, fill_note = _fill_gate(obs, current, final)
    new_state = replace(
        state,
        recommendations=recs,
        concurrency_cap=cap.cap,
        last_scale_at=now if final != current else state.last_scale_at,
        burst_until=burst_until,
        cap_changed_at=now if cap.changed else state.cap_changed_at,
    )
    notes = [n for n in (hold_note, limit_note, short, fill_note) if n]
    if burst_until is not None:
        notes.insert(0, "burst mode")
    reason = _reason(driver, current, final, cap, notes)
    return Decision(
        replicas=final,
        concurrency_cap=cap.cap,
        reason=reason,
        previous_replicas=current,
        applied=scaling.mode == "auto" and (final != current or cap.cap != obs.current_cap),
        mode=scaling.mode,
        state=new_state,
        capacity_limited=bool(short),
        capacity_message=short,
        burst=burst_until is not None,
        desired_unbounded=round(need, 3),
    )


def _with_cold_start(spec: InferenceServiceSpec, plan: Plan) -> InferenceServiceSpec:
    """The spec with coldStartSeconds filled in when the user left it unset (the model cache's
    read plus warm-up, or 120 s): one value for every rule below."""
    if spec.scaling.cold_start_seconds is not None:
        return spec
    scaling = spec.scaling.model_copy(update={"cold_start_seconds": cold_start_seconds(spec, plan)})
    return spec.model_copy(update={"scaling": scaling})


# ---- the need --------------------------------------------------------------------------------


def _steady(
    spec: InferenceServiceSpec,
    obs: Observation,
    state: ScalerState,
    now: float,
    c: ScalingConstants = CONSTANTS,
) -> bool:
    """True when the last metrics window saw one fleet: no replica starting, no scale event.
    A window that spans an overload waiting for new replicas reads a p99 ITL 1.9x the model's
    mean instead of 1.6x; learning from it would size the next minutes for the overload."""
    if _coming(spec, obs) > 0:
        return False
    return state.last_scale_at is None or now - state.last_scale_at >= c.metrics_window_s


def _learn(
    state: ScalerState, obs: Observation, model: ServiceModel, c: ScalingConstants = CONSTANTS
) -> ScalerState:
    """EWMA of observed over modeled service time and ITL. Little's law on the engines: 120
    running at 20 req/s -> 6.0 s per request; the model says 5.0 s at that batch -> ratio 1.2.
    ITL p99 47 ms where the model's mean is 31 ms -> ITL factor 1.5."""
    rate, running, ready = obs.arrival_rate or 0.0, obs.running or 0.0, obs.ready_replicas or 0
    if rate < 0.05 or running < 1.0 or ready < 1:
        return state
    batch, per_rate = running / ready, rate / ready
    s_ratio = _clip((running / rate) / max(1e-6, model.service_s(batch, per_rate)), c)
    service = (1 - c.factor_alpha) * state.service_factor + c.factor_alpha * s_ratio
    itl_factor = state.itl_factor
    if obs.itl_s is not None:
        i_ratio = _clip(obs.itl_s / max(1e-6, model.itl(batch, per_rate)), c)
        itl_factor = (1 - c.factor_alpha) * itl_factor + c.factor_alpha * i_ratio
    return replace(state, service_factor=service, itl_factor=itl_factor)


def _clip(ratio: float, c: ScalingConstants = CONSTANTS) -> float:
    low, high = c.factor_range
    return min(high, max(low, ratio))


def _need(
    spec: InferenceServiceSpec,
    obs: Observation,
    model: ServiceModel,
    state: ScalerState,
    cap: int,
    c: ScalingConstants = CONSTANTS,
) -> tuple[float, str]:
    """Replicas the load needs (a float) and the phrase naming what drove it."""
    need, driver = _rate_need(spec, obs, model, state, cap, c)
    by_conc, conc_driver = _concurrency_need(obs, cap, c)
    if by_conc > need:
        need, driver = by_conc, conc_driver
    boost = _ttft_boost(spec, obs, c)
    if boost > need:
        ttft, slo = obs.ttft_s or 0.0, obs.ttft_objective(spec.slo)
        pct = f"p{spec.slo.percentile:g}"
        queued = obs.waiting or 0.0
        need, driver = boost, f"TTFT {pct} {ttft:.2f} s > {slo:.2f} s with {queued:.0f} queued"
    return need, driver


def _concurrency_need(
    obs: Observation, cap: int, c: ScalingConstants = CONSTANTS
) -> tuple[float, str]:
    """Requests in flight over the cap at 80% utilization: their mean over the window, or the
    count now when it is past twice what the ready replicas hold at that utilization (a burst
    the window's mean would answer only after half a window; Knative's panic threshold).
    Mean 6.9 at cap 4 -> 2.2 replicas; 30 now with 3 ready (2 x 9.6 = 19.2) -> 9.4 at once."""
    per_replica = cap * c.target_utilization
    now = obs.in_flight_now()
    if obs.in_flight_mean is None:  # a reader without the window's average
        return now / per_replica, f"{now:.0f} in flight at cap {cap}"
    mean = obs.in_flight_mean
    panic_over = c.panic_threshold * max(1, obs.ready_replicas or 0) * per_replica
    if now > panic_over and now > mean:
        return now / per_replica, f"{now:.0f} in flight now at cap {cap}"
    return mean / per_replica, f"{mean:.1f} in flight at cap {cap} (window mean)"


def _rate_need(
    spec: InferenceServiceSpec,
    obs: Observation,
    model: ServiceModel,
    state: ScalerState,
    cap: int,
    c: ScalingConstants = CONSTANTS,
) -> tuple[float, str]:
    """The arrival rate over the ITL-feasible throughput at 80% utilization, or over the hard
    throughput with the burst margin and reserve, whichever needs more replicas."""
    rate, surge = _surge_rate(obs, cap, c)
    # Size for the cap the ITL objective allows even when the cap in force is larger (batch
    # tuning off, or not settled yet): cap 120 but ITL-feasible 64 -> 6.7 instead of 7.9 req/s.
    floor = min(cap, spec.scaling.batch.min_concurrency)
    itl_target = spec.slo.itl_seconds / state.itl_factor
    itl_cap = model.largest_cap_within(itl_target, floor, cap, state.service_factor)
    per_replica = model.throughput(min(cap, itl_cap), state.service_factor)
    need = rate / max(1e-9, per_replica * c.target_utilization)
    # Past the ITL-feasible rate tokens slow down a little; past the rate with every slot of
    # the cap busy the queue grows and each request behind it misses TTFT. The hard throughput
    # covers the rate times the burst margin, and the swing this service's rate has shown
    # within a cold start up to its peak (domain.burst_reserve): 3 req/s after on phases at
    # 24 -> 24 / 7.6 req/s per full replica = 3.2 replicas kept for the next one.
    driver = f"{rate:.1f} req/s{surge} at {per_replica:.2f} req/s per replica"
    wait = _prefill_wait(spec, obs, model, rate, c)
    if wait is not None and wait[0] > need:
        need, rho = wait
        pf = model.prefill_s
        driver = f"{rate:.1f} req/s{surge} with prefill at most {rho:.0%} of a replica"
        driver += f" ({pf:.2f} s each)"
    full = model.throughput(cap, state.service_factor)
    noise = rate_within_noise(obs.arrival_rate or 0.0, c.metrics_window_s, c.surge_sigmas)
    covered = max(rate * c.burst_margin, reserved_rate(state.burst, rate, noise))
    by_wall = covered / max(1e-9, full)
    if by_wall > need:
        if covered > rate * c.burst_margin:
            what = f"{rate:.1f} req/s{surge}, reserve for {covered:.1f} (swings of"
            what += f" x{state.burst.rise:.2f} seen within a cold start)"
        else:
            what = f"{rate:.1f} req/s{surge} x {c.burst_margin:g}"
        return by_wall, f"{what} at {full:.2f} req/s per full replica"
    return need, driver


def _surge_rate(obs: Observation, cap: int, c: ScalingConstants = CONSTANTS) -> tuple[float, str]:
    """The arrival rate (the last tick's where it reads a step, `_recent_rate`), or the rate
    the count in flight now implies when a step has filled every slot of the ready replicas
    and that is higher still: the rate over a one-minute window answers a step only
    after most of the window has passed, while the requests in flight grow within one service
    time. A step the ready slots hold is served at once, its tokens a little slower; past them
    requests queue for a replica, and past twice the window's mean count (Knative's panic
    threshold) and surge_sigmas Poisson deviations of it the rate is read as rate x now/mean:
    5 req/s with 130 in flight on a mean of 40 and 3 x 40 slots -> 16.2 req/s. Returns the
    rate and the phrase that says so ("" when not)."""
    rate = obs.arrival_rate or 0.0
    best, why = _recent_rate(obs, c)
    mean = obs.in_flight_mean
    now = obs.in_flight_now()
    if mean is None or mean <= 0.0:
        return best, why
    over = max(c.panic_threshold * mean, mean + c.surge_sigmas * math.sqrt(mean))
    if now <= over or now <= (obs.ready_replicas or 0) * cap or rate * now / mean <= best:
        return best, why
    return rate * now / mean, f" (implied by {now:.0f} in flight now, {mean:.1f} on average)"


def _recent_rate(obs: Observation, c: ScalingConstants = CONSTANTS) -> tuple[float, str]:
    """The window's arrival rate, or the rate over the last recent_rate_window_s when that is
    past it by surge_sigmas Poisson deviations of the count the window's rate expects there:
    a step from 28 to 45 req/s reads 45 a tick after it began, where the one-minute rate reads
    32 and reaches 45 only as the window fills. Only ever higher: a fall waits for the window
    (the tolerance and the stable window decide scale-down, not one tick's lull)."""
    rate = obs.arrival_rate or 0.0
    recent = obs.arrival_rate_recent
    if recent is None:
        return rate, ""
    span = c.recent_rate_window_s
    expected = rate * span
    if recent * span <= expected + c.surge_sigmas * math.sqrt(max(1.0, expected)):
        return rate, ""
    return recent, f" (over the last {span:g} s; {rate:.1f} over the window)"


def _prefill_wait(
    spec: InferenceServiceSpec,
    obs: Observation,
    model: ServiceModel,
    rate: float,
    c: ScalingConstants = CONSTANTS,
) -> tuple[float, float] | None:
    """Replicas keeping the wait behind other prefills within the TTFT objective's tolerance,
    and the prefill share that allows (domain.prefill_wait); None where it does not apply: more
    prompts out of reach than the percentile tolerates, or too little slack. The mean prompt's
    prefill is the roofline's (compute-bound, which it models closely), not corrected by the
    learned service factor: that factor is the whole request's slot time over the model's,
    mostly decode and batching on conversation traffic, and scaling the prefill by it pulled the
    on-off shape 7-21% more GPU-hours for 0.2-0.8 points less (docs/benchmarks.md)."""
    percentile = spec.slo.percentile
    if in_reach_percentile(percentile, obs.out_of_reach_share) != percentile:
        return None  # TTFT is read over the requests in reach (domain.ttft_objective)
    return prefill_wait_need(
        rate,
        model.prefill_s,
        ttft_objective(spec.slo, model.prompt_tokens),
        percentile,
        model.stages,
        c.prefill_wait_min_slack,
    )


def _ttft_boost(
    spec: InferenceServiceSpec, obs: Observation, c: ScalingConstants = CONSTANTS
) -> float:
    """Feedback for what the model misses: a queue and TTFT over the objective while no
    replica is on its way: 6 ready x min(2, 1.4 s / 1.0 s) = 8.4 replicas."""
    ttft, ready, slo = obs.ttft_s, obs.ready_replicas or 0, obs.ttft_objective(spec.slo)
    if ttft is None or ttft <= slo or (obs.waiting or 0.0) < 1.0:
        return 0.0
    if _coming(spec, obs) > 0 or ready == 0:
        return 0.0
    return ready * min(c.max_ttft_boost, ttft / slo)


def _scale_down_blocker(spec: InferenceServiceSpec, obs: Observation) -> str:
    """What makes removing a replica wrong whatever the need says, "" if nothing: TTFT over the
    objective with requests waiting now (an in-flight gauge read between two requests can make
    the need look lower; the queue says users are waiting), or the objective missed while a
    replica the last scale-up asked for is still starting (the need fell, but the replies that
    missed have not yet met the capacity on its way; removing it would throw away the part of
    its cold start already paid and leave the miss to the TTFT feedback, which waits for it)."""
    pct = f"p{spec.slo.percentile:g}"
    ttft, queued, slo = obs.ttft_s, obs.waiting or 0.0, obs.ttft_objective(spec.slo)
    ttft_over = ttft is not None and ttft > slo
    if ttft_over and queued >= 1.0:
        return f"TTFT {pct} {ttft:.2f} s > {slo:.2f} s with {queued:.0f} queued"
    starting = _coming(spec, obs)
    if not starting:
        return ""
    if ttft_over:
        return f"TTFT {pct} {ttft:.2f} s > {slo:.2f} s with {starting} replica(s) starting"
    itl, itl_slo = obs.itl_s, spec.slo.itl_seconds
    if itl is not None and itl > itl_slo:
        ms = f"{itl * 1000:.0f} ms > {itl_slo * 1000:.0f} ms"
        return f"ITL {pct} {ms} with {starting} replica(s) starting"
    return ""


def _cold_start(spec: InferenceServiceSpec) -> float:
    """decide() resolves an unset coldStartSeconds first (`probes.cold_start_seconds`)."""
    stated = spec.scaling.cold_start_seconds
    return DEFAULT_COLD_START_SECONDS if stated is None else stated


def _coming(spec: InferenceServiceSpec, obs: Observation) -> int:
    """Replicas started within coldStartSeconds of the sample: capacity on its way."""
    at = obs.sampled_at or 0.0
    return sum(1 for t in obs.starting_since if at - t < _cold_start(spec))


def _missing_metrics(obs: Observation, now: float, c: ScalingConstants = CONSTANTS) -> str:
    """Why the observation cannot drive a decision, or "". Age first: a Prometheus that stopped
    scraping keeps the last gauges (their own time says how old) while its rates run dry."""
    if obs.sampled_at is None:
        return "metrics missing"
    age = now - obs.sampled_at
    if age > c.stale_after_s:
        return f"metrics stale ({age:.0f} s old)"
    if obs.arrival_rate is None:
        return "metrics missing"
    return ""


# ---- from need to replicas -------------------------------------------------------------------


def _stabilize(
    spec: InferenceServiceSpec,
    state: ScalerState,
    current: int,
    need: float,
    burst_until: float | None,
    now: float,
    c: ScalingConstants = CONSTANTS,
) -> tuple[int, tuple[tuple[float, int], ...], str]:
    """Tolerance band, stabilization window and burst hold. 10 replicas, need 9.3: inside
    the 10% band -> hold 10; need 8.2 -> recommend 9, but a 12 two minutes ago holds 10."""
    desired = math.ceil(need - 1e-9)
    note = ""
    if current * (1 - c.tolerance) <= need < current:
        desired = current
    window = spec.scaling.scale_down_stabilization_seconds
    # A fresh state opens the window at the current count: no scale-down on the first decision.
    past = state.recommendations or ((now, current),)
    recs = tuple((t, r) for t, r in past if now - t < window)
    recs = (*recs, (now, desired))
    target = desired
    if desired < current:
        target = min(current, _window_max(spec, recs, need, now, c))
        if target > desired:
            note = f"stabilizing at {target} (scale-down window {window} s)"
    if burst_until is not None and target < current:
        target, note = current, "no scale-down during a burst"
    return target, recs, note


def _window_max(
    spec: InferenceServiceSpec,
    recs: tuple[tuple[float, int], ...],
    need: float,
    now: float,
    c: ScalingConstants = CONSTANTS,
) -> int:
    """The highest recommendation the window still holds. Within coldStartSeconds every one
    counts; older ones only up to 20% above the present need. Need 8.3 two minutes after a
    burst asked for 12: 12 holds until 120 s after it was made, then ceil(8.3 x 1.2) = 10.
    Keeping a replica nobody needs longer than it takes to start a new one costs more than
    starting it again (ski rental); flapping within 20% keeps the whole window."""
    hold = min(_cold_start(spec), spec.scaling.scale_down_stabilization_seconds)
    recent = max((r for t, r in recs if now - t < hold), default=0)
    ceiling = math.ceil(need * c.passed_burst - 1e-9)
    older = max(min(r, ceiling) for _, r in recs)
    return max(recent, older)


def _rate_limit(
    spec: InferenceServiceSpec, current: int, target: int, c: ScalingConstants = CONSTANTS
) -> tuple[int, str]:
    """maxScaleUpRate 10 from 3 replicas: at most max(30, 3 + 4) = 30; maxScaleDownRate 2
    from 9: at least 4. Bounds come last and win: minReplicas 6 from 0 gives 6."""
    s = spec.scaling
    up = max(math.ceil(current * s.max_scale_up_rate), current + c.min_scale_up_step)
    down = math.floor(current / s.max_scale_down_rate)
    limited = min(max(target, down), up)
    bounded = min(max(limited, s.min_replicas), s.max_replicas)
    note = ""
    if limited != target:
        note = f"rate-limited to {limited} (wanted {target})"
    if bounded != limited:
        word = "minReplicas" if bounded > limited else "maxReplicas"
        note = f"{word} {bounded}" + (f" (wanted {limited})" if bounded < limited else "")
    return bounded, note


def _capacity(obs: Observation, replicas: int) -> tuple[int, str]:
    limit = obs.schedulable_replicas
    if limit is None or replicas <= limit:
        return replicas, ""
    fit = max(0, limit)
    return fit, f"capacity-limited: {replicas} replicas needed, only {fit} can be scheduled"


def _fill_gate(obs: Observation, current: int, replicas: int) -> tuple[int, str]:
    """While the model cache fills, the first replica waits for it and a new one would too:
    no more than one replica, or than those already serving an earlier copy."""
    limit = max(1, current)
    if not obs.model_filling or replicas <= limit:
        return replicas, ""
    return limit, f"model cache filling: {limit} until the copy is complete (wanted {replicas})"


def _reason(driver: str, current: int, final: int, cap: CapChoice, notes: list[str]) -> str:
    verb = "hold" if final == current else f"{current} → {final} replicas"
    if final == current:
        verb = f"hold {current} replicas"
    parts = [f"{driver}; {verb}", *notes]
    if cap.changed:
        parts.append(cap.note)
    return "; ".join(parts)


# ---- modes and holds -------------------------------------------------------------------------


def _held_cap(spec: InferenceServiceSpec, plan: Plan, obs: Observation, state: ScalerState) -> int:
    """The cap in force, or the seed (the KV-cache room) when none was decided yet."""
    if not spec.scaling.batch.enabled:
        return static_cap(spec, plan)
    if state.concurrency_cap is not None:
        floor, ceiling = cap_bounds(spec, plan, obs)
        return max(floor, min(ceiling, state.concurrency_cap))
    return choose_cap(spec, plan, obs, state, 0.0).cap


def _off(
    spec: InferenceServiceSpec, plan: Plan, obs: Observation, state: ScalerState, current: int
) -> Decision:
    s = spec.scaling
    cap = static_cap(spec, plan)
    return Decision(
        replicas=s.min_replicas,
        concurrency_cap=cap,
        reason=f"scaling.mode off: replicas held at minReplicas {s.min_replicas}, cap {cap}",
        previous_replicas=current,
        applied=False,
        mode="off",
        state=state,
    )


def _hold(
    spec: InferenceServiceSpec,
    plan: Plan,
    obs: Observation,
    state: ScalerState,
    current: int,
    now: float,
    why: str,
) -> Decision:
    """No data, no scale-down: keep the count (inside min/max and capacity) and the cap."""
    s = spec.scaling
    bounded = min(max(current, s.min_replicas), s.max_replicas)
    final, short = _capacity(obs, bounded)
    final, fill_note = _fill_gate(obs, current, final)
    notes = "".join(f"; {n}" for n in (short, fill_note) if n)
    cap = _held_cap(spec, plan, obs, state)
    reason = f"{why}; hold {final} replicas{notes}"
    if final != current:
        reason = f"{why}; {current} → {final} replicas to respect bounds{notes}"
    return Decision(
        replicas=final,
        concurrency_cap=cap,
        reason=reason,
        previous_replicas=current,
        applied=s.mode == "auto" and final != current,
        mode=s.mode,
        state=replace(
            state,
            concurrency_cap=cap,
            last_scale_at=now if final != current else state.last_scale_at,
        ),
        capacity_limited=bool(short),
        capacity_message=short,
    )
