"""recurrent-memory-transformer-pytorch peer of memtx's ``copy-rmt`` preset: the same copy task, data, curriculum,
optimiser and evaluation, at matched parameter count; one JSON record with accuracy and tokens/s.

    python benchmarks/peers/rmt_pytorch.py --max-time 300 --seed 0
    memtx train copy-rmt --max-time 300 --seed 0 --json        # the memtx side, for the same budget

Depends on torch, memtx (for the task data only) and recurrent_memory_transformer_pytorch (checked against 0.7.0;
``pip install recurrent-memory-transformer-pytorch==0.7.0``, which pulls einops and hyper-connections). The
record goes to stdout and to ``--out`` (default benchmarks/results/peer_rmt_pytorch_copy.json); per-window
training lines go to stderr.

What is the same as ``memtx train copy-rmt``:

* data: ``memtx.tasks.synthetic.TaskBatches("copy", batch 32, segment 16, 16 symbols, seed)``; training step k
  consumes ``next_batch(segments)`` k, in order, so both see the very same samples. Vocabulary 18 (16 symbols,
  SEP, FILL).
* curriculum 1 -> 2 -> 4 -> 8 segments, 200 steps per stage, then 8 segments until the budget ends.
* every sample starts from fresh memory (``read_memories=None`` on its first segment); the write memories of
  segment i are the read memories of segment i+1, never detached: full BPTT through all segments of the step
  (memtx's ``bptt_depth -1``).
* loss: cross-entropy summed over the answer targets of all segments (targets -100 elsewhere are ignored),
  divided by the number of answer targets of the step (memtx's ``StepLoss``); the peer's own ``labels`` loss is
  not used (it averages per segment and ignores -1, not -100).
* Adam(lr 1e-3, betas (0.9, 0.999), no weight decay), linear warm-up over 100 steps from lr/100 (memtx's
  ``build_schedule``: factor (step+1)/100), global grad-norm clip 1.0, a step with a non-finite loss or gradient
  norm is skipped; ``torch.manual_seed(seed)`` before the model is built; ``memtx.runtime.tune_allocator()``
  first, as the memtx CLI does.
* time budget: ``--max-time`` counts training steps only (batch generation, forward, backward, clip, update),
  checked before each step, as memtx does; tokens/s = B*S*T of the step's batch per second, per window of 20 steps,
  median over the windows.
* evaluation: ``TaskBatches.eval_batches(500, 8, 100)`` (the held-out stream), teacher forcing segment by
  segment, argmax on the answer targets: accuracy = answer tokens right / answer tokens, exact = samples with every
  answer token right / samples (memtx's ``evaluate_task``).

How the model was matched (memtx copy-rmt: 4 layers, d_model 128, 4 heads, 16 memory tokens, All-attention
layers without FFN with 64 persistent vectors: 337,426 parameters):

* ``RecurrentMemoryTransformer(num_tokens=18, num_memory_tokens=16, dim=128, depth=4, heads=4, dim_head=32,
  seq_len=16, causal=True, use_xl_memories=False, ff_mult=...)``: same depth, width, heads and memory size. The
  peer has no persistent-vector attention, so its layers keep the feed-forward sublayer (GEGLU); its width is the
  free knob: ``--ff-inner`` (default: the width giving the parameter count closest to memtx's, 35 at depth 4:
  337,762 parameters, +336). ``ff_mult`` is derived from it (the peer computes ``int(dim * ff_mult * 2 / 3)``).
  Other close choices: depth 3 with inner 63 (337,710), depth 4 with inner 34 (336,226).
* everything else at the peer's defaults: 4 hyper-connection residual streams (``num_residual_streams=4``: static
  and dynamic mixing weights per sublayer, counted in the parameters), value-residual mixing from layer 2 on,
  a learned null key/value per layer, RMSNorm pre-norm and final norm, absolute position embeddings, read memories
  attending only to themselves and write memories attending to everything (``memory_not_causal=True``), embedding
  gradients scaled by 0.1 (``emb_gradient_frac=0.1``), no dropout, einsum attention (``--flash-attn`` switches
  to the peer's ``F.scaled_dot_product_attention`` path).
* not matched: memtx's All-attention layers (persistent key/value vectors instead of an FFN), its memory
  read/write placement and its positional scheme; the peer's hyper-connections and value residuals have no memtx
  counterpart. The comparison is of the two libraries' RMT recipes at equal size, data and training, not of
  identical networks.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere
from benchmarks.peers import dist_version, installed  # noqa: E402

PEER = "recurrent-memory-transformer-pytorch"
MEMTX_PRESET = "copy-rmt"
MEMTX_PARAMS = 337_426
"""Parameter count of memtx's copy-rmt model, for the comparison in the record."""
RESULTS = Path(__file__).resolve().parents[1] / "results"
IGNORE_INDEX = -100

