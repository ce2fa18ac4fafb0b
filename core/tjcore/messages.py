"""The one bound on messages: every message written to a table row, a TrainingJob's
status or an Event goes through :func:`bounded_message` (a trainer's error, an API
server's answer, a kubelet's message may be of any length)."""

from __future__ import annotations

# The longest message kept anywhere, in bytes of UTF-8.
MESSAGE_LIMIT = 1024
ELLIPSIS = "…"


def bounded_message(text: str | None, limit: int = MESSAGE_LIMIT) -> str | None:
    """``text`` cut to at most ``limit`` bytes of UTF-8, ending in an ellipsis when cut."""
    if text is None:
        return None
    raw = text.encode("utf-8", "replace")
    if len(raw) <= limit:
        return text
    return raw[: limit - len(ELLIPSIS.encode())].decode("utf-8", "ignore") + ELLIPSIS
