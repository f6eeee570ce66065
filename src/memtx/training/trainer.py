"""The training loop. It knows no mechanism: the model takes (x, state), returns (logits, state), and exposes
``aux_loss()`` and ``after_step()``; the loop carries the state and drops it when the streams wrap.

Under torchrun every rank runs this same loop on its rows of the global batch (see ``distributed.py``); rank 0
alone writes files, and every decision that ends or skips a step is taken on all-reduced values, so the ranks
never diverge.
"""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from memtx.data import TrainStreams, decode, load_corpus
from memtx.data.bpe import DEFAULT_VOCAB, BpeTokenizer, is_bpe_file
from memtx.data.char import BYTES
from memtx.data.word import WordTokenizer, load_token_corpus
from memtx.errors import CheckpointError, ConfigError, DataError, MemtxError, TrainingError
from memtx.evaluation.language_modeling import evaluate_lm
from memtx.evaluation.reasoning import evaluate_babilong
from memtx.evaluation.tasks import evaluate_task
from memtx.models.generation import generate
from memtx.models.segments import segments
from memtx.models.transformer_lm import TransformerLM, memory_from_tensors
from memtx.runtime import autocast, resolve_device
from memtx.tasks.babilong_batches import BabilongBatches
from memtx.tasks.synthetic import TaskBatches, check_task, vocab_size
from memtx.training import distributed
from memtx.training.checkpoint import (
    MODEL_FILE,
    checkpoint_dirs,
    initial_weights,
    latest_good_checkpoint,
    load_checkpoint,
    load_weights,
    model_metadata,
    save_checkpoint,
    save_weights,
    shrink_toward,
)
from memtx.training.config import RunConfig
from memtx.training.distributed import Ranks
from memtx.training.metrics import MetricsLog, plot_learning_curve, read_metrics
from memtx.training.optim import build_optimizer, build_schedule, clip_gradients

# Fields a resumed run must share with the run it continues (the others only say how long / how often).
IDENTITY_FIELDS = (
    "model",
    "data",
    "optim",
    "batch_size",
    "segment_len",
    "unroll",
    "bptt_depth",
    "curriculum",
    "stage_steps",
    "seed",
)


TOKENIZER_FILE = "tokenizer.json"


def training_batches(cfg: RunConfig, tokenizer: WordTokenizer | BpeTokenizer | None = None):
    """(batches, corpus, tokenizer): ordered corpus streams or a synthetic task; the corpus (None for a task) and
    the word or BPE tokenizer (None for bytes; built from the training split unless given)."""
    if cfg.data.task == "lm":
        if cfg.data.tokens == "words":
            corpus, tokenizer = load_token_corpus(cfg.data.corpus, cfg.data.data_dir, cfg.data.max_vocab, tokenizer)
        else:
            corpus = load_corpus(cfg.data.corpus, cfg.data.data_dir)
        streams = TrainStreams(corpus.train, cfg.batch_size, cfg.segment_len)
        streams.check_segments(max(cfg.curriculum or (cfg.unroll,)))
        return streams, corpus, tokenizer
    d = cfg.data
    if d.task == "babilong":
        if d.tokens == "bytes" and cfg.model.vocab_size != 256:
            raise ConfigError("babilong with --data.tokens bytes reads bytes: pass --model.vocab-size 256")
        batches = BabilongBatches(
            d.babi_tasks,
            cfg.batch_size,
            cfg.segment_len,
            cfg.seed,
            d.babi_dir,
            d.noise_dir,
            d.babi_variant,
            inline_questions=d.inline_questions,
            question_curriculum=d.question_curriculum,
            question_stage_steps=d.question_stage_steps,
            noise=d.babi_noise,
            fillers=d.fillers,
            ask=d.ask,
            dense_questions=d.dense_questions,
            trim_padding=d.trim_padding,
        )
        if d.tokens == "bpe":
            tokenizer = tokenizer or BpeTokenizer.train(batches.texts(), d.max_vocab or DEFAULT_VOCAB)
            batches.set_codec(tokenizer)
        return batches, None, tokenizer
    if cfg.model.vocab_size != vocab_size(d.symbols):
        raise ConfigError(
            f"task {d.task} with {d.symbols} symbols needs model.vocab_size {vocab_size(d.symbols)}, got "
            f"{cfg.model.vocab_size}: pass --model.vocab-size {vocab_size(d.symbols)}"
        )
    for n in set(cfg.curriculum or (cfg.unroll,)):
        check_task(d.task, d.symbols, d.pairs, n, cfg.segment_len)
    return TaskBatches(d.task, cfg.batch_size, cfg.segment_len, d.symbols, d.pairs, cfg.seed), None, None


