"""Redis URL rules: which URLs loadkit accepts, which are on this machine, cluster URLs.

Pure functions over strings, so every layer (the embedded server, the clients, the
guard that must not put a password on a command line) can ask them without starting
or touching a server.
"""

from __future__ import annotations

import ipaddress
import urllib.parse

ENV_URL = "LOADKIT_REDIS_URL"
ENV_ALLOW_REMOTE = "LOADKIT_ALLOW_REMOTE"
CLUSTER_SCHEME = "redis+cluster"


def is_loopback_url(url: str) -> bool:
    """True when the URL's host is on this machine (127.0.0.0/8, ::1, localhost, a socket)."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "unix":
        return True
    host = parsed.hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_cluster_url(url: str) -> bool:
    return urllib.parse.urlparse(url).scheme == CLUSTER_SCHEME


def node_url(url: str) -> str:
    """The plain ``redis://`` URL of the node a (cluster) URL names."""
    if is_cluster_url(url):
        return "redis://" + url.split("://", 1)[1]
    return url
