"""Secrets out of everything loadkit shows: one place that hides passwords in URLs.

A Redis URL may carry a password (``redis://user:password@host:port/db``, or
``unix:///path?password=…``). Every message, log line, report field or process title
that shows a URL goes through :func:`redact_url`, and free text that may quote one (an
exception from a client library, a child process's last words) through
:func:`redact_text`, so the password is never printed, stored or visible in ``ps``.
Pure functions, no I/O.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable

MASK = "***"
# Query parameters that carry a credential (redis-py reads ``password`` from the query).
SECRET_PARAMETERS = frozenset({"password", "pass", "pwd", "token", "secret"})
# scheme://… up to white space or a quote; the scheme as RFC 3986 spells it.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")
# user:password@ after the scheme, for URLs the standard parser refuses.
_USERINFO = re.compile(r"^(?P<head>[^:/?#]+://[^:@/?#]*:)(?P<secret>[^@/?#]*)(?=@)")


def redact_url(url: str) -> str:
    """``url`` with its password (in the user info or the query) replaced by ``***``;
    scheme, user, host, port, path and other parameters stay readable."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises on a malformed port, like the clients do
    except ValueError:
        return _USERINFO.sub(lambda m: m["head"] + MASK, url)
    netloc = parts.netloc
    userinfo, at, hostport = netloc.rpartition("@")
    if at and ":" in userinfo:
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{hostport}"
    query = parts.query
    if query:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        if any(name.lower() in SECRET_PARAMETERS for name, _ in pairs):
            query = "&".join(
                f"{name}={MASK}" if name.lower() in SECRET_PARAMETERS else f"{name}={value}"
                for name, value in pairs
            )
    if netloc == parts.netloc and query == parts.query:
        return url
    # Put together by hand: urlunsplit drops the empty host of unix:///path?password=…
    slashes = "//" if url[len(parts.scheme) + 1 :].startswith("//") else ""
    shown = f"{parts.scheme}:{slashes}{netloc}{parts.path}"
    shown += f"?{query}" if query else ""
    return shown + (f"#{parts.fragment}" if parts.fragment else "")


def url_secrets(url: str) -> list[str]:
    """The credentials in ``url`` as they may appear in other text: raw and decoded."""
    found: list[str] = []
    try:
        parts = urllib.parse.urlsplit(url)
        if parts.password:
            found.append(parts.password)
        found += [
            value
            for name, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
            if name.lower() in SECRET_PARAMETERS
        ]
    except ValueError:
        match = _USERINFO.match(url)
        if match and match["secret"]:
            found.append(match["secret"])
    decoded = [urllib.parse.unquote(s) for s in found]
    return sorted({s for s in found + decoded if s}, key=len, reverse=True)


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every URL in it redacted and every known secret replaced by ``***``
    (for messages that come from elsewhere and may quote a credential)."""
    text = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
    for secret in sorted(set(secrets), key=len, reverse=True):
        if secret:
            text = text.replace(secret, MASK)
    return text