def resolve_vocab(cfg: RunConfig, tokenizer: WordTokenizer | None) -> RunConfig:
    """Set model.vocab_size from the word vocabulary (when 0), or check it against the vocabulary."""
    if tokenizer is None:
        return cfg
    if cfg.model.vocab_size == 0:
        return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, vocab_size=tokenizer.vocab_size))
    if cfg.model.vocab_size != tokenizer.vocab_size:
        raise ConfigError(
            f"model.vocab_size {cfg.model.vocab_size} differs from the {tokenizer.vocab_size} tokens of the "
            "vocabulary: pass --model.vocab-size 0 to take it from the vocabulary"
        )
    return cfg


def load_tokenizer(run_dir: Path) -> WordTokenizer | BpeTokenizer | None:
    """The word or BPE tokenizer saved with a run, None for a byte-level run."""
    path = Path(run_dir) / TOKENIZER_FILE
    if not path.exists():
        return None
    return BpeTokenizer.load(path) if is_bpe_file(path) else WordTokenizer.load(path)


def babilong_codec(run_dir: Path, cfg: RunConfig):
    """The tokens a BABILong run reads: ``char.BYTES``, or the BPE tokenizer saved with it."""
    codec = load_tokenizer(run_dir) or BYTES
    if cfg.data.tokens == "bpe" and not isinstance(codec, BpeTokenizer):
        raise DataError(f"{run_dir} has no BPE {TOKENIZER_FILE}: restore it from the run's original folder")
    if codec.vocab_size != cfg.model.vocab_size or (cfg.data.tokens != "bpe" and codec is not BYTES):
        raise ConfigError(f"{run_dir} reads neither bytes nor BPE tokens: BABILong is scored in those")
    return codec


class StepLoss(torch.nn.Module):
    """One optimiser step's forward: the mean loss over the scored targets of its segments (memory carried,
    truncated BPTT), the state after them, and the fraction of targets predicted right (nan with the adaptive
    softmax, which skips full scores). One module call per backward, however many segments: DDP reduces the
    gradients of a backward that follows exactly one forward of the module it wraps."""

    def __init__(self, model: TransformerLM, segment_len: int, bptt_depth: int) -> None:
        super().__init__()
        self.model, self.segment_len, self.bptt_depth = model, segment_len, bptt_depth

    def forward(self, x: torch.Tensor, y: torch.Tensor, state) -> tuple[torch.Tensor, Any, float]:
        nats, correct = 0.0, 0
        count = int((y != -100).sum())
        # a task's answers among text (BABILong: ~1 token in 200): the head runs on their rows alone
        scores = "targets" if 2 * count < y.numel() else "all"
        for _, out in segments(self.model, x, state, self.segment_len, self.bptt_depth, y, scores):
            nats = nats + out.nll.sum()
            correct += int(out.hits.sum()) if out.hits is not None else float("nan")
            state = out.state
        # detached here, not by the next step: a state still attached to the graph makes DDP count parameters that
        # only shape the handed-on memory (ARMT's write) as used, then wait forever for their gradients
        state = state.detach() if state is not None else None
        return nats / max(count, 1), state, correct / max(count, 1)


def evaluate(model, cfg: RunConfig, corpus, batches, ranks: Ranks, final: bool, progress: bool = False) -> dict:
    """Validation metrics: exact bpc (perplexity for words) of the corpus split, or accuracy on held-out task
    samples."""
    if cfg.data.task == "babilong":  # at the training length (noise-free rows: the facts alone, 0k)
        length = str(max(cfg.final_segments * cfg.segment_len - 64, 0) if cfg.data.babi_noise else 0)
        d = cfg.data
        # the valid stories held out of the train file: the test split stays unseen until `memtx babilong`
        rows = list(evaluate_babilong(model, cfg.segment_len, list(d.babi_tasks), [length], cfg.eval_samples, 0,
                                      d.babi_dir, d.noise_dir, batch_size=cfg.eval_batch_size, codec=batches.codec,
                                      split="valid", variant=d.babi_variant))  # fmt: skip
        correct, n = sum(r["correct"] for r in rows), sum(r["samples"] for r in rows)
        return {"valid_accuracy": correct / n, "valid_samples": n, "valid_length": int(length)}
    if corpus is None:
        ev = evaluate_task(model, batches, cfg.eval_samples, cfg.final_segments, cfg.eval_batch_size)
        return {"valid_accuracy": ev["accuracy"], "valid_exact": ev["exact"], "valid_samples": ev["samples"]}
    ev = evaluate_lm(
        model,
        corpus.valid,
        cfg.eval_batch_size,
        cfg.segment_len,
        0 if final else cfg.eval_bytes,
        progress=progress,
        rank=ranks.rank,
        world=ranks.world,
    )
    if cfg.data.tokens == "words":
        return {"valid_ppl": math.exp(ev["nats"] / ev["targets"]), "valid_words": ev["targets"]}
    return {"valid_bpc": ev["bpc"], "valid_bytes": ev["targets"]}


