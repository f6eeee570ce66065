"""Helpers shared by the tests: a tiny corpus the tests make themselves and tiny run configurations."""

from dataclasses import replace

import numpy as np

from memtx.models.config import ModelConfig
from memtx.training.config import DataConfig, OptimConfig, RunConfig

WORDS = "the memory of a persistent vector keeps what the attention reads and writes across segments".split()


def make_text(n_bytes: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    out, size = [], 0
    while size < n_bytes:
        sentence = " ".join(rng.choice(WORDS, size=rng.integers(4, 12))).capitalize() + ".\n"
        out.append(sentence)
        size += len(sentence)
    return "".join(out)[:n_bytes]


def tiny_run(corpus: str, **overrides) -> RunConfig:
    model = ModelConfig(n_layers=2, d_model=16, n_heads=2, n_persistent=4, span=16, dropout=0.1)
    cfg = RunConfig(
        model=model,
        data=DataConfig(corpus=corpus),
        optim=OptimConfig(name="adagrad", lr=0.05, warmup=3, clip=0.03),
        batch_size=2,
        segment_len=8,
        max_steps=6,
        log_every=1,
        eval_batch_size=2,
        checkpoint_every=100,
        sample_len=0,
    )
    return replace(cfg, **overrides)
