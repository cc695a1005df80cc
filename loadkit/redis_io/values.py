"""Values as Redis returns them: bytes unless a client decodes responses.

Clients here keep raw replies (no ``decode_responses``) so binary payloads pass through
untouched; names and flags are turned into text at the point of use, by this one rule.
"""

from __future__ import annotations

from typing import Any


def as_text(value: Any, encoding: str = "utf-8") -> str:
    """``value`` as text: bytes decoded with ``encoding``, anything else through ``str``.
    Key names use ``latin-1``, which maps every byte to one character, so a key that is
    not UTF-8 still round-trips."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode(encoding)
    return value if isinstance(value, str) else str(value)