def check_run_dir(cfg: RunConfig, run_dir: Path, resume: bool) -> None:
    """Refuse to overwrite a run, or to resume one with other settings."""
    if resume:
        saved = RunConfig.load(run_dir) if (run_dir / "config.json").is_file() else None
        if saved is None:
            raise CheckpointError(f"--resume: {run_dir} holds no run; drop --resume to start one there")
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


def write_config(cfg: RunConfig, run_dir: Path) -> None:
    """The resolved config.json (atomic)."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        tmp = run_dir / "config.json.tmp"
        tmp.write_text(cfg.to_json())
        tmp.replace(run_dir / "config.json")
    except OSError as e:
        raise CheckpointError(f"cannot write the run folder {run_dir} ({e.strerror}): choose another --out") from e


def _truncate_metrics(log: MetricsLog, step: int) -> None:
    """On resume, drop records written after the checkpoint (they will be written again); atomic."""
    kept = [r for r in read_metrics(log.path) if r.get("step", 0) <= step]
    tmp = log.path.with_name(log.path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
    tmp.replace(log.path)


def sample_text(
    model: TransformerLM,
    prompt: bytes | str,
    length: int,
    seed: int,
    segment_len: int,
    temperature: float = 0.8,
    top_k: int | None = None,
    tokenizer: WordTokenizer | None = None,
    compile: bool = False,
) -> str:
    """Decoded continuation of `prompt` (bytes for a byte-level model, text for a word-level one; a newline or
    <eos> when empty): `length` tokens, detokenised."""
    if tokenizer is None:
        ids = list(prompt or b"\n")
    else:
        ids = [int(i) for i in tokenizer.encode(prompt)][:-1] if str(prompt).strip() else [tokenizer.eos_id]
    gen = torch.Generator().manual_seed(seed)
    x = torch.tensor([ids], dtype=torch.long)
    out = generate(
        model, x, length, temperature=temperature, top_k=top_k, segment_len=segment_len, generator=gen, compile=compile
    )
    return decode(out[0]) if tokenizer is None else tokenizer.decode(out[0].tolist())


def _on_main(ranks: Ranks, fn, *args):
    """Run fn on rank 0 only; every rank raises the same MemtxError if it failed."""
    error = None
    if ranks.is_main:
        try:
            fn(*args)
        except MemtxError as e:
            error = e
    error = distributed.broadcast_object(error, ranks)
    if error is not None:
        raise error


def train(cfg: RunConfig, run_dir: Path, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train (or continue) a run; returns a summary (also the last lines of metrics.jsonl)."""
    device = resolve_device(cfg.device)
    ranks = distributed.setup(cfg.batch_size, device)
    try:
        return _train(cfg, run_dir, resume, progress and ranks.is_main, ranks, device)
    finally:
        distributed.teardown(ranks)