# copy-rmt's task and training settings (src/memtx/presets.py)
TASK = dict(task="copy", symbols=16, pairs=0)
VOCAB = 18
SEGMENT_LEN = 16
BATCH_SIZE = 32
CURRICULUM = (1, 2, 4, 8)
STAGE_STEPS = 200
LR, WARMUP, CLIP = 1e-3, 100, 1.0
LOG_EVERY = 20
EVAL_SAMPLES, EVAL_BATCH = 500, 100


def available() -> bool:
    """True when recurrent_memory_transformer_pytorch can be imported (the peer is optional)."""
    return installed("recurrent_memory_transformer_pytorch")


def _version() -> str | None:
    return dist_version(PEER)


def ff_mult_for(ff_inner: int, dim: int) -> float:
    """The ``ff_mult`` for which the peer's FeedForward has exactly ``ff_inner`` hidden units."""
    mult = (ff_inner + 0.5) * 3 / (2 * dim)
    if int(dim * mult * 2 / 3) != ff_inner:
        raise ValueError(f"no ff_mult gives ff_inner={ff_inner} at dim={dim}")
    return mult


def model_kwargs(depth: int = 4, ff_inner: int = 35, dim: int = 128, flash_attn: bool = False) -> dict[str, Any]:
    """The exact RecurrentMemoryTransformer keyword arguments ``build_model`` uses, as plain data."""
    return dict(
        num_tokens=VOCAB,
        num_memory_tokens=16,
        dim=dim,
        depth=depth,
        heads=4,
        dim_head=dim // 4,
        seq_len=SEGMENT_LEN,
        causal=True,
        use_xl_memories=False,
        ff_mult=ff_mult_for(ff_inner, dim),
        use_flash_attn=flash_attn,
    )


def build_model(**config: Any) -> nn.Module:
    from recurrent_memory_transformer_pytorch import RecurrentMemoryTransformer

    return RecurrentMemoryTransformer(**model_kwargs(**config))


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def matched_ff_inner(depth: int, dim: int = 128, target: int = MEMTX_PARAMS) -> int:
    """The feed-forward width whose parameter count is closest to ``target`` (the count is linear in it)."""
    one, two = (num_params(build_model(depth=depth, ff_inner=k, dim=dim)) for k in (1, 2))
    return max(1, round(1 + (target - one) / (two - one)))


