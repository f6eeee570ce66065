"""Checkpoints as plain data: weights and carried memory in safetensors, trainer state loadable with
``torch.load(weights_only=True)``. Nothing a user hands us is ever unpickled.

Layout of a run folder::

    config.json            resolved RunConfig
    metrics.jsonl          one JSON object per logged step / evaluation
    model.safetensors      latest weights (metadata: the model config)
    checkpoints/step_N/    model.safetensors, memory.safetensors, trainer.pt, manifest.json (sha256 of each)

A checkpoint is written into a temporary folder, every file fsynced, its manifest written last, and the folder
renamed into place; the last ``keep`` are kept. On resume the newest checkpoint whose files match their manifest is
used; a corrupt or half-written one is skipped with a warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch
from torch import Tensor, nn

from memtx.errors import CheckpointError

MODEL_FILE, MEMORY_FILE, TRAINER_FILE, MANIFEST_FILE = (
    "model.safetensors",
    "memory.safetensors",
    "trainer.pt",
    "manifest.json",
)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_weights(state_dict: dict[str, Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """Atomic: write a temporary file, fsync, rename."""
    tmp = path.with_name(path.name + ".tmp")
    tensors = {k: v.detach().contiguous() for k, v in state_dict.items()}
    safetensors.torch.save_file(tensors, str(tmp), metadata=metadata)
    _fsync(tmp)
    tmp.replace(path)


def read_tensors(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path} not found: pass a run folder written by 'memtx train'")
    try:
        return safetensors.torch.load_file(str(path))
    except (safetensors.SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(
            f"{path} is not a readable safetensors file ({str(e).splitlines()[0]}): it is truncated or corrupt; "
            "restore it or resume from an earlier checkpoint"
        ) from e


def load_weights(model: nn.Module, path: Path, fresh_prefix: str = "") -> list[str]:
    """Load weights, refusing files saved for another architecture with a one-line reason.

    fresh_prefix: parameters under it (e.g. "memory.") may be absent from the file, or of another shape, and keep
    their initial values, and the file's own under it are dropped (start one memory mechanism from a model trained
    with another). Returns the names of the model's tensors left at their initial values."""
    tensors = read_tensors(path)
    own = model.state_dict()
    fresh = sorted(
        k
        for k in own
        if fresh_prefix and k.startswith(fresh_prefix) and (k not in tensors or own[k].shape != tensors[k].shape)
    )
    if fresh_prefix:
        tensors = {k: v for k, v in tensors.items() if not k.startswith(fresh_prefix) or (k in own and k not in fresh)}
    shaped = sorted(k for k in set(own) & set(tensors) if own[k].shape != tensors[k].shape)
    # load_state_dict reports missing keys after the modules' own defaults for keys added later
    # (AssociativeMemory.norm_bound); shapes are checked first, as it raises on those
    result = None if shaped else model.load_state_dict(tensors, strict=False)
    missing = [] if result is None else sorted(set(result.missing_keys) - set(fresh))
    if shaped or missing or result.unexpected_keys:
        what = (
            f"{shaped[0]} is {tuple(tensors[shaped[0]].shape)}, expected {tuple(own[shaped[0]].shape)}"
            if shaped
            else f"missing {missing[0]}"
            if missing
            else f"unexpected {sorted(result.unexpected_keys)[0]}"
        )
        raise CheckpointError(
            f"{path} holds weights of another architecture ({what}): use it with the config.json it was "
            "trained with, or start a new run folder"
        )
    return fresh


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Checkpoint folders that were renamed into place (complete when written), oldest first."""
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return []
    dirs = [d for d in root.iterdir() if d.is_dir() and d.name.startswith("step_")]
    return sorted(dirs, key=lambda d: int(d.name.removeprefix("step_")))


def verify_checkpoint(ckpt: Path) -> str | None:
    """None if every file matches the manifest, else what is wrong (one line)."""
    try:
        manifest = json.loads((ckpt / MANIFEST_FILE).read_text())
        for name, digest in manifest["sha256"].items():
            if not (ckpt / name).is_file():
                return f"{name} is missing"
            if _sha256(ckpt / name) != digest:
                return f"{name} does not match its sha256"
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"unreadable manifest ({type(e).__name__})"
    return None


def latest_good_checkpoint(run_dir: Path) -> Path | None:
    """The newest verified checkpoint, warning on stderr about each newer one that is corrupt."""
    for ckpt in reversed(checkpoint_dirs(run_dir)):
        problem = verify_checkpoint(ckpt)
        if problem is None:
            return ckpt
        older = [d.name for d in checkpoint_dirs(run_dir) if d < ckpt and verify_checkpoint(d) is None]
        fallback = f"using {older[-1]}" if older else "no earlier checkpoint"
        print(f"memtx: warning: checkpoint {ckpt.name} is corrupt ({problem}); {fallback}", file=sys.stderr)
    return None


@torch.no_grad()
def shrink_toward(model: nn.Module, start: dict[str, Tensor], factor: float) -> None:
    """Shrink and perturb (Ash & Adams 2020): every parameter of two or more dimensions becomes factor x its value
    + (1 - factor) x its value in ``start`` (a fresh initialisation); vectors (norms, biases) and buffers stay."""
    for name, p in model.named_parameters():
        if p.dim() >= 2:
            p.mul_(factor).add_(start[name], alpha=1 - factor)


def initial_weights(run_dir: Path) -> Path:
    """The weights file a new run starts from with --init-from: the run's final model, else its newest checkpoint."""
    if not run_dir.is_dir():
        raise CheckpointError(f"--init-from: {run_dir} does not exist: pass a run folder written by 'memtx train'")
    if (run_dir / MODEL_FILE).is_file():
        return run_dir / MODEL_FILE
    ckpt = latest_good_checkpoint(run_dir)
    if ckpt is None:
        raise CheckpointError(f"--init-from: {run_dir} holds no model and no usable checkpoint: pass a trained run")
    return ckpt / MODEL_FILE


