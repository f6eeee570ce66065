"""Every preset builds, matches its paper's size, and takes a training step at tiny size."""

from dataclasses import replace

import pytest
import torch

from memtx.models.transformer_lm import TransformerLM
from memtx.presets import DEFAULT_PRESET, PRESETS
from memtx.training.config import DataConfig
from memtx.training.trainer import train

PAPER_PARAMS_M = {  # Sukhbaatar et al. 2019 (All-attention), Tables 1-2; adaptive-span paper for the baselines
    "enwik8-allattn-small": 39,
    "enwik8-allattn-large": 114,
    "text8-allattn-small": 38,
    "text8-allattn-large": 114,
    "enwik8-transformer-small": 39,
    "enwik8-transformer-large": 209,
    "text8-transformer-small": 38,
    "text8-transformer-large": 209,
}


@pytest.mark.parametrize("name", PAPER_PARAMS_M)
def test_paper_presets_have_paper_sizes(name):
    with torch.device("meta"):
        n = TransformerLM(PRESETS[name][1].model).num_parameters()
    assert abs(n / 1e6 - PAPER_PARAMS_M[name]) / PAPER_PARAMS_M[name] < 0.03, n


def test_pg9_twins_have_equal_parameters():
    with torch.device("meta"):
        a = TransformerLM(PRESETS["pg9-allattn-8x256"][1].model).num_parameters()
        b = TransformerLM(PRESETS["pg9-transformer-8x256"][1].model).num_parameters()
    assert abs(a - b) <= 16


def test_default_preset_exists():
    assert DEFAULT_PRESET in PRESETS


@pytest.mark.parametrize("name", PRESETS)
def test_preset_takes_a_step_at_tiny_size(name, tmp_path, corpus_file):
    _, cfg = PRESETS[name]
    tiny_model = replace(
        cfg.model,
        n_layers=1,
        d_model=16,
        n_heads=2,
        span=16,
        n_persistent=min(cfg.model.n_persistent, 4),
        d_ff=8,
        cutoffs=(4, 8),
    )
    task = cfg.data.task != "lm"
    cfg = replace(
        cfg,
        model=tiny_model,
        data=replace(cfg.data, pairs=2) if task else DataConfig(corpus=str(corpus_file), tokens=cfg.data.tokens),
        batch_size=2,
        segment_len=cfg.segment_len if cfg.data.task == "babilong" else 8,  # a row must fit the facts of a question
        max_steps=3 if task else 2,
        stage_steps=1,
        eval_batch_size=2,
        eval_samples=4,
        sample_len=0,
        eval_every=0,
    )
    summary = train(cfg, tmp_path / name, progress=False)
    metric = summary["valid_accuracy"] if task else summary.get("valid_bpc", summary.get("valid_ppl"))
    assert summary["steps"] == cfg.max_steps and metric == metric  # finite, not NaN
