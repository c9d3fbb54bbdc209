"""Experiment names as file and folder names: reports, artifacts and the spool.

An experiment name is free text (``name = "..."``); a path built from it must stay inside
its folder and must not be read as an option. ``safe_name`` keeps letters, digits, ``_``,
``.`` and ``-``, replaces everything else with ``_``, never starts with ``.`` or ``-``
(so ``..``, ``.hidden`` and ``-rf`` become ordinary names) and stays under 100 bytes.
A name that had to change gets 8 hex digits of its SHA-256, so that two names never
share a folder (``a/b`` and ``a_b``); a name that is already safe is kept as it is.
"""

from __future__ import annotations

import hashlib
import re

MAX_BYTES = 100  # well under the 255 bytes most file systems allow in one name


def safe_name(name: str) -> str:
    """A single path component for ``name``: no separators, no leading ``.``/``-``, ≤ 100 bytes."""
    safe = re.sub(r"[^\w.-]", "_", name)
    if safe[:1] in (".", "-", ""):
        safe = "_" + safe
    if safe == name and len(safe.encode()) <= MAX_BYTES:
        return safe
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{_cut(safe, MAX_BYTES - 9)}-{digest}"


def _cut(text: str, n: int) -> str:
    """At most ``n`` bytes of ``text`` in UTF-8, never half a character."""
    return text.encode()[:n].decode(errors="ignore")