def save_checkpoint(
    run_dir: Path,
    step: int,
    weights: dict[str, Tensor],
    memory: dict[str, Tensor] | None,
    trainer_state: dict[str, Any],
    metadata: dict[str, str],
    keep: int,
) -> Path:
    """Write checkpoints/step_N (temporary folder, fsync, manifest, rename) and keep the last `keep`."""
    root = run_dir / "checkpoints"
    final = root / f"step_{step:09d}"
    tmp = root / f".tmp_step_{step:09d}"
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_weights(weights, tmp / MODEL_FILE, metadata)
        safetensors.torch.save_file(memory or {}, str(tmp / MEMORY_FILE), metadata={"empty": str(memory is None)})
        torch.save(trainer_state, tmp / TRAINER_FILE)
        files = (MODEL_FILE, MEMORY_FILE, TRAINER_FILE)
        for name in files:
            _fsync(tmp / name)
        (tmp / MANIFEST_FILE).write_text(json.dumps({"step": step, "sha256": {n: _sha256(tmp / n) for n in files}}))
        _fsync(tmp / MANIFEST_FILE)
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        _fsync(root)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        good = [d.name for d in checkpoint_dirs(run_dir)]
        kept = f"the last checkpoint ({good[-1]}) is intact" if good else "no earlier checkpoint exists"
        raise CheckpointError(
            f"cannot write checkpoint {final} ({e.strerror or e}): free disk space or choose another --out; {kept}"
        ) from e
    for old in checkpoint_dirs(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(ckpt: Path, model: nn.Module) -> tuple[dict[str, Tensor] | None, dict[str, Any]]:
    """Restore weights into `model`; return (carried memory tensors or None, trainer state)."""
    load_weights(model, ckpt / MODEL_FILE)
    with safetensors.safe_open(str(ckpt / MEMORY_FILE), "pt") as f:
        empty = (f.metadata() or {}).get("empty") == "True"
    memory = None if empty else read_tensors(ckpt / MEMORY_FILE)
    try:
        trainer_state = torch.load(ckpt / TRAINER_FILE, weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError... for bad files
        raise CheckpointError(
            f"{ckpt / TRAINER_FILE} cannot be loaded safely ({type(e).__name__}): it is corrupt or not a memtx "
            "trainer state; resume from an earlier checkpoint"
        ) from e
    return memory, trainer_state


def model_metadata(model_config: dict[str, Any]) -> dict[str, str]:
    return {"format": "memtx", "model_config": json.dumps(model_config)}


def load_run(run_dir: str | Path, device: str = "cpu"):
    """(RunConfig, TransformerLM in eval mode on ``device``, see ``runtime.resolve_device``) from a run folder's
    config.json and model.safetensors."""
    from memtx.models.transformer_lm import TransformerLM
    from memtx.runtime import resolve_device
    from memtx.training.config import RunConfig

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run folder {run_dir} does not exist: pass a folder written by 'memtx train'")
    cfg = RunConfig.load(run_dir)
    model = TransformerLM(cfg.model)
    load_weights(model, run_dir / MODEL_FILE)
    return cfg, model.to(resolve_device(device)).eval()
