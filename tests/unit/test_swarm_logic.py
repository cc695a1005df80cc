"""Pure parts of the swarm: key naming, message codec, pacing, the election state
machine and configuration checks. No Redis needed."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loadkit.common.errors import UsageError
from loadkit.workloads.swarm.config import SwarmConfig
from loadkit.workloads.swarm.election import RENEW_FRACTION, Candidacy
from loadkit.workloads.swarm.keys import SwarmKeys
from loadkit.workloads.swarm.messaging import decode, due_count, encode, scheduled_ns

MS = 1_000_000


def _slot_tag(key: str) -> str:
    """The part of a key Redis Cluster hashes: the first {...} with content."""
    start = key.index("{")
    return key[start + 1 : key.index("}", start)]


def test_every_key_of_a_swarm_shares_its_hash_tag_and_runs_do_not_collide() -> None:
    a, b = SwarmKeys("runA", 7), SwarmKeys("runB", 7)
    keys = [a.stream, a.state, a.lease, a.epoch, a.members, a.seen(3)]
    assert {_slot_tag(k) for k in keys} == {"swarm:7"}
    assert set(keys).isdisjoint({b.stream, b.state, b.lease, b.epoch, b.members, b.seen(3)})


@pytest.mark.parametrize("run", ["", "a b", "x{y", "a:b"])
def test_bad_run_names_are_refused(run: str) -> None:
    with pytest.raises(ValueError):
        SwarmKeys(run, 0)


@given(st.integers(0, 10**6), st.integers(0, 2**40), st.integers(0, 2**62))
def test_message_codec_round_trips(p: int, s: int, t: int) -> None:
    assert decode(encode(p, s, t).encode()) == (p, s, t)


@given(st.floats(1, 1e6), st.integers(0, 10**10), st.integers(1, 10**10))
def test_pacing_never_runs_ahead_of_the_schedule(rate: float, elapsed: int, length: int) -> None:
    start = 10**9
    n = due_count(start, rate, start + elapsed, start + length)
    assert n >= 0
    assert n <= rate * min(elapsed, length) / 1e9 + 1e-6
    if n:  # the last message counted as due was scheduled no later than now
        assert scheduled_ns(start, rate, n - 1) <= start + elapsed


def test_a_refused_candidate_waits_for_the_lease_to_end() -> None:
    c = Candidacy(SwarmKeys("r", 0), "m1", ttl_ms=300)
    assert c.action(0) == "acquire"
    assert c.on_reply("acquire", [0, 120], sent_ns=0, now_ns=5 * MS) is False
    assert not c.leading
    assert c.action(100 * MS) is None
    assert c.action(126 * MS) == "acquire"


def test_a_leader_renews_early_and_steps_down_when_it_cannot() -> None:
    c = Candidacy(SwarmKeys("r", 0), "m1", ttl_ms=300)
    assert c.on_reply("acquire", [4, 300], sent_ns=0, now_ns=MS) is True
    assert c.leading and c.token == 4
    assert c.action(50 * MS) is None
    assert c.action(300 * MS // RENEW_FRACTION) == "renew"
    # No renewal got through: at the end of the lease it no longer believes it leads.
    assert c.action(300 * MS) == "acquire"
    assert not c.leading


def test_a_refused_renewal_ends_leadership_and_a_retry_keeps_the_token() -> None:
    c = Candidacy(SwarmKeys("r", 0), "m1", ttl_ms=300)
    c.on_reply("acquire", [4, 300], sent_ns=0, now_ns=MS)
    # A retried acquire answered with the same token is not a new grant.
    assert c.on_reply("acquire", [4, 250], sent_ns=2 * MS, now_ns=3 * MS) is False
    assert c.granted_ns == [MS]
    c.on_reply("renew", 0, sent_ns=100 * MS, now_ns=101 * MS)
    assert not c.leading
    assert c.action(101 * MS) == "acquire"


def test_a_vacancy_hint_only_speeds_up_a_waiting_candidate() -> None:
    c = Candidacy(SwarmKeys("r", 0), "m1", ttl_ms=300)
    c.on_reply("acquire", [0, 250], sent_ns=0, now_ns=0)
    c.hint_vacant(10 * MS)
    assert c.action(10 * MS) == "acquire"


@pytest.mark.parametrize(
    ("field", "value"),
    [("swarms", 0), ("members", 0), ("coordinators", 0), ("lease_ms", 5), ("run", "a b")],
)
def test_bad_configuration_is_a_usage_error(field: str, value: object) -> None:
    kwargs = {"url": "redis://127.0.0.1:1/0", "run": "r", field: value}
    with pytest.raises(UsageError):
        SwarmConfig(**kwargs)  # type: ignore[arg-type]


def test_members_are_spread_over_coordinators() -> None:
    cfg = SwarmConfig(url="redis://127.0.0.1:1/0", run="r", members=5, coordinators=2)
    assert cfg.members_of(0) == ["m0", "m2", "m4"]
    assert cfg.members_of(1) == ["m1", "m3"]


class _LeaseModel:
    """The lease semantics of the acquire/renew scripts, on a simulated clock."""

    def __init__(self, ttl_ns: int) -> None:
        self.ttl_ns = ttl_ns
        self.holder: str | None = None
        self.expires = 0
        self.epoch = 0

    def owner(self, t: int) -> str | None:
        return self.holder if t < self.expires else None

    def handle(self, c: Candidacy, action: str, t: int) -> object:
        if action == "acquire":
            if self.owner(t) is None:
                self.epoch += 1
                self.holder, self.expires = c.holder, t + self.ttl_ns
                return [self.epoch, self.ttl_ns // MS]
            if self.holder == c.holder:
                return [self.epoch, (self.expires - t) // MS]
            return [0, (self.expires - t) // MS]
        ok = self.owner(t) == c.holder and c.token == self.epoch
        if ok:
            self.expires = t + self.ttl_ns
        return int(ok)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 2),  # which candidate acts
            st.integers(0, 400),  # ms before it acts (a pause when large)
            st.integers(0, 60),  # ms request -> Redis
            st.integers(0, 60),  # ms Redis -> reply
        ),
        max_size=60,
    )
)
def test_a_candidate_never_believes_in_a_lease_redis_does_not_grant_it(steps: list) -> None:
    """Whatever the delays and pauses, while a candidate counts itself leader (before its
    own conservative expiry) Redis does hold the lease for it - and tokens only grow."""
    ttl_ms = 100
    model = _LeaseModel(ttl_ms * MS)
    cands = [Candidacy(SwarmKeys("r", 0), f"m{i}", ttl_ms) for i in range(3)]
    t = 0
    tokens: list[int] = []

    def check(at: int) -> None:
        for c in cands:
            if c.leading and at < c.valid_until_ns:
                assert model.owner(at) == c.holder and model.epoch == c.token

    for who, gap, up, down in steps:
        t += gap * MS
        c = cands[who]
        action = c.action(t)
        check(t)
        if action is None:
            continue
        processed, received = t + up * MS, t + (up + down) * MS
        check(processed)
        reply = model.handle(c, action, processed)
        check(received)
        if c.on_reply(action, reply, sent_ns=t, now_ns=received):
            tokens.append(c.token)
        t = received
        check(t)
    assert tokens == sorted(set(tokens))
