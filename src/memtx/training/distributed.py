"""Data parallelism under torchrun, applied outside the model: DDP, or FSDP2 ``fully_shard`` as an option.

Every rank reads the same global batch of B contiguous streams and keeps its own rows
``[rank * B/W, (rank + 1) * B/W)`` (and the matching rows of the carried memory), so W processes step exactly like
one process with the same global batch. Checkpoints hold the full global state (memory gathered to rank 0), so a
run can resume on a different number of ranks.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

from memtx.errors import ConfigError


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def rows(self, batch_size: int) -> slice:
        """This rank's rows of a global batch."""
        per = batch_size // self.world
        return slice(self.rank * per, (self.rank + 1) * per)


def setup(batch_size: int, device: torch.device | None = None) -> Ranks:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); a no-op otherwise. On CUDA, each rank
    uses the device it was given (``runtime.resolve_device``: its LOCAL_RANK's)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Ranks()
    if batch_size % world:
        raise ConfigError(f"--batch-size {batch_size} does not split over {world} processes: use a multiple of {world}")
    if not dist.is_initialized():
        backend = "gloo"
        if device is not None and device.type == "cuda":
            # CUDA tensors (DDP's gradients, carried memory rows) through NCCL; the CPU ones (the loop's float
            # reductions, gathered RNG states) through gloo: NCCL reduces only CUDA tensors
            torch.cuda.set_device(device)
            backend = "cpu:gloo,cuda:nccl"
        dist.init_process_group(backend)
    return Ranks(dist.get_rank(), dist.get_world_size())


def wrap(step: nn.Module, model: nn.Module, ranks: Ranks, mode: str) -> nn.Module:
    """The module that runs a training step's forward (all its segments in one call of ``step``, since DDP reduces
    once per forward): ``step`` itself, DDP around it, or ``step`` over ``model`` sharded in place (each of
    ``model.blocks`` its own FSDP unit; FSDP2 hooks the model's own calls, any number per backward)."""
    if ranks.world == 1:
        return step
    if mode == "fsdp":
        from torch.distributed.fsdp import fully_shard

        # the LM returns views (logits of a batched linear); memtx never modifies its outputs in place
        warnings.filterwarnings("ignore", message="FSDP2-wrapped module .* returned a view tensor")

        for block in model.blocks:
            fully_shard(block)
        fully_shard(model)
        return step
    # find_unused_parameters: a carried memory state leaves the initial memory (RMT / ARMT) without a gradient in
    # every step but the first of each stream
    return nn.parallel.DistributedDataParallel(step, find_unused_parameters=True)


def full_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Unsharded model and optimizer state on rank 0 (empty elsewhere); collective under FSDP.

    One format for every mode (optimizer state keyed by parameter name), so a checkpoint written by one process,
    DDP or FSDP resumes under any of them.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    return get_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Inverse of ``full_state`` for the optimizer (every rank passes the full state; each keeps its shard)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))


def all_reduce(values: list[float], ranks: Ranks, op: str = "sum") -> list[float]:
    if ranks.world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return t.tolist()


def sync_max_buffers(model: nn.Module, ranks: Ranks) -> None:
    """Buffers that modules name in ``max_synced_buffers`` (running maxima, e.g. ARMT's norm bound) become the
    largest over ranks, so every rank holds what one process on the whole batch would."""
    if ranks.world == 1:
        return
    for module in model.modules():
        for name in getattr(module, "max_synced_buffers", ()):
            dist.all_reduce(getattr(module, name), op=dist.ReduceOp.MAX)


def gather_rows(tensors: dict[str, Tensor], ranks: Ranks) -> dict[str, Tensor]:
    """Concatenate every rank's rows (dim 0) of each tensor; the full tensors on every rank."""
    if ranks.world == 1:
        return tensors
    out = {}
    for name, t in sorted(tensors.items()):
        parts = [torch.empty_like(t) for _ in range(ranks.world)]
        dist.all_gather(parts, t.contiguous())
        out[name] = torch.cat(parts, dim=0)
    return out


def gather_objects(obj, ranks: Ranks) -> list:
    if ranks.world == 1:
        return [obj]
    out = [None] * ranks.world
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, ranks: Ranks):
    if ranks.world == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def teardown(ranks: Ranks) -> None:
    if ranks.world > 1 and dist.is_initialized():
        dist.barrier()  # let every rank's pending collectives finish before the group goes away
        dist.destroy_process_group()
