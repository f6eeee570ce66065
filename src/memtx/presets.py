"""Named recipes: one per reported configuration, with the paper and table in each description.

Paper presets copy the official facebookresearch/adaptive-span scripts (enwik8_pers_small.sh, enwik8_pers.sh for
All-attention; enwik8.sh, enwik8_large.sh, text8.sh, text8_large.sh for the adaptive-span Transformer baselines
that the All-attention paper compares with). Their fine-tuning stage (10x smaller learning rate for the last
steps) is ``optim.decay_at``. The official repo ships no text8 All-attention script; the paper trains the same
models on text8, so the text8 All-attention presets reuse the enwik8 ones. Batch sizes are global (the official
runs split them over 8 GPUs).
"""

from __future__ import annotations

from dataclasses import replace

from memtx.models.config import ModelConfig
from memtx.training.config import DataConfig, OptimConfig, RunConfig

DEFAULT_PRESET = "quickstart"

_PAPER_OPTIM = OptimConfig(name="adagrad", lr=0.07, warmup=32000, clip=0.03)


def _paper(corpus: str, model: ModelConfig, steps: int, decay_at: int) -> RunConfig:
    return RunConfig(
        model=model,
        data=DataConfig(corpus=corpus),
        optim=replace(_PAPER_OPTIM, decay_at=decay_at),
        batch_size=64,
        segment_len=512,
        max_steps=steps,
        log_every=100,
        eval_every=10000,
        eval_bytes=500_000,
        checkpoint_every=5000,
    )


def _allattn(n_layers: int, n_persistent: int, dropout: float) -> ModelConfig:
    return ModelConfig(
        n_layers=n_layers,
        d_model=512,
        n_heads=8,
        block="allattn",
        n_persistent=n_persistent,
        span=8192,
        dropout=dropout,
        adaptive_span=True,
        span_loss=1e-7,
        span_cache=True,
    )


def _adaptive_span_transformer(n_layers: int, d_model: int, d_ff: int, dropout: float) -> ModelConfig:
    return ModelConfig(
        n_layers=n_layers,
        d_model=d_model,
        n_heads=8,
        block="transformer",
        n_persistent=0,
        d_ff=d_ff,
        span=8192,
        dropout=dropout,
        adaptive_span=True,
        span_loss=5e-7,
        span_cache=True,
    )


_PG9_MODEL = ModelConfig(n_layers=8, d_model=256, n_heads=4, block="allattn", n_persistent=256, span=512)
_PG9 = RunConfig(
    model=_PG9_MODEL,
    data=DataConfig(corpus="pg9"),
    optim=OptimConfig(name="adam", lr=1e-3, warmup=100, clip=1.0),
    batch_size=16,
    segment_len=256,
    max_steps=100_000,
    log_every=10,
    eval_every=0,
    checkpoint_every=200,
)

PRESETS: dict[str, tuple[str, RunConfig]] = {
    "quickstart": (
        "Small All-attention model (4x128, N=128) on the embedded corpus (Python's own docs); ~2 minutes on 2 cores.",
        RunConfig(
            model=ModelConfig(n_layers=4, d_model=128, n_heads=4, n_persistent=128, span=256),
            data=DataConfig(corpus="default"),
            optim=OptimConfig(name="adam", lr=2e-3, warmup=50, clip=1.0),
            batch_size=16,
            segment_len=128,
            max_steps=700,
            log_every=10,
            eval_every=100,
            checkpoint_every=100,
        ),
    ),
    "pg9-allattn-8x256": (
        "PG-9 chars: All-attention 8 layers, d 256, 4 heads, N=256 persistent, segment 256, span 512, batch 16.",
        _PG9,
    ),
    "pg9-transformer-8x256": (
        "PG-9 chars: its Transformer twin (FFN width 254: equal parameters to within 16), same training.",
        replace(_PG9, model=replace(_PG9_MODEL, block="transformer", n_persistent=0, d_ff=254)),
    ),
    "enwik8-allattn-small": (
        "Sukhbaatar et al. 2019, Table 1: All-attention small (18L, d 512, N=1024, span 8192), 39M, 1.01 bpb.",
        _paper("enwik8", _allattn(18, 1024, 0.3), 480_000, 450_000),
    ),
    "enwik8-allattn-large": (
        "Sukhbaatar et al. 2019, Table 1: All-attention large (36L, d 512, N=2048, span 8192), 114M, 0.98 bpb.",
        _paper("enwik8", _allattn(36, 2048, 0.4), 210_000, 200_000),
    ),
    "text8-allattn-small": (
        "Sukhbaatar et al. 2019, Table 2: All-attention small on text8 (18L, d 512, N=1024), 39M, 1.11 bpc.",
        _paper("text8", _allattn(18, 1024, 0.3), 480_000, 450_000),
    ),
    "text8-allattn-large": (
        "Sukhbaatar et al. 2019, Table 2: All-attention large on text8 (36L, d 512, N=2048), 114M, 1.08 bpc.",
        _paper("text8", _allattn(36, 2048, 0.4), 210_000, 200_000),
    ),
    "enwik8-transformer-small": (
        "Baseline of Table 1: adaptive-span Transformer (12L, d 512, FFN 2048, span 8192), 39M, 1.02 bpb.",
        _paper("enwik8", _adaptive_span_transformer(12, 512, 2048, 0.3), 600_000, 0),
    ),
    "enwik8-transformer-large": (
        "Baseline of Table 1: adaptive-span Transformer (24L, d 768, FFN 4096, span 8192), 209M, 0.98 bpb.",
        _paper("enwik8", _adaptive_span_transformer(24, 768, 4096, 0.4), 170_000, 150_000),
    ),
    "text8-transformer-small": (
        "Baseline of Table 2: adaptive-span Transformer (12L, d 512, FFN 2048, span 8192), 38M, 1.11 bpc.",
        _paper("text8", _adaptive_span_transformer(12, 512, 2048, 0.3), 900_000, 0),
    ),
    "text8-transformer-large": (
        "Baseline of Table 2: adaptive-span Transformer (24L, d 768, FFN 4096, span 8192), 209M, 1.07 bpc.",
        _paper("text8", _adaptive_span_transformer(24, 768, 4096, 0.4), 270_000, 250_000),
    ),
}
