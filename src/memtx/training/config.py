"""Typed, frozen run configuration; every run saves the resolved one as ``config.json``."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from memtx.errors import CheckpointError, ConfigError
from memtx.models.config import ModelConfig, require_choices
from memtx.runtime import check_device_name
from memtx.tasks.babilong import task_name


@dataclass(frozen=True)
class DataConfig:
    corpus: str = "default"
    """'default' (embedded, ships with Python), 'pg9', 'enwik8', 'text8', or a path to a text file or folder."""
    data_dir: str | None = None
    """Where to find PG-9 (the gutenberg folder) or keep enwik8/text8 downloads; None = the usual places."""
    tokens: Literal["bytes", "words", "bpe"] = "bytes"
    """'bytes': byte-level; 'words': a word vocabulary (ids by frequency) built from the training split and saved
    as tokenizer.json in the run folder; corpora: wikitext-2, wikitext-103, pg9 (punctuation split off), a path.
    'bpe' (babilong only): byte-level BPE merged inside words, trained on the run's bAbI training stories and saved
    as tokenizer.json (memtx.data.bpe); needs model.vocab_size 0 (taken from it) or its size."""
    max_vocab: int = 0
    """words: keep the most frequent words (0 = all); the others become <unk>. bpe: vocabulary cap (0 = 1024)."""
    task: Literal["lm", "copy", "reverse", "assoc", "babilong"] = "lm"
    """'lm': language modelling of the corpus; 'copy', 'reverse', 'assoc': synthetic memory tasks generated on the
    fly over the step's segments (memtx.tasks.synthetic); 'babilong': bAbI questions in book text filling the
    step's segments (memtx.tasks.babilong_batches). The corpus is unused by tasks."""
    babi_tasks: tuple[str, ...] = ("qa1",)
    """babilong: bAbI tasks to train on (each row draws one)."""
    babi_variant: Literal["en", "en-10k"] = "en"
    """babilong: the bAbI training stories: 'en' (1,000 questions per task) or 'en-10k' (10,000; a task whose en-10k
    train file is missing, as qa3's is in shared/data, falls back to en with a warning). Evaluation always uses
    the en test stories."""
    inline_questions: bool = False
    """babilong training: also ask the story's earlier questions where bAbI asks them, each followed by its answer
    (scored like the final one): up to 5x the answer targets per row for qa1. Evaluation is unchanged."""
    question_curriculum: tuple[int, ...] = ()
    """babilong training: early questions first, e.g. 1 2: for question_stage_steps steps draw only the first question
    of each story (the one asked after the fewest facts), then questions asked at most second in their story, then
    every question. Empty = every question from the start."""
    question_stage_steps: int = 0
    """Steps per question_curriculum stage."""
    babi_noise: bool = True
    """babilong training: fill each row with book sentences around the facts. False: the facts alone (with their
    inline questions and fillers), left-padded, and validation at 0k: the noise-free one-window phase that teaches
    the lookup before the memory (preset babilong-qa1-window)."""
    fillers: int = 0
    """babilong training: after each fact, 0..N short filler sentences ("Then.", "Later.", ...; drawn per row), so
    that a fact's place stops telling how many facts back it is. Evaluation is unchanged."""
    ask: Literal["babi", "anyone", "far"] = "babi"
    """babilong training on qa1: 'anyone' replaces each row's final question with "Where is P?" for a person P
    drawn from everyone named so far, answered by qa1's rule (the room of P's last move), where bAbI's own
    questions mostly ask about someone who moved in the last two facts; 'far' asks about the person whose last move
    is the oldest (the hardest lookup). Evaluation keeps bAbI's questions."""
    dense_questions: bool = False
    """babilong training on qa1: in place of the story's own inline questions, ask after every fact but the last
    "Where is P?" for a person P drawn from everyone named so far, answered by qa1's rule: about one answer target
    per fact (bAbI asks after every second one), and about anyone, however long ago they moved. Evaluation is
    unchanged."""
    trim_padding: bool = False
    """babilong training with babi_noise False: drop the left padding that every row of a batch shares (keeping a
    multiple of 16 columns), so that a batch of short stories, as under question_curriculum, costs their length
    rather than the full row's. Batches stay a pure function of (seed, step)."""
    babi_dir: str | None = None
    """babilong: the bAbI v1.2 folder (None = shared/data/babi found above the working directory)."""
    noise_dir: str | None = None
    """babilong: folder of books for the distractor text (None = shared/data/gutenberg)."""
    symbols: int = 16
    """Synthetic tasks: alphabet size K (the model's vocab_size must be K + 2)."""
    pairs: int = 8
    """assoc: key-value pairs per sample."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "babi_tasks", tuple(self.babi_tasks))  # JSON gives a list
        object.__setattr__(self, "question_curriculum", tuple(self.question_curriculum))
        require_choices(self, "data")
        if (self.tokens == "bpe" and self.task != "babilong") or (self.tokens == "words" and self.task == "babilong"):
            raise ConfigError(
                f"data.tokens {self.tokens} does not go with data.task {self.task}: bpe is for babilong (bytes or "
                "bpe), words for language modelling"
            )
        if self.max_vocab < 0 or self.max_vocab == 1:
            raise ConfigError(f"data.max_vocab must be 0 (all) or >= 2, got {self.max_vocab}")
        if self.question_curriculum and (
            self.task != "babilong"
            or self.question_stage_steps < 1
            or any(not isinstance(k, int) or k < 1 for k in self.question_curriculum)
        ):
            raise ConfigError(
                "data.question_curriculum is for babilong: questions' places in their stories (>= 1), with "
                f"--data.question-stage-steps N (N >= 1); got {list(self.question_curriculum)} on {self.task}, "
                f"{self.question_stage_steps} steps"
            )
        if (not self.babi_noise or self.fillers or self.ask != "babi" or self.dense_questions) and (
            self.task != "babilong"
        ):
            raise ConfigError(
                "data.babi_noise, data.fillers, data.ask and data.dense_questions are for --data.task babilong"
            )
        if self.trim_padding and (self.task != "babilong" or self.babi_noise):
            raise ConfigError(
                "data.trim_padding is for babilong rows without book text: pass --data.task babilong "
                "--data.no-babi-noise"
            )
        if self.fillers < 0:
            raise ConfigError(f"data.fillers must be >= 0, got {self.fillers}")
        for option, on in (
            (f"data.ask {self.ask}", self.ask != "babi"),
            ("data.dense_questions", self.dense_questions),
        ):
            if on and {task_name(t) for t in self.babi_tasks} != {"qa1"}:
                raise ConfigError(
                    f"{option} asks qa1's question (where is a person) and needs --data.babi-tasks qa1, got "
                    f"{' '.join(self.babi_tasks)}"
                )
        if self.symbols < 2 or self.pairs < 1:
            raise ConfigError("data.symbols must be >= 2 and data.pairs >= 1")


@dataclass(frozen=True)
class OptimConfig:
    name: Literal["adagrad", "adam", "adamw"] = "adagrad"
    """'adagrad' (char-level runs of the paper) or 'adam' / 'adamw'."""
    lr: float = 0.07
    """Peak learning rate."""
    warmup: int = 0
    """Linear warm-up steps."""
    clip: float = 0.03
    """adagrad: per-tensor step-size clip at this gradient norm (official code); adam(w): global norm clip.
    0 = off."""
    weight_decay: float = 0.0
    """Weight decay (decoupled for adamw)."""
    beta1: float = 0.9
    beta2: float = 0.999
    decay_at: int = 0
    """Step at which the learning rate is multiplied by decay_factor (the paper's fine-tuning stage); 0 = never."""
    decay_factor: float = 0.1

    def __post_init__(self) -> None:
        _require_finite(self, "optim")
        require_choices(self, "optim")
        if self.lr <= 0:
            raise ConfigError(f"optim.lr must be > 0, got {self.lr}")
        for name in ("warmup", "decay_at"):
            if getattr(self, name) < 0:
                raise ConfigError(f"optim.{name} must be >= 0, got {getattr(self, name)}")
        if self.clip < 0 or self.weight_decay < 0:
            raise ConfigError("optim.clip and optim.weight_decay must be >= 0")


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a training run."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    batch_size: int = 16
    """B: parallel contiguous streams per step."""
    segment_len: int = 256
    """T: tokens per segment (the memory carries context from one segment to the next)."""
    unroll: int = 1
    """S: segments per step, run in order with the memory carried and gradients through it (see bptt_depth)."""
    bptt_depth: int = -1
    """Memory hand-overs that gradients cross within a step (0: none, -1: all S-1)."""
    curriculum: tuple[int, ...] = ()
    """Segments per step by stage, e.g. 1 2 4 8: each stage lasts stage_steps steps (the last runs to the end)
    and continues from the previous one's weights; a checkpoint is written at each new stage. Empty = unroll."""
    stage_steps: int = 0
    """Steps per curriculum stage."""
    curriculum_mix: bool = False
    """Past the first stage, every other step on average runs an earlier stage's segment count (drawn uniformly,
    a function of seed and step), so the shorter lengths stay trained while the longer ones are learned."""
    max_steps: int = 1000
    """Stop after this many optimiser steps."""
    max_time: float = 0.0
    """Stop after this many seconds of training (evaluation and checkpoints not counted); 0 = no limit."""
    seed: int = 0
    """Seed of parameters, dropout and sampling."""
    out: str = ""
    """Run folder; '' = runs/<preset>, or the next free runs/<preset>-N (with --resume: the newest of them; --resume
    without a preset takes the run's own config.json)."""
    log_every: int = 10
    """Steps between lines of metrics.jsonl."""
    eval_every: int = 0
    """Steps between validation passes (0 = only at the end)."""
    eval_bytes: int = 0
    """Validation bytes used by the periodic passes (0 = the whole split). The final pass uses the whole split."""
    eval_batch_size: int = 8
    """Parallel streams of the exact evaluation (each cold-starts its cache)."""
    eval_samples: int = 500
    """Synthetic tasks: held-out samples scored by each evaluation."""
    checkpoint_every: int = 500
    """Steps between checkpoints (one is also written at the end and when interrupted)."""
    sample_len: int = 300
    """Bytes sampled at the end of training (0 = none)."""
    keep_checkpoints: int = 2
    """Checkpoints kept in the run folder (the newest ones)."""
    max_bad_steps: int = 20
    """Consecutive steps with non-finite loss or gradients (each skipped) after which training stops."""
    parallel: Literal["ddp", "fsdp"] = "ddp"
    """Under torchrun: DDP (replicated weights) or FSDP2 fully_shard (sharded weights and optimizer state)."""
    device: str = "auto"
    """Where to train: 'auto' (the GPU when torch sees one, under torchrun each rank's own; else the CPU), 'cpu',
    'cuda' or 'cuda:N'. Not part of the run's identity: a run may resume on another device."""
    precision: Literal["fp32", "bf16"] = "fp32"
    """'bf16': the forward under bfloat16 autocast (projections in bf16; attention scores, softmax and the loss in
    float32); weights, gradients and optimizer state stay float32."""
    init_from: str = ""
    """Start from the weights of this run folder (its final model, else its newest checkpoint), with fresh optimiser,
    schedule and data; the other settings (curriculum, lengths, lr) may differ, the parameter shapes may not, except
    the memory mechanism's (model.memory), whose parameters the folder lacks start fresh: e.g. ARMT from an RMT run."""
    init_shrink: float = 1.0
    """With init_from: shrink and perturb (Ash & Adams 2020, arXiv 1910.08475): every parameter of two or more
    dimensions starts at init_shrink x the loaded one + (1 - init_shrink) x this run's own fresh initialisation
    (vectors: LayerNorms, biases, as loaded); 1 = as loaded. BABILong's filler phase from a phase-A model stuck
    reading facts by position escapes with 0.5 (results README)."""

    def __post_init__(self) -> None:
        _require_finite(self, "")
        require_choices(self, "")
        object.__setattr__(self, "curriculum", tuple(self.curriculum))  # JSON gives a list
        if any(not isinstance(s, int) or s < 1 for s in self.curriculum):
            raise ConfigError(f"curriculum must list segment counts >= 1, got {' '.join(map(str, self.curriculum))}")
        if self.curriculum and len(self.curriculum) > 1 and self.stage_steps < 1:
            raise ConfigError("a curriculum of several stages needs --stage-steps N (N >= 1)")
        check_device_name(self.device)
        for name in (
            "batch_size",
            "segment_len",
            "unroll",
            "eval_samples",
            "max_steps",
            "log_every",
            "eval_batch_size",
            "checkpoint_every",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        for name in ("max_time", "eval_every", "eval_bytes", "sample_len"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.init_shrink <= 1:
            raise ConfigError(
                f"init-shrink must be in (0, 1] (1 = the --init-from weights as loaded), got {self.init_shrink}"
            )
        if self.init_shrink < 1 and not self.init_from:
            raise ConfigError("init-shrink mixes the --init-from weights with fresh ones: pass --init-from RUN_DIR too")

    def stage_at(self, step: int) -> int:
        """The curriculum stage (0-based) at optimiser step `step` (0-based); 0 without a curriculum."""
        if not self.curriculum:
            return 0
        return min(step // self.stage_steps, len(self.curriculum) - 1) if self.stage_steps else len(self.curriculum) - 1

    def segments_at(self, step: int) -> int:
        """Segments per step at optimiser step `step` (0-based): the curriculum stage's (with curriculum_mix,
        sometimes an earlier one's), else unroll."""
        if not self.curriculum:
            return self.unroll
        stage = self.stage_at(step)
        if self.curriculum_mix and stage:
            draw = np.random.default_rng([self.seed, step, 0x6D6978]).integers(2 * stage)
            stage = int(draw) if draw < stage else stage
        return self.curriculum[stage]

    @property
    def final_segments(self) -> int:
        return self.curriculum[-1] if self.curriculum else self.unroll

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> RunConfig:
        try:
            return RunConfig(
                model=ModelConfig(**d["model"]),
                data=DataConfig(**d["data"]),
                optim=OptimConfig(**d["optim"]),
                **{k: v for k, v in d.items() if k not in ("model", "data", "optim")},
            )
        except (KeyError, TypeError) as e:
            raise CheckpointError(
                f"config.json does not describe a memtx run ({type(e).__name__}: {e}): pass a run folder written by "
                "'memtx train'"
            ) from e

    @staticmethod
    def load(run_dir: str | Path) -> RunConfig:
        path = Path(run_dir) / "config.json"
        try:
            return RunConfig.from_dict(json.loads(path.read_text()))
        except FileNotFoundError as e:
            raise CheckpointError(f"{path} not found: pass a run folder written by 'memtx train'") from e
        except (OSError, ValueError) as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise CheckpointError(f"cannot read {path} ({reason}): pass a run folder written by 'memtx train'") from e


def _require_finite(cfg, prefix: str) -> None:
    """NaN is never a valid setting (comparisons with it are always false, so range checks would let it in)."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, float) and math.isnan(value):
            raise ConfigError(f"{prefix + '.' if prefix else ''}{f.name.replace('_', '-')} is NaN: give a number")
