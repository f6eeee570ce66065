"""Train 2k steps == train k, save, resume, train k: identical losses and weights, bit for bit on CPU."""

import json

import pytest
import safetensors.torch
import torch
from helpers import tiny_run

from memtx.training.checkpoint import checkpoint_dirs
from memtx.training.trainer import train


def losses(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [(r["step"], r["train_bpc"]) for r in map(json.loads, lines) if "train_bpc" in r]


def test_resume_is_bit_exact(tmp_path, corpus_file):
    from dataclasses import replace

    cfg = tiny_run(str(corpus_file), max_steps=12)
    cfg = replace(cfg, model=replace(cfg.model, adaptive_span=True, span_init=0.3, span_ramp=4))
    full = train(cfg, tmp_path / "full", progress=False)
    first = train(replace(cfg, max_steps=6), tmp_path / "split", progress=False)
    assert first["steps"] == 6 and len(checkpoint_dirs(tmp_path / "split")) == 1
    second = train(cfg, tmp_path / "split", resume=True, progress=False)
    assert second["steps"] == 12
    assert losses(tmp_path / "split") == losses(tmp_path / "full")
    a = safetensors.torch.load_file(str(tmp_path / "full" / "model.safetensors"))
    b = safetensors.torch.load_file(str(tmp_path / "split" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert second["valid_bpc"] == full["valid_bpc"]
    # the carried cache of step 12 is part of the checkpoint
    last = checkpoint_dirs(tmp_path / "split")[-1]
    mem = safetensors.torch.load_file(str(last / "memory.safetensors"))
    assert len(mem) == cfg.model.n_layers and all(v.shape[0] == cfg.batch_size for v in mem.values())


def test_trainer_state_loads_with_weights_only(tmp_path, corpus_file):
    train(tiny_run(str(corpus_file), max_steps=2), tmp_path / "run", progress=False)
    state = torch.load(checkpoint_dirs(tmp_path / "run")[-1] / "trainer.pt", weights_only=True)
    assert state["step"] == 2 and "optimizer" in state and "streams" in state


def _memory_run(corpus_file, memory):
    from dataclasses import replace

    cfg = tiny_run(str(corpus_file), max_steps=8, unroll=2)
    return replace(cfg, model=replace(cfg.model, memory=memory, mem_tokens=2, mem_dim=4, mem_heads=2))


@pytest.mark.parametrize("memory", ["rmt", "armt"])
def test_resume_with_recurrent_memory_is_bit_exact(tmp_path, corpus_file, memory):
    """The carried memory state (memory tokens / associative matrices) is saved and restored exactly."""
    from dataclasses import replace

    cfg = _memory_run(corpus_file, memory)
    full = train(cfg, tmp_path / "full", progress=False)
    train(replace(cfg, max_steps=4), tmp_path / "split", progress=False)
    mem = safetensors.torch.load_file(str(checkpoint_dirs(tmp_path / "split")[-1] / "memory.safetensors"))
    prefix = {"rmt": "memory_tokens", "armt": "armt."}[memory]
    assert mem and all(k.startswith(prefix) and v.shape[0] == cfg.batch_size for k, v in mem.items())
    second = train(cfg, tmp_path / "split", resume=True, progress=False)
    assert losses(tmp_path / "split") == losses(tmp_path / "full")
    assert second["valid_bpc"] == full["valid_bpc"]


def test_task_curriculum_resume_across_a_stage_is_bit_exact(tmp_path):
    """Synthetic batches are a function of the step, and the curriculum stage of the step number."""
    from dataclasses import replace

    from memtx.models.config import ModelConfig
    from memtx.training.config import DataConfig

    cfg = replace(
        tiny_run("unused", max_steps=7, curriculum=(1, 2, 4), stage_steps=3, eval_samples=6),
        model=ModelConfig(
            vocab_size=6, n_layers=1, d_model=16, n_heads=2, n_persistent=2, span=12, memory="rmt", mem_tokens=2
        ),  # fmt: skip
        data=DataConfig(task="copy", symbols=4),
    )
    full = train(cfg, tmp_path / "full", progress=False)
    train(replace(cfg, max_steps=4), tmp_path / "split", progress=False)
    second = train(cfg, tmp_path / "split", resume=True, progress=False)
    assert losses(tmp_path / "split") == losses(tmp_path / "full")
    assert second["valid_accuracy"] == full["valid_accuracy"]
    records = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert [r["segments"] for r in records if "segments" in r] == [1, 1, 1, 2, 2, 2, 4]


def test_init_from_starts_a_new_run_from_another_runs_weights(tmp_path, corpus_file):
    """--init-from: the weights of run A (final model, else newest checkpoint), new settings, fresh optimiser."""
    from dataclasses import replace

    from memtx.errors import CheckpointError

    cfg = tiny_run(str(corpus_file), max_steps=6)
    train(cfg, tmp_path / "a", progress=False)
    trained = safetensors.torch.load_file(str(tmp_path / "a" / "model.safetensors"))
    # one step with a vanishing learning rate leaves the starting weights as they were
    follow = replace(cfg, max_steps=1, unroll=2, optim=replace(cfg.optim, lr=1e-30), init_from=str(tmp_path / "a"))
    for source in ("final model", "checkpoint"):
        out = tmp_path / f"b-{source.replace(' ', '-')}"
        train(follow, out, progress=False)
        start = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
        assert start["event"] == "start" and start["init_from"].startswith(str(tmp_path / "a"))
        got = safetensors.torch.load_file(str(out / "model.safetensors"))
        assert got.keys() == trained.keys()
        assert all(torch.allclose(got[k], trained[k], rtol=0, atol=1e-20) for k in got)
        (tmp_path / "a" / "model.safetensors").unlink(missing_ok=True)  # next: the newest checkpoint (step 6)
    assert "checkpoints" in start["init_from"]
    with pytest.raises(CheckpointError, match="does not exist"):
        train(replace(follow, init_from=str(tmp_path / "nope")), tmp_path / "c", progress=False)
    other = replace(follow, model=replace(cfg.model, d_model=32))
    with pytest.raises(CheckpointError, match="another architecture"):
        train(other, tmp_path / "d", progress=False)
    assert not (tmp_path / "c").exists() and not (tmp_path / "d" / "config.json").exists()


def test_init_shrink_mixes_each_matrix_with_the_runs_fresh_weights(tmp_path, corpus_file):
    """--init-shrink 0.25: every tensor of 2+ dimensions starts at 0.25 x run A's + 0.75 x the new run's own fresh
    initialisation (its seed); vectors as loaded. Refused outside (0, 1] or without --init-from."""
    from dataclasses import replace

    from memtx.errors import ConfigError
    from memtx.models.transformer_lm import TransformerLM

    cfg = tiny_run(str(corpus_file), max_steps=6)
    train(cfg, tmp_path / "a", progress=False)
    trained = safetensors.torch.load_file(str(tmp_path / "a" / "model.safetensors"))
    follow = replace(cfg, max_steps=1, seed=7, optim=replace(cfg.optim, lr=1e-30), init_from=str(tmp_path / "a"))
    train(replace(follow, init_shrink=0.25), tmp_path / "b", progress=False)
    got = safetensors.torch.load_file(str(tmp_path / "b" / "model.safetensors"))
    torch.manual_seed(7)
    fresh = TransformerLM(cfg.model).state_dict()
    mixed = 0
    for k, v in got.items():
        want = 0.25 * trained[k] + 0.75 * fresh[k] if v.dim() >= 2 else trained[k]
        assert torch.allclose(v, want, rtol=0, atol=1e-6), k
        mixed += v.dim() >= 2 and not torch.allclose(want, trained[k])
    assert mixed >= 4  # embeddings, attention and FFN matrices moved
    for bad in (0.0, 1.5):
        with pytest.raises(ConfigError, match="init-shrink must be in"):
            replace(follow, init_shrink=bad)
    with pytest.raises(ConfigError, match="pass --init-from"):
        replace(cfg, init_shrink=0.5)


def test_init_from_another_memory_mechanism_starts_only_the_memory_fresh(tmp_path):
    """An RMT model's weights into an ARMT model: every non-memory tensor loaded exactly, the ARMT memory's own left
    at their initial values (the RMT memory tokens dropped); any other difference still refuses the file."""
    from dataclasses import replace

    from memtx.errors import CheckpointError
    from memtx.models.config import ModelConfig
    from memtx.models.transformer_lm import TransformerLM
    from memtx.training.checkpoint import load_weights, save_weights

    base = ModelConfig(
        vocab_size=40, n_layers=2, d_model=32, n_heads=4, block="transformer", n_persistent=0, d_ff=64, span=32
    )
    torch.manual_seed(0)
    rmt = TransformerLM(replace(base, memory="rmt", mem_tokens=4))
    path = tmp_path / "rmt.safetensors"
    save_weights(rmt.state_dict(), path)
    torch.manual_seed(1)
    armt = TransformerLM(replace(base, memory="armt", mem_tokens=4, mem_dim=16))
    before = {k: v.clone() for k, v in armt.state_dict().items()}
    fresh = load_weights(armt, path, fresh_prefix="memory.")
    after = armt.state_dict()
    assert fresh == sorted(k for k in after if k.startswith("memory."))
    for k, v in after.items():
        expected = before[k] if k.startswith("memory.") else rmt.state_dict()[k]
        assert torch.equal(v, expected), k
    with pytest.raises(CheckpointError, match="another architecture"):
        load_weights(TransformerLM(replace(base, memory="armt", mem_tokens=4, mem_dim=16)), path)
    with pytest.raises(CheckpointError, match="another architecture"):  # a block of another width is not memory
        load_weights(
            TransformerLM(replace(base, memory="armt", d_ff=128, mem_tokens=4, mem_dim=16)),
            path,
            fresh_prefix="memory.",
        )
