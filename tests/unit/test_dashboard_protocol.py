"""Pure parts of the dashboard: wire protocol, access rules, board diffs, simulator."""

from __future__ import annotations

import json
import random

import pytest
from helpers import REPORTED_METRICS
from hypothesis import given
from hypothesis import strategies as st

from loadkit.common.errors import UsageError
from loadkit.workloads.dashboard import protocol
from loadkit.workloads.dashboard.board import AgentBoard, BoardView, decode_slots, encode_slots
from loadkit.workloads.dashboard.loadclient import board_digest, decode
from loadkit.workloads.dashboard.protocol import GapTracker, Header, ProtocolViolation
from loadkit.workloads.dashboard.publisher import BoardPublisher
from loadkit.workloads.dashboard.sources import SimulatedFleet, Tick
from loadkit.workloads.dashboard.workload import bottlenecks, targets

states = st.sampled_from(["idle", "busy", "new", "dead"])
agent_ids = st.text("abcdef0123456789-", min_size=1, max_size=8)


@given(
    seq=st.integers(0, 2**40),
    ts=st.floats(0, 2e12, allow_nan=False),
    body=st.dictionaries(st.sampled_from(["v", "changed", "x"]), st.integers()),
)
def test_encode_puts_a_header_peek_can_read(seq: int, ts: float, body: dict) -> None:
    message = protocol.encode("update", seq, ts, "ab12cd", body)
    decoded = json.loads(message)
    header = protocol.peek_header(message)
    assert header == Header("update", seq, decoded["ts"], "ab12cd")
    assert protocol.peek_header(message.encode()) == header
    assert abs(decoded["ts"] - ts) <= 0.0005 + ts * 1e-15
    assert {k: decoded[k] for k in body} == body


def test_peek_header_rejects_other_shapes() -> None:
    assert protocol.peek_header('{"seq":1}') is None
    assert protocol.peek_header("not json") is None


@pytest.mark.parametrize(
    ("message", "code"),
    [
        (b"\x00\x01", protocol.CLOSE_UNSUPPORTED_DATA),
        ("{nope", protocol.CLOSE_POLICY_VIOLATION),
        ("[1, 2]", protocol.CLOSE_POLICY_VIOLATION),
        ('{"type": "delete_everything"}', protocol.CLOSE_POLICY_VIOLATION),
    ],
)
def test_bad_client_messages_carry_their_close_code(message: str | bytes, code: int) -> None:
    with pytest.raises(ProtocolViolation) as info:
        protocol.parse_client_message(message)
    assert info.value.code == code


def test_good_client_messages() -> None:
    assert protocol.parse_client_message('{"type":"resync"}') == "resync"
    assert protocol.parse_client_message('{"type": "ping", "extra": 1}') == "ping"


def test_gap_tracker_counts_gaps_but_not_reconnects() -> None:
    g = GapTracker()
    for seq in (5, 6, 7, 10, 11):  # 8 and 9 missed
        g.see(Header("update", seq, 0.0, "a"))
    assert g.missed == 2
    g.see(Header("update", 11, 0.0, "a"))  # a duplicate or pong is no gap
    assert g.missed == 2
    g.reset()  # reconnect: whatever happened meanwhile is explained
    g.see(Header("snapshot", 40, 0.0, "a"))
    g.see(Header("update", 41, 0.0, "a"))
    g.see(Header("update", 1, 0.0, "b"))  # a restarted server starts over
    g.see(Header("update", 3, 0.0, "b"))
    assert g.missed == 3
    assert g.received == 10


def test_etag_and_if_none_match() -> None:
    tag = protocol.etag("ab", 7)
    assert protocol.not_modified(tag, tag)
    assert protocol.not_modified(f'"x-1", {tag}', tag)
    assert protocol.not_modified(f"W/{tag}", tag)
    assert protocol.not_modified("*", tag)
    assert not protocol.not_modified(protocol.etag("ab", 6), tag)
    assert not protocol.not_modified(None, tag)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.4.5", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("example.org", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert protocol.is_loopback(host) is loopback


def test_tokens() -> None:
    assert protocol.token_from("/ws?token=abc", {}) == "abc"
    assert protocol.token_from("/api/snapshot", {"Authorization": "Bearer xyz"}) == "xyz"
    assert protocol.token_from("/", {}) is None
    assert protocol.token_ok(None, None)  # no token configured: loopback only, open
    assert protocol.token_ok("s3cret", "s3cret")
    assert not protocol.token_ok("s3cret", "s3cre")
    assert not protocol.token_ok("s3cret", None)


