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


def describe_peer(model, library: str, preset: str, memtx_params: int, kwargs: object) -> dict:
    """The fields every peer's ``describe`` starts with: library and version, the memtx preset it matches and the
    parameter counts of both sides."""
    params = sum(p.numel() for p in model.parameters())
    return {
        "library": library,
        "version": dist_version(library),
        "matches": preset,
        "parameters": params,
        "memtx_parameters": memtx_params,
        "parameter_difference": params - memtx_params,
        "kwargs": kwargs,
    }


def random_bytes(model, batch_size: int, length: int, vocab: int, seed: int):
    """A fixed (batch_size, length) stream of random token ids on the model's device: the data of a speed run."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (batch_size, length), generator=gen).to(next(model.parameters()).device)


def adam_stepper(model, lr: float, grad_clip: float):
    """``update(loss)``: backward, global grad-norm clip (when > 0) and one Adam step, as memtx's trainer does."""
    import torch

    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    params = [p for p in model.parameters() if p.requires_grad]

    def update(loss) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()

    return update
