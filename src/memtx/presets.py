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

# Synthetic memory tasks (RMT paper, section 4.1) sized for 2 CPU cores: 16 symbols, segments of 16 tokens,
# 8 segments at the last curriculum stage (1 -> 2 -> 4 -> 8). The All-attention layer with each memory.
_TASK_MODEL = ModelConfig(
    vocab_size=18, n_layers=4, d_model=128, n_heads=4, block="allattn", n_persistent=64, span=64, mem_tokens=16
)
_TASK = RunConfig(
    model=_TASK_MODEL,
    data=DataConfig(task="copy", symbols=16),
    optim=OptimConfig(name="adam", lr=1e-3, warmup=100, clip=1.0),
    batch_size=32,
    segment_len=16,
    curriculum=(1, 2, 4, 8),
    stage_steps=200,
    max_steps=100_000,
    max_time=300,
    log_every=20,
    eval_every=200,
    eval_samples=500,
    eval_batch_size=100,
    checkpoint_every=300,
    sample_len=0,
)
_RMT = replace(_TASK_MODEL, memory="rmt")
_ARMT = replace(_TASK_MODEL, memory="armt", mem_dim=32)
# an XL cache holding the floats of the RMT state (M x D): M / L states per layer
_XL = replace(_TASK_MODEL, memory="xl", xl_len=_TASK_MODEL.mem_tokens // _TASK_MODEL.n_layers, mem_tokens=0)
_ASSOC = replace(_TASK, data=DataConfig(task="assoc", symbols=16, pairs=4), curriculum=(2, 4, 8))


def _task(name: str, model: ModelConfig, base: RunConfig = _TASK) -> RunConfig:
    vocab = base.data.symbols + 2
    return replace(base, model=replace(model, vocab_size=vocab), data=replace(base.data, task=name))


# Word level. WikiText-103: the paper's 36-layer model (PAPERS.md section 1) with adaptive input and softmax (bands of
# 20K / 40K / ~208K words, factor 4, tied) and Adam 2.5e-4, global clip 1. The paper gives no batch or schedule for
# it; batch 64 x 256 tokens and 16k warm-up steps follow Baevski & Auli's fairseq recipe.
_WT103_MODEL = ModelConfig(
    vocab_size=0,
    n_layers=36,
    d_model=512,
    n_heads=8,
    block="allattn",
    n_persistent=2048,
    span=2048,
    dropout=0.3,
    adaptive=True,
    cutoffs=(20_000, 60_000),
)
_WT103 = RunConfig(
    model=_WT103_MODEL,
    data=DataConfig(corpus="wikitext-103", tokens="words"),
    optim=OptimConfig(name="adam", lr=2.5e-4, warmup=16_000, clip=1.0),
    batch_size=64,
    segment_len=256,
    max_steps=286_000,
    log_every=100,
    eval_every=10_000,
    eval_bytes=0,
    checkpoint_every=5000,
    sample_len=100,
)
# PG-9 words on this CPU: 4 x 256, vocabulary of the 32,768 most frequent words (punctuation split off),
# adaptive bands 2K / 8K / rest.
_PG9_WORD_MODEL = ModelConfig(
    vocab_size=0,
    n_layers=4,
    d_model=256,
    n_heads=4,
    block="allattn",
    n_persistent=256,
    span=256,
    adaptive=True,
    cutoffs=(2000, 10_000),
)
_PG9_WORD = RunConfig(
    model=_PG9_WORD_MODEL,
    data=DataConfig(corpus="pg9", tokens="words", max_vocab=32_768),
    optim=OptimConfig(name="adam", lr=1e-3, warmup=100, clip=1.0),
    batch_size=16,
    segment_len=128,
    max_steps=100_000,
    max_time=1200,
    log_every=20,
    eval_every=0,
    checkpoint_every=500,
    sample_len=40,
)

# BABILong from scratch on 2 CPU cores (Kuratov et al. 2024): byte-level 4x128 models, segments of 128 bytes,
# curriculum 1 -> 2 -> ... -> 32 segments, 250 steps a stage (samples of 128 .. 4096 bytes of book text with the facts
# inside; ending at 32 rather than 8 took ARMT qa1 at 64k from 0 to 48% in the same 60 min, README), 60 min;
# the en-10k training stories (en for qa3, whose en-10k train file shared/data lacks); each row also asks its story's
# earlier questions in place (inline_questions: ARMT qa1 46 -> 61%, qa1-5 27 -> 32% at 960 bytes, README).
_BABI_MODEL = ModelConfig(
    n_layers=4, d_model=128, n_heads=4, block="transformer", n_persistent=0, d_ff=512, span=256, mem_tokens=16
)
_BABI = RunConfig(
    model=_BABI_MODEL,
    data=DataConfig(task="babilong", babi_tasks=("qa1",), babi_variant="en-10k", inline_questions=True),
    optim=OptimConfig(name="adam", lr=1e-3, warmup=100, clip=1.0),
    batch_size=16,
    segment_len=128,
    curriculum=(1, 2, 4, 8, 16, 32),
    stage_steps=250,
    max_steps=100_000,
    max_time=3600,
    log_every=20,
    eval_every=400,
    eval_samples=200,
    checkpoint_every=400,
    sample_len=0,
)
_BABI_MEMORIES = {
    "rmt": ("Transformer + 16 RMT memory tokens", replace(_BABI_MODEL, memory="rmt")),
    "armt": ("Transformer + ARMT associative memory", replace(_BABI_MODEL, memory="armt", mem_dim=32)),
    "allattn-rmt": (
        "All-attention (N=256) + 16 RMT memory tokens",
        replace(_BABI_MODEL, memory="rmt", block="allattn", n_persistent=256),
    ),
    "xl": ("Transformer + XL cache of 256 states (baseline)", replace(_BABI_MODEL, memory="xl", mem_tokens=0)),
}


def _babilong_presets() -> dict[str, tuple[str, RunConfig]]:
    out = {}
    for tasks, name in ((("qa1",), "qa1"), (("qa1", "qa2", "qa3", "qa4", "qa5"), "qa1-5")):
        for key, (what, model) in _BABI_MEMORIES.items():
            cfg = replace(_BABI, model=model, data=replace(_BABI.data, babi_tasks=tasks))
            out[f"babilong-{name}-{key}"] = (f"BABILong {name} from scratch: {what}, byte level, 60 min.", cfg)
    return out


# The qa1 route that met #4's goals (README, benchmarks/results/babilong "Phase C"), in phases. A teaches the lookup
# ("the room of this person's last move") where it is cheap, in one noise-free window of BPE tokens: questions about
# anyone named, early questions first (each batch only as wide as its longest story: the early short stories cost
# their length, not the full window's); smeared keys and a learned recency bias. It is then continued with filler
# sentences between the facts (--init-from A --data.fillers 2 --data.question-curriculum --max-steps 2000): with
# fillers from the first step, three runs sat at or below the last-room shortcut for 2,000-3,500 steps. B carries
# the lookup to book noise and length: the ARMT preset from the window weights (--init-from; ARMT's memory starts
# fresh), in BPE tokens, 100 steps a stage; C continues B at 32 segments with a lower learning rate (README).
# Whether the filler continuation escapes the last-two-facts plateau is decided by A's weights, not the fill's seed:
# of five 2-rank A seeds (--data.no-inline-questions --max-steps 2000), 0 and 6 escape, 1, 4 and 5 do not (session 28);
# since training holds out the valid stories (session 29) the draw is new: of seeds 0-3 only 3 escaped; since the
# causal attention layout takes the recency mask (session 30; other float rounding) seed 1 escapes, 0 does not.
# Session 31: with the fill started from A's weights shrunk halfway toward a fresh init (--init-shrink 0.5, shrink
# and perturb) the bad As tried at 49-77% escaped too, those under 40% did not (session 32); benchmarks/qa1_hour.py
# passes it, skips As under --a-min 0.45 and tries seeds until one escapes.
_WINDOW_MODEL = replace(_BABI_MODEL, vocab_size=0, memory="rmt", smear_keys=True, recency_bias=True)
_WINDOW = replace(
    _BABI,
    model=_WINDOW_MODEL,
    data=replace(
        _BABI.data, tokens="bpe", babi_noise=False, ask="anyone", question_curriculum=(1, 2, 3, 4),
        question_stage_steps=1000, trim_padding=True,
    ),
    segment_len=192,
    curriculum=(),
    max_steps=5000,
    max_time=0,
    eval_every=500,
    checkpoint_every=1000,
)  # fmt: skip
_FROM_WINDOW = replace(
    _BABI,
    model=replace(_WINDOW_MODEL, memory="armt", mem_dim=32),
    data=replace(_BABI.data, tokens="bpe"),
    stage_steps=100,
    max_steps=853,
    max_time=0,
    eval_every=200,
)
# The qa1 route inside #4's hour (96% at 4,032 tokens; README, "Inside the hour"): phase A cut to 2,000 steps
# without inline questions + 2,500 filler steps (~15 min), then this B: questions after every fact, 50 steps a stage,
# the learning rate cut at step 420, 665 steps (~43 min; the route's B ran to the hour's remaining time, 665 steps).
_FROM_WINDOW_HOUR = replace(
    _FROM_WINDOW,
    data=replace(_FROM_WINDOW.data, dense_questions=True),
    optim=replace(_FROM_WINDOW.optim, decay_at=420, decay_factor=0.25),
    stage_steps=50,
    max_steps=665,
    eval_every=500,
)


PRESETS: dict[str, tuple[str, RunConfig]] = {
    "quickstart": (
        "Small All-attention model (4x128, N=128) on the embedded corpus (Python's own docs); ~3 minutes on 2 cores.",
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
    "pg9-allattn-rmt-8x256": (
        "PG-9 chars: the 8x256 All-attention model with 16 RMT memory tokens instead of the XL cache; 2 segments "
        "of 256 per step, gradients through the memory, batch 8 (the same tokens per step).",
        replace(_PG9, model=replace(_PG9_MODEL, memory="rmt", mem_tokens=16), batch_size=8, unroll=2),
    ),
    "pg9-allattn-armt-8x256": (
        "PG-9 chars: the 8x256 All-attention model with ARMT associative memory (16 write tokens, d_mem 64); "
        "2 segments of 256 per step, batch 8.",
        replace(_PG9, model=replace(_PG9_MODEL, memory="armt", mem_tokens=16, mem_dim=64), batch_size=8, unroll=2),
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
    "copy-rmt": (
        "Copy across 8 segments (RMT paper, 4.1): All-attention 4x128 + 16 RMT memory tokens, curriculum 1-2-4-8.",
        _task("copy", _RMT),
    ),
    "copy-armt": (
        "Copy across 8 segments: All-attention 4x128 + ARMT associative memory (16 write tokens, d_mem 32).",
        _task("copy", _ARMT),
    ),
    "copy-xl": (
        "Copy across 8 segments: All-attention 4x128 + XL cache of 4 states per layer (floats of copy-rmt's memory).",
        _task("copy", _XL),
    ),
    "reverse-rmt": ("Reverse across 8 segments: as copy-rmt.", _task("reverse", _RMT)),
    "reverse-armt": ("Reverse across 8 segments: as copy-armt.", _task("reverse", _ARMT)),
    "reverse-xl": ("Reverse across 8 segments: as copy-xl.", _task("reverse", _XL)),
    "assoc-rmt": (
        "Associative retrieval: 4 key-value pairs (16 symbols) in the first 7 segments, queried in the 8th; + RMT.",
        _task("assoc", _RMT, _ASSOC),
    ),
    "assoc-armt": ("Associative retrieval: as assoc-rmt with ARMT memory.", _task("assoc", _ARMT, _ASSOC)),
    "wt103-allattn": (
        "Sukhbaatar et al. 2019, section 5: All-attention on WikiText-103 (36L, d 512, N=2048, span 2048, adaptive "
        "input/softmax), 133M, 20.6 test ppl.",
        _WT103,
    ),
    "wt103-transformer": (
        "Its Transformer twin: FFN width 2045 in place of the 2048 persistent vectors (equal parameters to within "
        "0.02%).",
        replace(_WT103, model=replace(_WT103_MODEL, block="transformer", n_persistent=0, d_ff=2045)),
    ),
    "pg9-word-allattn-small": (
        "PG-9 words (32K vocabulary, adaptive input/softmax): All-attention 4x256, N=256, span 256; 20 min on 2 cores.",
        _PG9_WORD,
    ),
    "pg9-word-transformer-small": (
        "Its Transformer twin: FFN width 254 in place of the 256 persistent vectors (equal parameters to within 8).",
        replace(_PG9_WORD, model=replace(_PG9_WORD_MODEL, block="transformer", n_persistent=0, d_ff=254)),
    ),
    **_babilong_presets(),
    "babilong-qa1-window": (
        "BABILong qa1, phase A: one noise-free window of 192 BPE tokens (the facts, questions about anyone named, "
        "early questions first), RMT with smeared keys and recency bias, 5,000 steps.",
        _WINDOW,
    ),
    "babilong-qa1-armt-from-window": (
        "BABILong qa1, phase B: the ARMT preset in BPE tokens with the window model's layers, 100 steps a stage, "
        "853 steps; pass --init-from a babilong-qa1-window run.",
        _FROM_WINDOW,
    ),
    "babilong-qa1-armt-hour-from-window": (
        "BABILong qa1, phase B inside the hour: as babilong-qa1-armt-from-window with a question after every fact, "
        "50 steps a stage, the learning rate cut at step 420, 665 steps (~43 min on 2 ranks); pass --init-from a "
        "babilong-qa1-window run.",
        _FROM_WINDOW_HOUR,
    ),
}