def test_off_loopback_needs_a_token() -> None:
    from loadkit.workloads.dashboard.server import ServerConfig

    with pytest.raises(UsageError, match="token"):
        ServerConfig(host="0.0.0.0").check()
    ServerConfig(host="0.0.0.0", token="t").check()
    ServerConfig().check()


def test_routes() -> None:
    assert protocol.route("/") == "page"
    assert protocol.route("/?token=x") == "page"
    assert protocol.route("/dashboard.js") == "asset"
    assert protocol.route("/api/snapshot?token=x") == "snapshot"
    assert protocol.route("/ws") == "ws"
    assert protocol.route("/../etc/passwd") == "missing"
    assert protocol.route("/static/dashboard.js") == "missing"


@given(st.integers(0, 100), st.integers(0, 2**32))
def test_backoff_is_bounded_and_grows(attempt: int, seed: int) -> None:
    rng = random.Random(seed)
    delay = protocol.backoff_s(attempt, base_s=0.1, cap_s=2.0, rng=rng)
    assert 0 <= delay <= min(2.0, 0.1 * 2**attempt)


def test_backoff_spreads_over_its_whole_window_and_grows() -> None:
    """Full jitter: delays cover the window up to its bound (not one fixed value), and
    later attempts wait longer on average until the cap."""
    rng = random.Random(7)

    def delays(attempt: int) -> list[float]:
        return [protocol.backoff_s(attempt, base_s=0.1, cap_s=2.0, rng=rng) for _ in range(400)]

    for attempt in (0, 2, 6):
        bound = min(2.0, 0.1 * 2**attempt)
        sample = delays(attempt)
        assert min(sample) < 0.1 * bound
        assert max(sample) > 0.9 * bound
    means = [sum(delays(a)) / 400 for a in range(6)]
    assert means == sorted(means)
    assert means[4] > 3 * means[0]


@given(
    st.lists(
        st.tuples(st.dictionaries(agent_ids, states), st.lists(agent_ids, max_size=3)),
        max_size=15,
    ),
    st.booleans(),
)
def test_board_updates_replay_to_the_same_state(steps: list, keyframes: bool) -> None:
    """A viewer applying every update body, and a board following them, end up with
    the source's agents (slots renumbered as agents join and leave); the version moves
    exactly when something changed, and counts match the states."""
    board = AgentBoard()
    view, follower = BoardView(), AgentBoard()
    view.load(board.snapshot_body())
    follower.load(json.loads(json.dumps(board.snapshot_body())))
    for changed, removed in steps:
        before = board.version
        delta = board.update(changed, removed)
        body = json.loads(json.dumps(board.update_body(delta, None, keyframe=keyframes)))
        assert view.apply(body)
        follower.follow(body)
        assert board.version == before + (1 if delta else 0)
        assert view.agents() == board.states == follower.states
        assert list(follower.states) == list(board.states)  # the same slot order
        expected: dict[str, int] = {}
        for s in board.states.values():
            expected[s] = expected.get(s, 0) + 1
        assert board.counts() == expected == follower.counts()


