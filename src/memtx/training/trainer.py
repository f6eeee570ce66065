"""The training loop. It knows no mechanism: the model takes (x, state), returns (logits, state), and exposes
``aux_loss()`` and ``after_step()``; the loop carries the state and drops it when the streams wrap."""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from memtx.data import TrainStreams, decode, load_corpus
from memtx.errors import CheckpointError, MemtxError
from memtx.evaluation.language_modeling import evaluate_lm
from memtx.models.generation import generate
from memtx.models.transformer_lm import TransformerLM, memory_from_tensors
from memtx.training.checkpoint import (
    MODEL_FILE,
    checkpoint_dirs,
    load_checkpoint,
    model_metadata,
    save_checkpoint,
    save_weights,
)
from memtx.training.config import RunConfig
from memtx.training.metrics import MetricsLog, plot_learning_curve, read_metrics
from memtx.training.optim import build_optimizer, build_schedule, clip_gradients

# Fields a resumed run must share with the run it continues (the others only say how long / how often).
IDENTITY_FIELDS = ("model", "data", "optim", "batch_size", "segment_len", "seed")


def prepare_run_dir(cfg: RunConfig, run_dir: Path, resume: bool) -> None:
    """Check the folder (never overwrite a run unless resuming it) and write the resolved config.json."""
    if resume:
        if not checkpoint_dirs(run_dir):
            raise CheckpointError(f"--resume: {run_dir} holds no checkpoint; drop --resume to start a new run there")
        saved = RunConfig.load(run_dir)
        diffs = [f for f in IDENTITY_FIELDS if getattr(saved, f) != getattr(cfg, f)]
        if diffs:
            raise CheckpointError(
                f"--resume: the run in {run_dir} was trained with other {', '.join(diffs)} settings; "
                "drop those overrides to continue it, or pass --out NEW_DIR for a new run"
            )
    elif (run_dir / "config.json").exists() or checkpoint_dirs(run_dir):
        raise CheckpointError(
            f"{run_dir} already holds a run (nothing was overwritten): pass --resume to continue it, "
            "or --out NEW_DIR to start another"
        )
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        tmp = run_dir / "config.json.tmp"
        tmp.write_text(cfg.to_json())
        tmp.replace(run_dir / "config.json")
    except OSError as e:
        raise MemtxError(f"cannot write the run folder {run_dir} ({e.strerror}): choose another --out") from e


def _truncate_metrics(log: MetricsLog, step: int) -> None:
    """On resume, drop records written after the checkpoint (they will be written again)."""
    kept = [r for r in read_metrics(log.path) if r.get("step", 0) <= step]
    log.path.write_text("".join(json.dumps(r) + "\n" for r in kept))