def _train(
    cfg: RunConfig, run_dir: Path, resume: bool, progress: bool, ranks: Ranks, device: torch.device
) -> dict[str, Any]:
    init = initial_weights(Path(cfg.init_from)) if cfg.init_from else None
    # a resumed run keeps its words; a run started from another one's weights takes that one's words
    words_from = run_dir if resume else Path(cfg.init_from) if cfg.init_from else None
    tokenizer = load_tokenizer(words_from) if words_from is not None and ranks.is_main else None
    tokenizer = distributed.broadcast_object(tokenizer, ranks)
    streams, corpus, tokenizer = training_batches(cfg, tokenizer)  # fail on bad data before touching the folder
    cfg = resolve_vocab(cfg, tokenizer)
    rows = ranks.rows(cfg.batch_size)
    _on_main(ranks, check_run_dir, cfg, run_dir, resume)
    torch.manual_seed(cfg.seed)
    model = TransformerLM(cfg.model)
    metrics = MetricsLog(run_dir / "metrics.jsonl")
    metadata = model_metadata(dataclasses.asdict(cfg.model))
    step, elapsed, state, skipped, trainer_state = 0, 0.0, None, 0, None
    ckpt = latest_good_checkpoint(run_dir) if resume and ranks.is_main else None
    ckpt = distributed.broadcast_object(ckpt, ranks)
    if resume and ckpt is None and checkpoint_dirs(run_dir):
        raise CheckpointError(f"--resume: no usable checkpoint in {run_dir}: pass --out NEW_DIR to start again")
    if ckpt is not None:
        memory, trainer_state = load_checkpoint(ckpt, model)
        step, elapsed, skipped = int(trainer_state["step"]), float(trainer_state["elapsed"]), trainer_state["skipped"]
        streams.load_state_dict(trainer_state["streams"])
        state = memory_from_tensors({k: v[rows].to(device) for k, v in memory.items()}) if memory is not None else None
    elif init is not None:
        start_weights = {k: p.detach().clone() for k, p in model.named_parameters()} if cfg.init_shrink < 1 else None
        # on every rank (FSDP shards, it does not broadcast); the memory mechanism may differ from the init's
        fresh = load_weights(model, init, fresh_prefix="memory.")
        if start_weights is not None:  # every rank drew the same fresh weights (seeded above)
            shrink_toward(model, start_weights, cfg.init_shrink)
        if fresh and ranks.is_main:
            print(f"memtx: --init-from: {len(fresh)} memory tensors start fresh ({fresh[0]}, ...)", file=sys.stderr)
    model.to(device)
    _on_main(ranks, write_config, cfg, run_dir)  # only now: a resume that failed to load changed nothing
    if tokenizer is not None and ranks.is_main:
        tokenizer.save(run_dir / TOKENIZER_FILE)
    if ranks.is_main:
        if ckpt is not None:
            _truncate_metrics(metrics, step)
        else:
            if resume:
                print(f"memtx: warning: no checkpoint yet in {run_dir}; starting it from step 0", file=sys.stderr)
            metrics.path.write_text("")
            data_info = corpus.info if corpus is not None else dataclasses.asdict(cfg.data)
            start = {"init_from": str(init)} if init is not None else {}
            metrics.write(
                step=0, event="start", params=model.num_parameters(), corpus=data_info, ranks=ranks.world, **start
            )
    net = distributed.wrap(StepLoss(model, cfg.segment_len, cfg.bptt_depth), model, ranks, cfg.parallel)
    params = list(model.parameters())
    optimizer = build_optimizer(params, cfg.optim)
    schedule = build_schedule(optimizer, cfg.optim)
    if trainer_state is not None:
        distributed.load_optimizer_state(model, optimizer, trainer_state["optimizer"])
        schedule.load_state_dict(trainer_state["scheduler"])
        rng, cuda_rng = trainer_state["rng"], trainer_state.get("cuda_rng")
        torch.set_rng_state(rng[ranks.rank] if len(rng) == ranks.world else rng[0])
        if device.type == "cuda" and cuda_rng:  # the GPU's dropout stream, when the run was on a GPU before
            torch.cuda.set_rng_state(cuda_rng[ranks.rank] if len(cuda_rng) == ranks.world else cuda_rng[0], device)
    elif ranks.rank:
        torch.manual_seed(cfg.seed + ranks.rank)  # own dropout stream; rank 0 continues exactly as one process

    def checkpoint() -> None:
        mem = distributed.gather_rows(state.to_tensors(), ranks) if state is not None else None
        mem = {k: v.cpu() for k, v in mem.items()} if mem is not None else None
        rng = distributed.gather_objects(torch.get_rng_state(), ranks)
        cuda_rng = distributed.gather_objects(torch.cuda.get_rng_state(device), ranks) if device.type == "cuda" else []
        weights, optimizer_state = distributed.full_state(model, optimizer)
        if ranks.is_main:
            trainer_state = {
                "step": step,
                "elapsed": elapsed,
                "skipped": skipped,
                "optimizer": optimizer_state,
                "scheduler": schedule.state_dict(),
                "rng": rng,
                "cuda_rng": cuda_rng,
                "streams": streams.state_dict(),
            }
            save_checkpoint(run_dir, step, weights, mem, trainer_state, metadata, cfg.keep_checkpoints)
            save_weights(weights, run_dir / MODEL_FILE, metadata)

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
    window_loss, window_steps, window_time, window_acc, bad_run = 0.0, 0, 0.0, 0.0, 0
    stop, saved_step = "max_steps", step if ckpt is not None else -1
    model.train()
    try:
        while step < cfg.max_steps:
            # decided by all ranks together, before a batch is consumed (so a resume continues with that batch)
            timed_out = bool(cfg.max_time) and elapsed >= cfg.max_time
            (halt,) = distributed.all_reduce([float(bool(requested)) + 2.0 * timed_out], ranks, op="max")
            if halt:
                stop = "interrupted" if halt % 2 else "max_time"
                break
            t0 = time.perf_counter()
            n_segments = cfg.segments_at(step)
            if step and cfg.stage_at(step) != cfg.stage_at(step - 1) and saved_step != step:
                checkpoint()  # a curriculum stage ends: keep its weights
                saved_step = step
            batch = streams.next_batch(n_segments)
            if batch.reset:
                state = None
            with autocast(device, cfg.precision):
                loss, next_state, accuracy = net(batch.x[rows].to(device), batch.y[rows].to(device), state)
            optimizer.zero_grad(set_to_none=True)
            (loss + model.aux_loss()).backward()
            grad_norm = clip_gradients(params, cfg.optim)
            (loss_sum,) = distributed.all_reduce([loss.item()], ranks)  # gradients are already synchronised
            distributed.sync_max_buffers(model, ranks)
            mean_loss, finite = loss_sum / ranks.world, math.isfinite(loss_sum) and math.isfinite(grad_norm)
            if finite:
                optimizer.step()
                schedule.step()
                model.after_step()
                state = next_state
                bad_run = 0
            else:  # skip: no update, drop the memory that may carry the non-finite values
                optimizer.zero_grad(set_to_none=True)
                state, skipped, bad_run = None, skipped + 1, bad_run + 1
            step += 1
            dt = time.perf_counter() - t0
            elapsed += dt
            if not finite:
                if ranks.is_main:
                    metrics.write(
                        step=step, skipped="non-finite loss or gradients", loss=mean_loss, grad_norm=grad_norm
                    )
                if bad_run >= cfg.max_bad_steps:
                    good = latest_good_checkpoint(run_dir) if ranks.is_main else None
                    raise TrainingError(
                        f"training diverged: {bad_run} consecutive steps had non-finite loss or gradients "
                        f"(last checkpoint: {good.name if good else 'none'}): lower --optim.lr or raise "
                        "--optim.warmup, then --resume"
                    )
                bar.update(1)
                continue
            window_loss, window_steps, window_time = window_loss + mean_loss, window_steps + 1, window_time + dt
            window_acc += accuracy
            if step % cfg.log_every == 0 or step == cfg.max_steps:
                speed = window_steps * batch.x.numel() / window_time
                speeds.append(speed)
                mean = window_loss / window_steps
                if cfg.data.tokens == "words":
                    extra = {"train_ppl": math.exp(mean)}
                else:
                    extra = {"train_bpc": mean / math.log(2)}
                    if corpus is None:
                        extra["train_accuracy"] = window_acc / window_steps
                if ranks.is_main:
                    metrics.write(
                        step=step,
                        lr=schedule.get_last_lr()[0],
                        tokens_per_s=speed,
                        elapsed=elapsed,
                        segments=n_segments,
                        **extra,
                    )
                bar.set_postfix(tok_s=f"{speed:.0f}", **{k[6:]: f"{v:.3f}" for k, v in extra.items()})
                window_loss, window_steps, window_time, window_acc = 0.0, 0, 0.0, 0.0
            bar.update(1)
            if cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.max_steps:  # the last is the final pass
                ev = evaluate(model, cfg, corpus, streams, ranks, final=False)
                if ranks.is_main:
                    metrics.write(step=step, **ev, partial=bool(cfg.eval_bytes) and corpus is not None)
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
        "skipped_steps": skipped,
        "ranks": ranks.world,
    }
    if stop != "interrupted":
        ev = evaluate(model, cfg, corpus, streams, ranks, final=True, progress=progress)
        summary.update({k: round(v, 4) if isinstance(v, float) else v for k, v in ev.items()})
        if ranks.is_main:
            metrics.write(step=step, **ev, partial=False, final=True)
        if cfg.sample_len and corpus is not None:  # on every rank (a sharded model needs them all): the same text
            if tokenizer is None:
                prompt = bytes(corpus.valid[:120])
                summary["sample_prompt"] = decode(torch.tensor(list(prompt)))
            else:
                prompt = summary["sample_prompt"] = tokenizer.decode(corpus.valid[:30].tolist())
            summary["sample"] = sample_text(
                model, prompt, cfg.sample_len, cfg.seed, cfg.segment_len, tokenizer=tokenizer
            )
    if ranks.is_main:
        png = plot_learning_curve(run_dir / "metrics.jsonl", run_dir / "learning_curve.png", run_dir.name)
        summary["plot"] = str(png) if png else None
    return summary
