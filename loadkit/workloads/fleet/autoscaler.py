"""Predictive autoscaler policy for the agent fleet: a pure function over plain data.

Why it is pure: the policy is the part of the fleet most likely to be wrong in subtle
ways (flapping, lagging, leaving the bounds), and those are only found by running it over
thousands of observation sequences. So :func:`decide` takes the configuration, the state
carried from the previous call and one :class:`Observation`, and returns the new state
and a :class:`Decision`. It reads no clock, touches no Redis, spawns nothing; the fleet
manager owns all of that and calls ``decide`` periodically with the time as data.

How it decides:

1. The arrival rate of the last interval is ``arrivals / (t - last_t)``.
2. Holt's linear trend smoothing turns those noisy rates into a level (tasks/s) and a
   trend (tasks/s per second). Intervals may be irregular: the previous level is
   projected forward by ``trend * dt`` before it is blended with the new rate, and the
   trend is updated with the level's change *per second*. ``alpha`` and ``beta`` are
   the weights of one ``smoothing_interval_s`` of data, and a shorter interval gets
   proportionally less weight, so calling the policy ten times a second smooths as much
   as calling it once a second instead of making it ten times as twitchy.
3. The forecast looks ``horizon_s`` ahead (the time a new agent needs to be useful):
   ``max(0, level + trend * horizon_s)``. The trend term is what makes the fleet grow
   *before* a rising load arrives rather than after.
4. Agents needed: enough to serve the forecast at ``target_utilization`` plus enough to
   drain the current queue within ``drain_time_s``. The queue term reacts within one
   observation to a sudden burst, which smoothing alone would be slow to see.
5. The count moves towards that target only if the cooldowns and the hysteresis band
   allow it. Scaling up is cheap and late agents cost latency, so its cooldown is short;
   scaling down is delayed longer and needs a clear margin, so noise on a steady load
   does not make the fleet flap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "AutoscalerConfig",
    "AutoscalerState",
    "Decision",
    "Observation",
    "decide",
]

# A raw agent count this close above an integer is treated as that integer, so float
# noise such as 7.000000000001 does not cost a whole extra agent.
_CEIL_SLACK = 1e-9
# Times are floats, so a caller deciding every 0.2 s with a 0.2 s cooldown sees gaps like
# 0.19999999999999996 s; this much slack keeps such a cooldown from skipping a tick.
_TIME_SLACK = 1e-9


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_int(name: str, value: object, minimum: int) -> None:
    if not _is_int(value):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:  # type: ignore[operator]
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")


def _check_real(name: str, value: object) -> float:
    if not _is_real(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)  # type: ignore[arg-type]


@dataclass(frozen=True)
class AutoscalerConfig:
    """Tuning of the policy; every field is checked when the config is built.

    ``smoothing_interval_s`` (an addition to the original interface) is the interval
    that ``alpha`` and ``beta`` refer to: an observation covering ``dt`` seconds gets the
    weight ``1 - (1 - alpha) ** (dt / smoothing_interval_s)``. ``None`` applies ``alpha``
    and ``beta`` per observation whatever its length, which is plain textbook Holt and
    makes the trend very noisy when observations are frequent.
    """

    min_agents: int = 1
    max_agents: int = 10_000
    service_time_s: float = 0.05
    target_utilization: float = 0.7
    alpha: float = 0.5
    beta: float = 0.3
    horizon_s: float = 1.0
    drain_time_s: float = 1.0
    scale_up_cooldown_s: float = 0.2
    scale_down_cooldown_s: float = 2.0
    hysteresis: float = 0.15
    max_step_up: int | None = None
    smoothing_interval_s: float | None = 1.0

    def __post_init__(self) -> None:
        _check_int("min_agents", self.min_agents, 0)
        _check_int("max_agents", self.max_agents, 1)
        if self.min_agents > self.max_agents:
            raise ValueError(
                f"min_agents ({self.min_agents}) must not exceed max_agents ({self.max_agents})"
            )
        if _check_real("service_time_s", self.service_time_s) <= 0:
            raise ValueError(f"service_time_s must be > 0, got {self.service_time_s!r}")
        utilization = _check_real("target_utilization", self.target_utilization)
        if not 0 < utilization <= 1:
            raise ValueError(f"target_utilization must be in (0, 1], got {utilization!r}")
        for name in ("alpha", "beta"):
            weight = _check_real(name, getattr(self, name))
            if not 0 < weight <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {weight!r}")
        if _check_real("horizon_s", self.horizon_s) < 0:
            raise ValueError(f"horizon_s must be >= 0, got {self.horizon_s!r}")
        if _check_real("drain_time_s", self.drain_time_s) <= 0:
            raise ValueError(f"drain_time_s must be > 0, got {self.drain_time_s!r}")
        for name in ("scale_up_cooldown_s", "scale_down_cooldown_s"):
            if _check_real(name, getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        hysteresis = _check_real("hysteresis", self.hysteresis)
        if not 0 <= hysteresis < 1:
            raise ValueError(f"hysteresis must be in [0, 1), got {hysteresis!r}")
        if self.max_step_up is not None:
            _check_int("max_step_up", self.max_step_up, 1)
        if (
            self.smoothing_interval_s is not None
            and _check_real("smoothing_interval_s", self.smoothing_interval_s) <= 0
        ):
            raise ValueError(
                f"smoothing_interval_s must be > 0 or None, got {self.smoothing_interval_s!r}"
            )


@dataclass(frozen=True)
class Observation:
    """What the fleet manager saw at time ``t`` (seconds on a monotonic clock).

    ``current_agents`` should count agents that are running *or already being started*:
    the policy compares its target with this number, so an agent still booting must not
    look missing, or the policy would ask for it twice. ``busy_agents`` is informational
    (it travels with the observation for reports) and does not steer the decision: the
    arrival rate and the queue already say how much work there is.
    """

    t: float
    queue_depth: int
    arrivals: int
    current_agents: int
    busy_agents: int = 0

    def __post_init__(self) -> None:
        _check_real("t", self.t)
        for name in ("queue_depth", "arrivals", "current_agents", "busy_agents"):
            _check_int(name, getattr(self, name), 0)


@dataclass(frozen=True)
class AutoscalerState:
    """What one call of :func:`decide` hands to the next; start from ``AutoscalerState()``.

    ``level`` stays ``None`` until two observations have given one interval to measure.
    ``last_change_t`` is when a decision last differed from the observed count, which is
    what the cooldowns count from; ``desired`` is the last decision, kept for callers.
    """

    level: float | None = None
    trend: float = 0.0
    last_t: float | None = None
    last_change_t: float | None = None
    desired: int | None = None


@dataclass(frozen=True)
class Decision:
    """The agent count to run, and enough of the reasoning to log or chart it.

    ``reason`` is one of ``"scale_up"``, ``"scale_down"``, ``"hold"`` (already at the
    target), ``"cooldown"`` (the target differs but a change was made too recently),
    ``"hysteresis"`` (the target is lower, but not by enough to be worth a change) and
    ``"bounds"`` (the observed count was outside ``[min_agents, max_agents]`` and is
    being pulled back inside).
    """

    desired: int
    forecast_rate: float
    raw_desired: float
    reason: str


def _clamp(config: AutoscalerConfig, count: int) -> int:
    return max(config.min_agents, min(config.max_agents, count))


def _weight(weight: float, dt: float, interval: float | None) -> float:
    """Weight of an observation covering ``dt`` seconds, given ``weight`` per interval."""
    if interval is None or weight >= 1.0:
        return weight
    # 1 - (1 - w) ** (dt / interval), computed without losing precision for small dt.
    return -math.expm1(dt / interval * math.log1p(-weight))


def _smooth(
    config: AutoscalerConfig, state: AutoscalerState, rate: float, dt: float
) -> tuple[float, float]:
    """One step of Holt's linear trend smoothing over an interval of ``dt`` seconds."""
    if state.level is None:
        return rate, 0.0
    alpha = _weight(config.alpha, dt, config.smoothing_interval_s)
    beta = _weight(config.beta, dt, config.smoothing_interval_s)
    projected = state.level + state.trend * dt
    # A rate cannot be negative; letting the level sink below zero after the load stops
    # would only delay the reaction when it comes back.
    level = max(0.0, alpha * rate + (1.0 - alpha) * projected)
    trend = beta * (level - state.level) / dt + (1.0 - beta) * state.trend
    return level, trend