def segments_at(step: int) -> int:
    """Segments per sample at optimiser step ``step`` (0-based), as memtx's ``RunConfig.segments_at``."""
    return CURRICULUM[min(step // STAGE_STEPS, len(CURRICULUM) - 1)]


def run_segments(model: nn.Module, x: torch.Tensor):
    """Yield ``(columns, logits)`` per segment of x (B, S*T), fresh memory first, memories never detached."""
    memories = None
    for start in range(0, x.shape[1], SEGMENT_LEN):
        columns = slice(start, start + SEGMENT_LEN)
        logits, memories, _ = model(x[:, columns], memories)
        yield columns, logits


def step_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Mean cross-entropy over the answer targets of all segments, and the fraction of them predicted right."""
    nats, count, correct = 0.0, 0, 0
    for columns, logits in run_segments(model, x):
        logits, target = logits.flatten(0, 1), y[:, columns].flatten()
        nats = nats + F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX, reduction="sum")
        scored = target != IGNORE_INDEX
        count += int(scored.sum())
        correct += int((logits.detach().argmax(-1) == target)[scored].sum())
    return nats / max(count, 1), correct / max(count, 1)


@torch.no_grad()
def evaluate(model: nn.Module, batches) -> dict[str, float | int]:
    """memtx's ``evaluate_task``: held-out samples, teacher forcing, argmax on the answer targets."""
    was_training = model.training
    model.eval()
    correct = exact = targets = samples = 0
    for batch in batches.eval_batches(EVAL_SAMPLES, CURRICULUM[-1], EVAL_BATCH):
        hits = torch.zeros_like(batch.y, dtype=torch.bool)
        for columns, logits in run_segments(model, batch.x):
            hits[:, columns] = logits.argmax(-1) == batch.y[:, columns]
        scored = batch.y != IGNORE_INDEX
        correct += int((hits & scored).sum())
        targets += int(scored.sum())
        exact += int((hits | ~scored).all(dim=1).sum())
        samples += batch.x.shape[0]
    model.train(was_training)
    return {"accuracy": correct / targets, "exact": exact / samples, "samples": samples, "targets": targets}


def train(
    max_time: float, seed: int, max_steps: int = 100_000, depth: int = 4, ff_inner: int | None = None, **kw: Any
) -> dict[str, Any]:
    """Train the peer on copy-rmt's schedule for ``max_time`` seconds of training steps; the JSON record."""
    from memtx.tasks.synthetic import TaskBatches

    if ff_inner is None:
        ff_inner = matched_ff_inner(depth)
    batches = TaskBatches(TASK["task"], BATCH_SIZE, SEGMENT_LEN, TASK["symbols"], TASK["pairs"], seed)
    torch.manual_seed(seed)
    model = build_model(depth=depth, ff_inner=ff_inner, **kw)
    params = list(model.parameters())
    optimizer = torch.optim.Adam(params, lr=LR)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / WARMUP))
    step, elapsed, skipped = 0, 0.0, 0
    speeds: list[float] = []
    window_loss, window_acc, window_steps, window_time = 0.0, 0.0, 0, 0.0
    model.train()
    while step < max_steps and not (max_time and elapsed >= max_time):
        t0 = time.perf_counter()
        n_segments = segments_at(step)
        batch = batches.next_batch(n_segments)
        loss, accuracy = step_loss(model, batch.x, batch.y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, CLIP))
        loss_value = loss.item()
        finite = math.isfinite(loss_value) and math.isfinite(grad_norm)
        if finite:
            optimizer.step()
            schedule.step()
        else:
            optimizer.zero_grad(set_to_none=True)
            skipped += 1
        step += 1
        dt = time.perf_counter() - t0
        elapsed += dt
        if not finite:
            continue
        window_loss, window_acc = window_loss + loss_value, window_acc + accuracy
        window_steps, window_time = window_steps + 1, window_time + dt
        if step % LOG_EVERY == 0 or step == max_steps:
            speed = window_steps * batch.x.numel() / window_time
            speeds.append(speed)
            print(
                f"step {step:5d}  segments {n_segments}  loss {window_loss / window_steps:.4f}  "
                f"train_acc {window_acc / window_steps:.3f}  tok/s {speed:.0f}  elapsed {elapsed:.1f}s",
                file=sys.stderr,
                flush=True,
            )
            window_loss, window_acc, window_steps, window_time = 0.0, 0.0, 0, 0.0
    ev = evaluate(model, batches)
    config = model_kwargs(depth=depth, ff_inner=ff_inner, **kw)
    config.update(
        ff_inner=ff_inner,
        num_residual_streams="4 (default)",
        batch_size=BATCH_SIZE,
        segment_len=SEGMENT_LEN,
        curriculum=list(CURRICULUM),
        stage_steps=STAGE_STEPS,
        optim=f"Adam(lr={LR}), linear warmup {WARMUP}, clip {CLIP}",
        bptt="full",
        seed=seed,
        max_time=max_time,
        eval=f"{EVAL_SAMPLES} held-out samples x {CURRICULUM[-1]} segments, teacher forcing, argmax",
        torch=torch.__version__,
        threads=torch.get_num_threads(),
    )
    return {
        "peer": PEER,
        "version": _version(),
        "matches": MEMTX_PRESET,
        "params": num_params(model),
        "memtx_params": MEMTX_PARAMS,
        "steps": step,
        "skipped_steps": skipped,
        "train_time_s": round(elapsed, 2),
        "tokens_per_s_median": round(statistics.median(speeds), 1) if speeds else None,
        "valid_accuracy": round(ev["accuracy"], 4),
        "valid_exact": round(ev["exact"], 4),
        "valid_samples": ev["samples"],
        "config": config,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--max-time", type=float, default=300.0, help="seconds of training steps (default 300)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-steps", type=int, default=100_000)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--ff-inner", type=int, default=None, help="FFN width (default: closest to memtx's param count)")
    p.add_argument("--flash-attn", action="store_true", help="the peer's F.scaled_dot_product_attention path")
    p.add_argument("--out", type=Path, default=RESULTS / "peer_rmt_pytorch_copy.json")
    args = p.parse_args(argv)
    if not available():
        p.error(f"{PEER} is not installed: pip install {PEER}==0.7.0 (or the project's 'peers' extra)")
    from memtx.runtime import tune_allocator

    tune_allocator()
    record = train(
        args.max_time, args.seed, args.max_steps, depth=args.depth, ff_inner=args.ff_inner, flash_attn=args.flash_attn
    )
    text = json.dumps(record, indent=2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    print(text)
    return record


if __name__ == "__main__":
    main()
