"""Peers: other libraries run on memtx's workloads, each an optional install
(``pip install torch==2.13.0 -e ".[peers]"``: naming the torch build keeps pip from replacing it with a CUDA one)."""

from __future__ import annotations

import importlib
import importlib.util
from importlib.metadata import PackageNotFoundError, version


def installed(module: str) -> bool:
    """True when ``module`` is installed and imports (a peer is optional; a broken install counts as absent)."""
    if importlib.util.find_spec(module) is None:
        return False
    try:
        importlib.import_module(module)
    except Exception:
        return False
    return True


def dist_version(dist: str) -> str | None:
    """The installed version of distribution ``dist``, or None."""
    try:
        return version(dist)
    except PackageNotFoundError:
        return None
