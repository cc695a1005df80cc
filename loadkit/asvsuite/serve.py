"""``loadkit serve``: the asv site and loadkit's history page from one local web server.

Both are static folders side by side (``html/`` and ``html-loadkit/``); serving them
under their own names keeps the page's relative links to asv working exactly as they
do from disk. Only those two folders are served, nothing above or beside them, on
127.0.0.1 unless told otherwise. It serves until Ctrl-C (exit 130) or SIGTERM (143).
"""

from __future__ import annotations

import os
import posixpath
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from loadkit.common.errors import UsageError
from loadkit.common.site_paths import page_dir
from loadkit.history.sources.asv_config import DEFAULT_HTML_DIR, load_config
from loadkit.runtime import lifetime


def site_roots(html_dir: Path) -> dict[str, Path]:
    """URL prefix -> folder for each site that exists: ``/html/`` and ``/html-loadkit/``
    (named as the folders are). UsageError when neither does."""
    html_dir = Path(os.path.abspath(html_dir))
    roots = {
        f"/{folder.name}/": folder for folder in (html_dir, page_dir(html_dir)) if folder.is_dir()
    }
    if not roots:
        raise UsageError(
            f"--html {html_dir}: neither it nor {page_dir(html_dir)} is a folder "
            "(run `loadkit bench` or `asv publish` and `loadkit report` first)"
        )
    return roots


def resolve_request(roots: dict[str, Path], url_path: str) -> Path | None:
    """The file a URL path names inside one of the roots, or None: paths that climb out
    (``..``, symlinks elsewhere) or name no site are refused."""
    path = unquote(urlsplit(url_path).path)
    for prefix, root in roots.items():
        if path == prefix.rstrip("/") or path.startswith(prefix):
            rest = posixpath.normpath("/" + path[len(prefix) :]).lstrip("/")
            if rest.startswith("..") or "\\" in rest or "\x00" in rest:
                return None
            target = Path(os.path.realpath(root / rest)) if rest not in ("", ".") else root
            real_root = Path(os.path.realpath(root))
            if target != real_root and real_root not in target.parents:
                return None
            return target
    return None


class SiteHandler(SimpleHTTPRequestHandler):
    """Static files from the two roots only; ``/`` goes to loadkit's page."""

    def __init__(self, *args: object, roots: dict[str, Path], **kwargs: object) -> None:
        self.roots = roots
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def _home(self) -> str:
        loadkit = [p for p in self.roots if p.endswith("-loadkit/")]
        return (loadkit or list(self.roots))[0]

    def send_head(self):  # type: ignore[no-untyped-def]
        if urlsplit(self.path).path in ("", "/"):
            self.send_response(HTTPStatus.FOUND)
            self.send_header("Location", self._home())
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if resolve_request(self.roots, self.path) is None:
            self.send_error(HTTPStatus.NOT_FOUND, "not part of the served sites")
            return None
        return super().send_head()

    def translate_path(self, path: str) -> str:
        target = resolve_request(self.roots, path)
        return str(target) if target is not None else os.devnull + ".missing"

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: a page load is dozens of requests."""


def _default_html() -> Path:
    conf = Path("asv.conf.json")
    if not conf.is_file():
        return Path(DEFAULT_HTML_DIR)
    try:
        return load_config(conf).html_dir
    except UsageError:
        return Path(DEFAULT_HTML_DIR)


def serve(html: Path | None, host: str, port: int) -> int:
    """Serve both sites read-only until a stop signal; the exit code."""
    roots = site_roots(html if html is not None else _default_html())
    try:
        server = ThreadingHTTPServer((host, port), partial(SiteHandler, roots=roots))
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    host, port = server.server_address[:2]
    shown = f"[{host}]" if ":" in str(host) else host
    print(f"serving http://{shown}:{port}/  (Ctrl-C to stop)", flush=True)
    for prefix, root in roots.items():
        print(f"  {prefix:<24} {root}", flush=True)
    try:
        with lifetime.stop_on_signals():
            server.serve_forever()
    finally:
        server.server_close()
    return 0  # serve_forever returns only on shutdown()
