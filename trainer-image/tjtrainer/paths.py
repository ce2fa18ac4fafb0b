"""Names from outside (table rows, manifests, the UI's query) that become paths.

Every namespace, name and model version that is joined to a folder is checked here first:
one path segment of safe characters, never ``..``, no glob characters, and the joined path
stays inside its root (symbolic links included). Anything else raises
:class:`UnsafePathError` naming the value.
"""

from __future__ import annotations

import re
from pathlib import Path

from tjcontract.names import LABEL, MAX_LABEL_LENGTH, MAX_SUBDOMAIN_LENGTH, SUBDOMAIN

# A model version such as 15m_20261126_140000: letters, digits, '_', '-', '.'; no '..'.
VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


class UnsafePathError(ValueError):
    """A value that would name a path outside the folder it belongs in."""


def label(value: object, *, what: str) -> str:
    """``value`` if it is a DNS-1123 label (a namespace)."""
    if not isinstance(value, str) or len(value) > MAX_LABEL_LENGTH or not LABEL.fullmatch(value):
        raise UnsafePathError(
            f"{what} must be at most {MAX_LABEL_LENGTH} lower-case letters, digits and '-', "
            f"starting and ending with a letter or digit, got {value!r}"
        )
    return value


def object_name(value: object, *, what: str) -> str:
    """``value`` if it is a DNS-1123 subdomain (the name of a Kubernetes object)."""
    ok = isinstance(value, str) and len(value) <= MAX_SUBDOMAIN_LENGTH
    if not ok or not SUBDOMAIN.fullmatch(str(value)):
        raise UnsafePathError(
            f"{what} must be lower-case letters, digits, '-' and '.', starting and ending "
            f"with a letter or digit (a Kubernetes object name), got {value!r}"
        )
    return str(value)


def model_version(value: object) -> str:
    """``value`` if it can be a model version (one safe file-name part)."""
    if not isinstance(value, str) or not VERSION.fullmatch(value) or ".." in value:
        raise UnsafePathError(
            "a model version must be letters, digits, '_', '-' and '.' (such as "
            f"15m_20261126_140000), got {value!r}"
        )
    return value


def confined(root: Path, *parts: str) -> Path:
    """``root`` joined with ``parts``, if it resolves inside ``root`` (links followed)."""
    path = root.joinpath(*parts)
    if not is_inside(path, root):
        raise UnsafePathError(f"{path} is outside {root}")
    return path


def is_inside(path: Path, root: Path) -> bool:
    """Whether ``path`` resolves (links followed) to ``root`` or a path below it."""
    return path.resolve().is_relative_to(root.resolve())
