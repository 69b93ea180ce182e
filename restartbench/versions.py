"""The one version order of restartbench: builds, matrix cells, asv parameters and the catalogue."""

from __future__ import annotations

import re


def version_key(version: str) -> tuple:
    """PEP 440 when ``version`` parses (1.4.0 < 1.32.0 < 1.32.1 < 1.35.0rc1 < 1.35.0; a leading ``v``
    is dropped), else by the numbers in it; unparsable versions sort after parsable ones."""
    from packaging.version import InvalidVersion, Version

    text = str(version).strip().removeprefix("v")
    try:
        return (0, Version(text), ())
    except InvalidVersion:
        nums = tuple(int(n) for n in re.findall(r"\d+", text))
        return (1 if nums else 2, nums, text)
