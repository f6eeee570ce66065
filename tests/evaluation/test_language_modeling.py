"""Exact evaluation: every target scored once; with one stream it equals the full-pass cross-entropy."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from memtx.evaluation.language_modeling import evaluate_lm
from memtx.models.config import ModelConfig
from memtx.models.transformer_lm import TransformerLM


def test_single_stream_evaluation_equals_full_pass_cross_entropy():
    torch.manual_seed(0)
    model = TransformerLM(ModelConfig(n_layers=2, d_model=16, n_heads=2, n_persistent=4, span=8)).double()
    data = np.random.default_rng(0).integers(0, 256, size=101).astype(np.uint8)
    res = evaluate_lm(model, data, batch_size=1, segment_len=7)
    x = torch.from_numpy(data.astype(np.int64))[None]
    nats = F.cross_entropy(model(x[:, :-1]).logits[0], x[0, 1:], reduction="sum").item()
    assert res["targets"] == 100
    assert math.isclose(res["nats"], nats, rel_tol=1e-6)
    assert math.isclose(res["bpc"], nats / (100 * math.log(2)), rel_tol=1e-6)


def test_hand_checked_uniform_model_scores_8_bits_per_byte():
    """A model whose logits are constant assigns 1/256 to every byte: exactly 8 bits per byte."""
    model = TransformerLM(ModelConfig(n_layers=1, d_model=16, n_heads=2, n_persistent=2, span=4))
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
    data = np.arange(50, dtype=np.uint8)
    res = evaluate_lm(model, data, batch_size=3, segment_len=4)
    assert res["targets"] == 49
    assert math.isclose(res["bpc"], 8.0, rel_tol=1e-6)


@settings(max_examples=25, deadline=None)
@given(cuts=st.lists(st.integers(0, 300), max_size=8), seg=st.integers(1, 9))
def test_streaming_evaluation_equals_one_call(cuts, seg):
    """The same bytes fed in arbitrary chunks give exactly the nats and count of one evaluate_lm call."""
    from memtx.evaluation.language_modeling import evaluate_stream

    torch.manual_seed(0)
    model = TransformerLM(ModelConfig(n_layers=1, d_model=16, n_heads=2, n_persistent=2, span=5))
    data = np.random.default_rng(1).integers(0, 256, size=300).astype(np.uint8)
    bounds = sorted({0, 300, *cuts})
    chunks = [bytes(data[a:b]) for a, b in zip(bounds, bounds[1:])]
    streamed = evaluate_stream(model, chunks, segment_len=seg)
    whole = evaluate_lm(model, data, batch_size=1, segment_len=seg)
    assert streamed["targets"] == whole["targets"] == 299
    assert math.isclose(streamed["nats"], whole["nats"], rel_tol=1e-9)


@pytest.mark.parametrize("memory", ["rmt", "armt"])
@pytest.mark.parametrize("seg", [1, 4, 7])
def test_streaming_evaluation_equals_one_call_with_recurrent_memory(memory, seg):
    from memtx.evaluation.language_modeling import evaluate_stream

    torch.manual_seed(0)
    model = TransformerLM(
        ModelConfig(n_layers=2, d_model=16, n_heads=2, n_persistent=2, span=16, memory=memory, mem_tokens=2, mem_dim=4)
    )
    with torch.no_grad():  # ARMT writes nothing until its value projection moves from zero
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    data = np.random.default_rng(1).integers(0, 256, size=120).astype(np.uint8)
    chunks = [bytes(data[a:b]) for a, b in [(0, 5), (5, 6), (6, 50), (50, 120)]]
    streamed = evaluate_stream(model, chunks, segment_len=seg)
    whole = evaluate_lm(model, data, batch_size=1, segment_len=seg)
    assert streamed["targets"] == whole["targets"] == 119
    assert math.isclose(streamed["nats"], whole["nats"], rel_tol=1e-9)
    # and the memory matters: a model that forgets between segments scores differently
    forgetful = sum(evaluate_lm(model, data[i : i + seg + 1], 1, seg)["nats"] for i in range(0, 119, seg))
    assert seg == 1 or not math.isclose(forgetful, whole["nats"], rel_tol=1e-6)