@given(st.integers(1, 3000), st.data())
def test_slots_encode_both_ways_and_pick_the_shorter(total: int, data: st.DataObject) -> None:
    slots = sorted(data.draw(st.sets(st.integers(0, total - 1), max_size=total)))
    form, value = encode_slots(slots, total)
    assert decode_slots({form: value}) == slots
    bitmap = bytearray((total + 7) // 8)
    for slot in slots:
        bitmap[slot // 8] |= 0x80 >> (slot % 8)
    compact = {"separators": (",", ":")}
    sizes = {"m": len(json.dumps(bitmap.hex())), "s": len(json.dumps(slots, **compact))}
    assert sizes[form] <= min(sizes.values()) + 1


def test_a_round_of_every_agent_changing_is_small_on_the_wire() -> None:
    sim = SimulatedFleet(1000)
    publisher = BoardPublisher(keyframe_every=0)
    publisher.publish(sim.snapshot())
    update = publisher.publish(sim.tick(1000))
    assert len(update) < 1600  # a bitmap and a letter per changed agent, not their ids
    assert len(publisher.snapshot()) > 20 * len(update)


def test_keyframes_come_every_n_updates_and_when_agents_join_or_leave() -> None:
    publisher = BoardPublisher(keyframe_every=4)
    publisher.publish(Tick(stats={}, full={"a": "idle", "b": "busy"}))  # joined: keyframe
    bodies = [
        json.loads(publisher.publish(Tick(stats={}, changed={"a": s})))
        for s in ("busy", "idle", "busy", "idle")
    ]
    bodies[1]["changed"] = None
    assert ["k" in b for b in bodies] == [False, False, True, False]
    assert all("ids" not in b for b in bodies)
    left = json.loads(publisher.publish(Tick(stats={}, full={"b": "dead", "c": "new"})))
    assert left["ids"] == ["b", "c"] and left["k"] == "dn"


def test_the_load_clients_decoding_matches_the_view() -> None:
    """The load client decodes into numpy arrays once per message; applied to its board,
    it gives what the page's plain application gives."""
    sim = SimulatedFleet(700)
    publisher = BoardPublisher(keyframe_every=3)
    publisher.publish(sim.snapshot())
    snapshot = publisher.snapshot()
    view = BoardView()
    view.load(json.loads(snapshot))
    codes = decode(snapshot).full.copy()
    for per_tick in (5, 700, 40, 700, 1, 300):
        message = publisher.publish(sim.tick(per_tick))
        assert view.apply(json.loads(message))
        decoded = decode(message)
        if decoded.full is not None:
            codes = decoded.full.copy()
        else:
            codes[decoded.slots] = decoded.letters
        assert board_digest(codes) == board_digest(bytes(view.codes))
    assert view.agents() == sim.states
    assert board_digest(codes) == board_digest(publisher.board.codes().encode())


def test_a_view_refuses_an_update_that_does_not_fit() -> None:
    view = BoardView()
    view.load({"ids": ["a", "b"], "agents": {"a": "idle", "b": "busy"}})
    assert not view.apply({"k": "iii"})
    assert not view.apply({"s": [5], "c": "b"})
    assert not view.apply({"s": [0, 1], "c": "b"})
    with pytest.raises(ValueError, match="unknown agent state"):
        AgentBoard().update({"a": "sleeping"})


def test_frames_resume_and_gaps() -> None:
    assert protocol.text_frame(b"hi") == b"\x81\x02hi"
    assert protocol.text_frame(b"x" * 300)[:4] == b"\x81\x7e\x01\x2c"
    assert protocol.text_frame(b"x" * 70_000)[:2] == b"\x81\x7f"
    assert protocol.resume_from("/ws?resume=ab12cd-41&token=x") == ("ab12cd", 41)
    assert protocol.resume_from("/ws?resume=nonsense") is None
    assert protocol.resume_from("/ws") is None
    assert protocol.resume_query("ab12cd", 41) == "resume=ab12cd-41"
    g = GapTracker()
    g.see(Header("update", 7, 0.0, "a"))
    g.see(Header("snapshot", 20, 0.0, "a"))  # a snapshot starts over
    g.see(Header("update", 21, 0.0, "a"))
    assert g.missed == 0


def test_board_replace_diffs_a_full_sample() -> None:
    board = AgentBoard()
    board.replace({"a": "idle", "b": "busy"})
    delta = board.replace({"b": "idle", "c": "new"})
    assert delta.changed == {"b": "idle", "c": "new"}
    assert delta.removed == ["a"]
    assert not board.replace({"b": "idle", "c": "new"})


def test_board_history_is_sampled_and_bounded() -> None:
    board = AgentBoard()
    points = [board.set_stats({"throughput_per_s": 1.0}, t / 10) for t in range(10_000)]
    assert sum(p is not None for p in points) == 1000  # one a second
    assert len(board.history) == 300  # the last five minutes


def test_simulator_is_seeded_and_changes_what_it_is_asked() -> None:
    a, b = SimulatedFleet(500, seed=3), SimulatedFleet(500, seed=3)
    ta, tb = a.tick(100), b.tick(100)
    assert ta.changed == tb.changed
    assert len(ta.changed) == 100
    assert len(a.tick(500).changed) == 500
    assert set(a.states.values()) <= {"idle", "busy", "new", "dead"}


def test_targets_cover_the_reported_metrics_and_bottlenecks_read_them() -> None:
    metrics = {t.metric for t in targets("quick")}
    assert metrics <= REPORTED_METRICS
    assert {"ws_latency_p99_ms", "poll_refresh_s", "update_process_ms"} <= metrics
    assert {"reconnect_ratio", "memory_per_connection_kib"} <= metrics
    assert bottlenecks({}) == []
    found = bottlenecks(
        {"memory_per_connection_kib": 64, "reconnect_ratio": 0.5, "messages_missed": 3}
    )
    assert len(found) == 3
