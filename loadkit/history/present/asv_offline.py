"""The asv site without internet: its CDN scripts copied in from npm packages.

asv 0.6's ``www/index.html`` loads jQuery, flot, Bootstrap, stupidtable and md5 from
CDNs, so the published site renders blank offline. The same files ship in npm packages
of the same versions. Once they are in a local cache (``npm install`` into
``$LOADKIT_ASV_ASSETS``, default ``~/.cache/loadkit/asv-www``), every ``loadkit report``
copies them under ``html/vendor/`` and points asv's script and style tags there
(``asv publish`` rewrites ``index.html`` each time, so each report does it again). A
tag this table does not know stays as it is and the page keeps saying the asv site
needs internet.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

ENV_ASSETS = "LOADKIT_ASV_ASSETS"
VENDOR_DIR = "vendor"
# npm packages of the versions asv 0.6 loads (stupidtable's 1.0.1 is not on npm: 1.1.3
# is the same plugin's next release).
NPM_PACKAGES = (
    "jquery@3.3.1",
    "jquery.flot@0.8.3",
    "flot-orderbars@1.0.0",
    "stupid-table-plugin@1.1.3",
    "blueimp-md5@2.19.0",
    "bootstrap@3.1.1",
)
# The last part of each CDN URL in asv's index.html -> the file in node_modules.
ASSETS = {
    "jquery-3.3.1.min.js": "jquery/dist/jquery.min.js",
    "jquery.flot.min.js": "jquery.flot/jquery.flot.js",
    "jquery.flot.time.min.js": "jquery.flot/jquery.flot.time.js",
    "jquery.flot.selection.min.js": "jquery.flot/jquery.flot.selection.js",
    "jquery.flot.categories.min.js": "jquery.flot/jquery.flot.categories.js",
    "jquery.flot.orderBars.js": "flot-orderbars/js/jquery.flot.orderBars.js",
    "stupidtable.min.js": "stupid-table-plugin/stupidtable.min.js",
    "md5.min.js": "blueimp-md5/js/md5.min.js",
    "bootstrap.min.js": "bootstrap/dist/js/bootstrap.min.js",
    "bootstrap.min.css": "bootstrap/dist/css/bootstrap.min.css",
}
# Folders a copied file refers to (Bootstrap's CSS loads ../fonts/).
EXTRA_FOLDERS = ("bootstrap/dist/fonts",)

_TAG = re.compile(r"<(?:script|link)\b[^>]*>", re.IGNORECASE)
_REMOTE = re.compile(r"""\b(src|href)=(["'])(https?://[^"']+)\2""", re.IGNORECASE)
_CHECKS = re.compile(r"""\s+(?:integrity|crossorigin|referrerpolicy)=(["'])[^"']*\1""", re.I)


@dataclass
class Vendored:
    """What a rewrite did: files now local, and remote ones left (unknown to the table)."""

    local: list[str] = field(default_factory=list)
    remote: list[str] = field(default_factory=list)


def assets_cache() -> Path:
    """Where the npm packages are kept between runs."""
    configured = os.environ.get(ENV_ASSETS)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "loadkit" / "asv-www"


def cached(cache: Path) -> bool:
    """True when every file the table names is in the cache."""
    modules = cache / "node_modules"
    return all((modules / path).is_file() for path in ASSETS.values())


def fetch_assets(cache: Path, timeout_s: float = 300.0) -> str | None:
    """``npm install`` the packages into ``cache`` (no install scripts run). Returns
    None when done, else one line saying why not."""
    npm = shutil.which("npm")
    if npm is None:
        return "npm is not installed (it fetches the asv site's scripts once)"
    cache.mkdir(parents=True, exist_ok=True)
    command = [npm, "install", "--no-save", "--no-audit", "--no-fund", "--ignore-scripts"]
    try:
        done = subprocess.run(
            [*command, "--prefix", str(cache), *NPM_PACKAGES],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"npm install did not finish in {timeout_s:.0f} s"
    if done.returncode != 0 or not cached(cache):
        lines = (done.stderr or done.stdout).strip().splitlines()
        return f"npm install failed: {lines[-1] if lines else f'exit {done.returncode}'}"
    return None


def rewrite_index(text: str, known: Iterable[str]) -> tuple[str, Vendored]:
    """asv's index.html with each known CDN tag pointing at ``vendor/`` instead (its
    integrity and cross-origin attributes dropped: the file is no longer fetched from
    the host they vouch for)."""
    names = set(known)
    result = Vendored()

    def tag(match: re.Match[str]) -> str:
        original = match.group(0)
        remote = _REMOTE.search(original)
        if remote is None:
            return original
        url = remote.group(3)
        name = url.rsplit("/", 1)[-1]
        if name not in names:
            result.remote.append(url)
            return original
        result.local.append(name)
        attribute, quote = remote.group(1), remote.group(2)
        local = f"{attribute}={quote}{VENDOR_DIR}/{ASSETS[name]}{quote}"
        return _CHECKS.sub("", original[: remote.start()] + local + original[remote.end() :])

    return _TAG.sub(tag, text), result


def vendor_asv_site(html_dir: Path, cache: Path) -> Vendored | None:
    """Copy the cached files under ``html_dir/vendor`` and rewrite asv's index.html to
    use them. None when there is no asv site or nothing cached; OSError if unwritable."""
    index = html_dir / "index.html"
    if not index.is_file() or not cached(cache):
        return None
    text, vendored = rewrite_index(index.read_text(encoding="utf-8"), ASSETS)
    if not vendored.local:
        return vendored
    modules = cache / "node_modules"
    target = html_dir / VENDOR_DIR
    for path in ASSETS.values():
        (target / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(modules / path, target / path)
    for folder in EXTRA_FOLDERS:
        if (modules / folder).is_dir():
            shutil.copytree(modules / folder, target / folder, dirs_exist_ok=True)
    temporary = index.with_name(index.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(index)
    return vendored