def _target(config: AutoscalerConfig, raw: float) -> int:
    if raw >= config.max_agents:
        return config.max_agents
    return _clamp(config, math.ceil(raw - _CEIL_SLACK))


def decide(
    config: AutoscalerConfig, state: AutoscalerState, obs: Observation
) -> tuple[AutoscalerState, Decision]:
    """Fold ``obs`` into ``state`` and decide how many agents the fleet should run.

    The first observation only records the time (one point measures no rate) and holds
    the observed count, pulled inside the bounds. Raises :class:`ValueError` when
    ``obs.t`` is not later than the previous observation's: a rate over a zero or
    negative interval means the caller's clock or bookkeeping is broken.
    """
    current = obs.current_agents
    base = _clamp(config, current)
    out_of_bounds = base != current

    if state.last_t is None:
        last_change_t = obs.t if out_of_bounds else state.last_change_t
        new_state = AutoscalerState(
            level=None, trend=0.0, last_t=obs.t, last_change_t=last_change_t, desired=base
        )
        reason = "bounds" if out_of_bounds else "hold"
        return new_state, Decision(base, 0.0, float(current), reason)

    dt = obs.t - state.last_t
    if not dt > 0:
        raise ValueError(
            f"observation time must increase: got t={obs.t!r} after t={state.last_t!r}"
        )
    rate = obs.arrivals / dt
    level, trend = _smooth(config, state, rate, dt)
    if not (math.isfinite(rate) and math.isfinite(level) and math.isfinite(trend)):
        raise ValueError(f"observation interval of {dt!r} s is too short to measure a rate")

    forecast = max(0.0, level + trend * config.horizon_s)
    raw = (
        forecast * config.service_time_s / config.target_utilization
        + obs.queue_depth * config.service_time_s / config.drain_time_s
    )
    target = _target(config, raw)

    since_change = math.inf if state.last_change_t is None else obs.t - state.last_change_t
    desired = base
    if target > base:
        if since_change + _TIME_SLACK >= config.scale_up_cooldown_s:
            step_cap = math.inf if config.max_step_up is None else base + config.max_step_up
            desired = int(min(target, step_cap))
            reason = "scale_up"
        else:
            reason = "cooldown"
    elif target < base:
        if since_change + _TIME_SLACK < config.scale_down_cooldown_s:
            reason = "cooldown"
        elif target >= base * (1.0 - config.hysteresis):
            reason = "hysteresis"
        else:
            desired = target
            reason = "scale_down"
    else:
        reason = "hold"
    if desired == base and out_of_bounds:
        reason = "bounds"

    last_change_t = obs.t if desired != current else state.last_change_t
    new_state = AutoscalerState(
        level=level, trend=trend, last_t=obs.t, last_change_t=last_change_t, desired=desired
    )
    return new_state, Decision(desired, forecast, raw, reason)
