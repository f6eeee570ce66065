"""Word-level runs end to end: vocabulary from the training split saved with the run, adaptive softmax, exact
perplexity, resume, evaluate and generate from the CLI."""

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from helpers import tiny_run

from memtx.cli import main
from memtx.evaluation.language_modeling import evaluate_lm
from memtx.models.config import ModelConfig
from memtx.models.transformer_lm import TransformerLM
from memtx.training.config import DataConfig
from memtx.training.trainer import load_tokenizer, train


def _word_run(corpus_file, **overrides):
    cfg = tiny_run(str(corpus_file), max_steps=6, **overrides)
    model = replace(cfg.model, vocab_size=0, adaptive=True, cutoffs=(4, 10), adaptive_factor=2.0)
    return replace(cfg, model=model, data=DataConfig(corpus=str(corpus_file), tokens="words"))


def test_word_run_saves_its_vocabulary_and_reports_perplexity(tmp_path, corpus_file, capsys):
    summary = train(_word_run(corpus_file), tmp_path / "run", progress=False)
    tok = load_tokenizer(tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["model"]["vocab_size"] == tok.vocab_size > 10
    assert 1 < summary["valid_ppl"] < 1e4 and summary["valid_words"] > 100
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all("train_ppl" in r and "train_bpc" not in r for r in records if "lr" in r)
    # the CLI scores the same split to the same perplexity, and generates words of the vocabulary
    assert main(["evaluate", str(tmp_path / "run"), "--json", "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert math.isclose(result["ppl"], summary["valid_ppl"], rel_tol=1e-3)
    assert main(["generate", str(tmp_path / "run"), "--prompt", "the memory", "--length", "12", "--json"]) == 0
    text = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["text"]
    assert len(text.split()) >= 6 and set(text.split()) <= set(tok.tokens)


def test_word_run_resume_is_bit_exact(tmp_path, corpus_file):
    cfg = _word_run(corpus_file)
    full = train(cfg, tmp_path / "full", progress=False)
    train(replace(cfg, max_steps=3), tmp_path / "split", progress=False)
    second = train(cfg, tmp_path / "split", resume=True, progress=False)
    assert second["valid_ppl"] == full["valid_ppl"]


@pytest.mark.parametrize("adaptive", [False, True])
def test_uniform_model_has_perplexity_equal_to_the_vocabulary(adaptive):
    """Hand-checked: a model whose every prediction is uniform over V words has perplexity exactly V."""
    v = 12
    cfg = ModelConfig(vocab_size=v, n_layers=1, d_model=8, n_heads=2, n_persistent=2, span=8, adaptive=adaptive,
                      cutoffs=(4,), adaptive_factor=2.0, tie_adaptive=False)  # fmt: skip
    model = TransformerLM(cfg)
    with torch.no_grad():
        if adaptive:  # head: 4 word logits 0 and the cluster logit log 8 -> every word of both bands has p = 1/12
            asm = model.head.asm
            asm.head.weight.zero_()
            asm.tail[0][1].weight.zero_()
            b = torch.zeros(5)
            b[4] = math.log(8)
            asm.head.bias = torch.nn.Parameter(b)
        else:
            model.head.weight.zero_()
            model.head.bias.zero_()
    ids = np.random.default_rng(0).integers(0, v, size=101)
    res = evaluate_lm(model, ids, batch_size=3, segment_len=7)
    assert res["targets"] == 100
    assert math.isclose(math.exp(res["nats"] / res["targets"]), v, rel_tol=1e-5)
