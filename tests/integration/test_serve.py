"""``loadkit serve`` as a real process on a real socket: both sites served, nothing else,
and it ends the way every long-running loadkit command does."""

from __future__ import annotations

import http.client
import re
import signal
import subprocess
from pathlib import Path

import pytest
from helpers import child_env, loadkit_cmd, run_loadkit

from loadkit.asvsuite.serve import resolve_request


@pytest.fixture
def sites(tmp_path: Path) -> Path:
    html = tmp_path / "html"
    (html / "graphs").mkdir(parents=True)
    (html / "index.html").write_text("asv site")
    (tmp_path / "html-loadkit" / "series").mkdir(parents=True)
    (tmp_path / "html-loadkit" / "index.html").write_text("history page")
    (tmp_path / "results.json").write_text("not to be served")
    (html / "escape").symlink_to(tmp_path)
    return html


def _get(port: int, path: str) -> tuple[int, str | None, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.getheader("Location"), response.read()
    finally:
        connection.close()


def _start(html: Path) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        loadkit_cmd("serve", "--html", str(html), "--port", "0"),
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    line = process.stdout.readline()
    match = re.match(r"serving http://127\.0\.0\.1:(\d+)/", line)
    assert match, line + process.stderr.read()
    return process, int(match.group(1))


def test_serves_both_sites_and_nothing_else(sites: Path):
    process, port = _start(sites)
    try:
        assert _get(port, "/")[:2] == (302, "/html-loadkit/")
        assert _get(port, "/html-loadkit/index.html")[::2] == (200, b"history page")
        assert _get(port, "/html/index.html")[::2] == (200, b"asv site")
        assert _get(port, "/html/")[::2] == (200, b"asv site")
        for path in (
            "/results.json",
            "/html/../results.json",
            "/html/%2e%2e/results.json",
            "/html/escape/results.json",
            "/etc/passwd",
        ):
            assert _get(port, path)[0] == 404, path
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 143


def test_ctrl_c_ends_it_with_130(sites: Path):
    process, port = _start(sites)
    assert _get(port, "/html/index.html")[0] == 200
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=10) == 130
    assert "interrupted" in process.stderr.read()


def test_bad_paths_and_ports_are_one_line_exit_2(tmp_path: Path):
    done = run_loadkit("serve", "--html", str(tmp_path / "missing"))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "missing" in done.stderr
    done = run_loadkit("serve", "--html", str(tmp_path), "--port", "70000")
    assert done.returncode == 2 and "port" in done.stderr


def test_request_paths_resolve_inside_the_roots_only(sites: Path):
    roots = {"/html/": sites}
    assert resolve_request(roots, "/html/graphs/") == (sites / "graphs").resolve()
    assert resolve_request(roots, "/html/index.html?x=1") == (sites / "index.html").resolve()
    assert resolve_request(roots, "/html/escape/results.json") is None
    assert resolve_request(roots, "/other/index.html") is None
