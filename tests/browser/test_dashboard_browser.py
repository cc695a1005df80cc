"""The dashboard page in a real browser: Debian's Chromium, headless, driven by Playwright.

The server runs on its own event loop in a thread, publishing a simulated fleet; the test
watches the page render live data over WebSocket, then makes the server refuse
WebSockets and watches the page fall back to HTTP polling (and come back). Without
/usr/bin/chromium the test skips, except under CI (``$CI`` set), where it fails.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import CHROMIUM, CHROMIUM_ARGS, screenshot_dir

from loadkit.workloads.dashboard.server import DashboardServer, ServerConfig
from loadkit.workloads.dashboard.sources import SimulatedFleet, Tick

pytestmark = pytest.mark.slow  # a real browser

AGENTS = 120

if not CHROMIUM.exists():
    if os.environ.get("CI"):
        pytest.fail("CI: /usr/bin/chromium is missing (apt-get install chromium)", pytrace=False)
    pytest.skip(
        "browser test needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")


class LiveServer:
    """A dashboard server on an event loop in a background thread, ticking by itself."""

    def __init__(self, ticking: bool = True, **config: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = DashboardServer(ServerConfig(port=0, **config))
        self.sim = sim = SimulatedFleet(AGENTS)
        self.call(lambda: self.server.publish(sim.tick(AGENTS)))
        self._await(self.server.start())
        self.ticker = None
        if ticking:
            runner = self.server.run(lambda dt: sim.tick(15, dt), interval_s=0.2, duration_s=120)
            self.ticker = asyncio.run_coroutine_threadsafe(runner, self.loop)

    def _await(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def call(self, fn: Callable[[], Any]) -> Any:
        async def wrapped() -> Any:
            return fn()

        return self._await(wrapped())

    def close(self) -> None:
        if self.ticker is not None:
            self.ticker.cancel()
        self._await(self.server.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()


@pytest.fixture
def live() -> Iterator[LiveServer]:
    server = LiveServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as pw:
        # A persistent context is how Playwright takes a fresh --user-data-dir of ours;
        # bypass_csp lets wait_for_function evaluate its expressions under the page's CSP.
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            bypass_csp=True,
            viewport={"width": 1100, "height": 640},
        )
        yield context
        context.close()


def updates(page: Any) -> int:
    return int(page.inner_text("#c-updates"))


@pytest.mark.slow
def test_page_shows_live_data_then_falls_back_to_polling(
    live: LiveServer, browser: Any, tmp_path: Path
) -> None:
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(live.server.url)

    page.wait_for_function("document.body.dataset.mode === 'websocket'", timeout=10_000)
    page.wait_for_function("Number(document.querySelector('#c-updates').textContent) >= 5")
    assert page.locator("#grid .cell").count() == AGENTS
    cells = page.eval_on_selector_all("#grid .cell", "els => els.map(e => e.className)")
    assert {c.split()[1] for c in cells} <= {"idle", "busy", "new", "dead"}
    shown = page.evaluate("Object.fromEntries(window.dashboard.agents)")
    seq = page.evaluate("window.dashboard.seq")
    truth = live.call(lambda: (live.server.seq, dict(live.server.board.states)))
    assert seq <= truth[0] and len(shown) == AGENTS == len(truth[1])
    assert int(page.inner_text("#c-agents")) == AGENTS
    assert page.inner_text("#mode") == "live: WebSocket"
    page.wait_for_timeout(2500)  # let the chart draw a few points
    shot = screenshot_dir(tmp_path) / "dashboard.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000

    # The WebSocket endpoint starts refusing and live connections drop: polling takes over.
    live.call(lambda: setattr(live.server, "accept_websockets", False))
    live.call(live.server.drop_all)
    page.wait_for_function("document.body.dataset.mode === 'polling'", timeout=10_000)
    before = updates(page)
    page.wait_for_function(f"Number(document.querySelector('#c-updates').textContent) > {before}")
    assert page.inner_text("#mode") == "fallback: HTTP polling"
    assert live.call(lambda: live.server.polls) > 0
    # It keeps trying the WebSocket (with backoff, so give it a few attempts' time).
    deadline = time.monotonic() + 15
    while live.call(lambda: live.server.refused["ws_disabled"]) == 0:
        assert time.monotonic() < deadline, "the page never tried the WebSocket again"
        page.wait_for_timeout(100)

    # WebSockets are accepted again: the page goes back to the stream by itself.
    live.call(lambda: setattr(live.server, "accept_websockets", True))
    page.wait_for_function("document.body.dataset.mode === 'websocket'", timeout=20_000)
    assert errors == []
    page.close()


def test_page_starts_in_polling_when_websocket_is_refused(live: LiveServer, browser: Any) -> None:
    live.call(lambda: setattr(live.server, "accept_websockets", False))
    page = browser.new_page()
    page.goto(live.server.url)
    page.wait_for_function("document.body.dataset.mode === 'polling'", timeout=10_000)
    page.wait_for_function(f"document.querySelectorAll('#grid .cell').length === {AGENTS}")
    assert page.evaluate("window.dashboard.seq") > 0
    page.close()


def test_page_needs_the_token_when_one_is_set(browser: Any) -> None:
    server = LiveServer(token="s3cret")
    try:
        page = browser.new_page()
        assert page.goto(server.server.url).status == 401
        page.goto(server.server.url + "?token=s3cret")
        page.wait_for_function("document.body.dataset.mode === 'websocket'", timeout=10_000)
        page.wait_for_function(f"document.querySelectorAll('#grid .cell').length === {AGENTS}")
        page.close()
    finally:
        server.close()


def _page_board(page: Any) -> tuple[int, dict[str, str], int, int]:
    return page.evaluate(
        "[window.dashboard.seq, Object.fromEntries(window.dashboard.agents),"
        " document.querySelectorAll('#grid .cell').length, window.dashboard.missed]"
    )


def test_page_applies_deltas_and_keyframes_to_the_board_a_snapshot_gives(browser: Any) -> None:
    """Deltas of a few agents and of all of them, keyframes (periodic, and when agents
    join and leave): the page's board is the server's after each; after a dropped
    connection it resumes (no snapshot) and still agrees."""
    live = LiveServer(ticking=False)
    try:
        live.call(lambda: setattr(live.server.publisher, "keyframe_every", 3))
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(live.server.url)
        page.wait_for_function("document.body.dataset.mode === 'websocket'", timeout=10_000)
        sim = live.sim

        def publish_and_compare(make_tick: Callable[[], Any]) -> None:
            seq = live.call(lambda: (live.server.publish(make_tick()), live.server.seq)[1])
            page.wait_for_function(f"window.dashboard.seq === {seq}", timeout=10_000)
            shown_seq, shown, cells, missed = _page_board(page)
            states = live.call(lambda: dict(live.server.board.states))
            assert (shown_seq, shown, cells, missed) == (seq, states, len(states), 0)

        for per_tick in (3, AGENTS, 20, AGENTS, 1, 50, 7):
            publish_and_compare(lambda n=per_tick: sim.tick(n))
        # Agents leave and join: a keyframe with the new slot order.
        full = dict(sim.states)
        for gone in list(full)[:5]:
            del full[gone]
        full.update({f"late-{i}": "new" for i in range(8)})
        publish_and_compare(lambda: Tick(stats={}, full=full))
        publish_and_compare(lambda: Tick(stats={}, changed={"late-3": "busy", "late-7": "dead"}))
        # The connection drops; the page comes back asking to resume and gets no snapshot.
        before = live.call(lambda: live.server.resumed)
        live.call(live.server.drop_all)
        deadline = time.monotonic() + 15
        while live.call(lambda: live.server.resumed) == before:
            assert time.monotonic() < deadline, "the page never resumed"
            page.wait_for_timeout(50)
        publish_and_compare(lambda: Tick(stats={}, changed={"late-0": "busy"}))
        assert errors == []
        page.close()
    finally:
        live.close()