def sample_text(
    model: TransformerLM,
    prompt: bytes,
    length: int,
    seed: int,
    segment_len: int,
    temperature: float = 0.8,
    top_k: int | None = None,
) -> str:
    """Decoded continuation of `prompt` (a newline when empty)."""
    ids = torch.tensor([list(prompt or b"\n")], dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    out = generate(model, ids, length, temperature=temperature, top_k=top_k, segment_len=segment_len, generator=gen)
    return decode(out[0])


def train(cfg: RunConfig, run_dir: Path, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train (or continue) a run; returns a summary (also the last lines of metrics.jsonl)."""
    corpus = load_corpus(cfg.data.corpus, cfg.data.data_dir)  # fail on bad data before touching the folder
    streams = TrainStreams(corpus.train, cfg.batch_size, cfg.segment_len)
    prepare_run_dir(cfg, run_dir, resume)
    torch.manual_seed(cfg.seed)
    model = TransformerLM(cfg.model)
    params = list(model.parameters())
    optimizer = build_optimizer(params, cfg.optim)
    schedule = build_schedule(optimizer, cfg.optim)
    metrics = MetricsLog(run_dir / "metrics.jsonl")
    metadata = model_metadata(dataclasses.asdict(cfg.model))
    step, elapsed, state = 0, 0.0, None
    if resume:
        memory, ts = load_checkpoint(checkpoint_dirs(run_dir)[-1], model)
        optimizer.load_state_dict(ts["optimizer"])
        schedule.load_state_dict(ts["scheduler"])
        torch.set_rng_state(ts["rng"])
        streams.load_state_dict(ts["streams"])
        step, elapsed = int(ts["step"]), float(ts["elapsed"])
        state = memory_from_tensors(memory) if memory is not None else None
        _truncate_metrics(metrics, step)
    else:
        metrics.write(step=0, event="start", params=model.num_parameters(), corpus=corpus.info)

    def checkpoint() -> None:
        trainer_state = {
            "step": step,
            "elapsed": elapsed,
            "optimizer": optimizer.state_dict(),
            "scheduler": schedule.state_dict(),
            "rng": torch.get_rng_state(),
            "streams": streams.state_dict(),
        }
        mem = state.to_tensors() if state is not None else None
        save_checkpoint(run_dir, step, model, mem, trainer_state, metadata)
        save_weights(model, run_dir / MODEL_FILE, metadata)

    # SIGINT / SIGTERM stop at the next step boundary, so the checkpoint written below is consistent;
    # a second signal interrupts at once.
    requested: list[int] = []

    def on_signal(signum, frame) -> None:
        if requested:
            raise KeyboardInterrupt
        requested.append(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    bar = tqdm(total=cfg.max_steps, initial=step, unit="step", disable=None if progress else True, dynamic_ncols=True)
    speeds: list[float] = []
    window_loss, window_steps, window_time = 0.0, 0, 0.0
    stop, saved_step = "max_steps", step if resume else -1
    model.train()
    try:
        while step < cfg.max_steps:
            if requested:
                stop = "interrupted"
                break
            if cfg.max_time and elapsed >= cfg.max_time:
                stop = "max_time"
                break
            t0 = time.perf_counter()
            batch = streams.next_batch()
            if batch.reset:
                state = None
            out = model(batch.x, state)
            loss = F.cross_entropy(out.logits.flatten(0, 1), batch.y.flatten())
            optimizer.zero_grad(set_to_none=True)
            (loss + model.aux_loss()).backward()
            clip_gradients(params, cfg.optim)
            optimizer.step()
            schedule.step()
            model.after_step()
            state = out.state
            step += 1
            dt = time.perf_counter() - t0
            elapsed += dt
            window_loss, window_steps, window_time = (
                window_loss + loss.item(),
                window_steps + 1,
                window_time + dt,
            )
            if step % cfg.log_every == 0 or step == cfg.max_steps:
                speed = window_steps * batch.x.numel() / window_time
                speeds.append(speed)
                bpc = window_loss / window_steps / math.log(2)
                metrics.write(
                    step=step,
                    train_bpc=bpc,
                    lr=schedule.get_last_lr()[0],
                    tokens_per_s=speed,
                    elapsed=elapsed,
                )
                bar.set_postfix(bpc=f"{bpc:.3f}", tok_s=f"{speed:.0f}")
                window_loss, window_steps, window_time = 0.0, 0, 0.0
            bar.update(1)
            if cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.max_steps:  # the last is the final pass
                ev = evaluate_lm(model, corpus.valid, cfg.eval_batch_size, cfg.segment_len, cfg.eval_bytes)
                metrics.write(step=step, valid_bpc=ev["bpc"], valid_bytes=ev["targets"], partial=bool(cfg.eval_bytes))
            if step % cfg.checkpoint_every == 0:
                checkpoint()
                saved_step = step
    except KeyboardInterrupt:
        stop = "interrupted"
    finally:
        bar.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if saved_step != step:
        checkpoint()
    summary: dict[str, Any] = {
        "run_dir": str(run_dir),
        "steps": step,
        "stop": stop,
        "train_time_s": round(elapsed, 2),
        "tokens_per_s_median": round(statistics.median(speeds), 1) if speeds else None,
        "params": model.num_parameters(),
    }
    if stop != "interrupted":
        ev = evaluate_lm(model, corpus.valid, cfg.eval_batch_size, cfg.segment_len, progress=progress)
        metrics.write(step=step, valid_bpc=ev["bpc"], valid_bytes=ev["targets"], partial=False, final=True)
        summary.update(valid_bpc=round(ev["bpc"], 4), valid_bytes=ev["targets"])
        if cfg.sample_len:
            prompt = bytes(corpus.valid[:120])
            summary["sample_prompt"] = decode(torch.tensor(list(prompt)))
            summary["sample"] = sample_text(model, prompt, cfg.sample_len, cfg.seed, cfg.segment_len)
    png = plot_learning_curve(run_dir / "metrics.jsonl", run_dir / "learning_curve.png", run_dir.name)
    summary["plot"] = str(png) if png else None
    return summary
