"""Crash-proof training: verified checkpoints with fallback, numerical guards, clean stop on SIGTERM/SIGINT."""

import json
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest
import safetensors.torch
import torch
from helpers import tiny_run
from torch.nn import functional as F

from memtx.errors import TrainingError
from memtx.training import checkpoint
from memtx.training.checkpoint import checkpoint_dirs
from memtx.training.trainer import train


def weights(run):
    return safetensors.torch.load_file(str(run / "model.safetensors"))


def records(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_checkpoints_carry_checksums_and_keep_last_k(tmp_path, corpus_file):
    cfg = tiny_run(str(corpus_file), max_steps=9, checkpoint_every=2, keep_checkpoints=3)
    train(cfg, tmp_path / "run", progress=False)
    dirs = checkpoint_dirs(tmp_path / "run")
    assert [d.name for d in dirs] == ["step_000000006", "step_000000008", "step_000000009"]
    manifest = json.loads((dirs[-1] / "manifest.json").read_text())
    assert set(manifest["sha256"]) == {"model.safetensors", "memory.safetensors", "trainer.pt"}
    assert checkpoint.verify_checkpoint(dirs[-1]) is None
    (dirs[-1] / "trainer.pt").write_bytes(b"\0" * 10)
    assert "sha256" in checkpoint.verify_checkpoint(dirs[-1])


def test_corrupt_latest_checkpoint_falls_back_to_previous(tmp_path, corpus_file, capsys):
    cfg = tiny_run(str(corpus_file), max_steps=12, checkpoint_every=4)
    train(cfg, tmp_path / "full", progress=False)
    train(replace(cfg, max_steps=8), tmp_path / "split", progress=False)
    latest = checkpoint_dirs(tmp_path / "split")[-1]
    assert latest.name == "step_000000008"
    blob = (latest / "model.safetensors").read_bytes()
    (latest / "model.safetensors").write_bytes(blob[: len(blob) // 2])  # half-written
    capsys.readouterr()
    summary = train(cfg, tmp_path / "split", resume=True, progress=False)
    assert "using step_000000004" in capsys.readouterr().err
    assert summary["steps"] == 12
    a, b = weights(tmp_path / "full"), weights(tmp_path / "split")
    assert all(torch.equal(a[k], b[k]) for k in a)
    full = [r["train_bpc"] for r in records(tmp_path / "full") if "train_bpc" in r]
    assert [r["train_bpc"] for r in records(tmp_path / "split") if "train_bpc" in r] == full


def _nan_on(steps):
    calls = {"n": 0}
    real = F.cross_entropy

    def loss(*args, **kwargs):
        calls["n"] += 1
        out = real(*args, **kwargs)
        return out * float("nan") if calls["n"] in steps else out

    return loss


def test_non_finite_loss_skips_the_step(tmp_path, corpus_file, monkeypatch):
    monkeypatch.setattr(F, "cross_entropy", _nan_on({3, 4}))
    summary = train(tiny_run(str(corpus_file), max_steps=8), tmp_path / "run", progress=False)
    assert summary["steps"] == 8 and summary["skipped_steps"] == 2
    skipped = [r for r in records(tmp_path / "run") if "skipped" in r]
    assert [r["step"] for r in skipped] == [3, 4]
    assert all(torch.isfinite(w).all() for w in weights(tmp_path / "run").values())


def test_persistent_divergence_stops_with_checkpoint_kept(tmp_path, corpus_file, monkeypatch):
    cfg = tiny_run(str(corpus_file), max_steps=40, checkpoint_every=2, max_bad_steps=5)
    monkeypatch.setattr(F, "cross_entropy", _nan_on(set(range(5, 100))))
    with pytest.raises(TrainingError, match="5 consecutive steps") as e:
        train(cfg, tmp_path / "run", progress=False)
    assert "\n" not in str(e.value) and "--resume" in str(e.value)
    assert checkpoint_dirs(tmp_path / "run")[-1].name == "step_000000004"
    assert checkpoint.verify_checkpoint(checkpoint_dirs(tmp_path / "run")[-1]) is None


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_checkpoint_and_exits_cleanly(tmp_path, corpus_file, sig):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "memtx.cli", "train", "--data.corpus", str(corpus_file), "--out", str(out),
           "--model.n-layers", "1", "--model.d-model", "16", "--model.n-heads", "2", "--model.span", "16",
           "--model.n-persistent", "4", "--batch-size", "2", "--segment-len", "16", "--max-steps", "100000",
           "--log-every", "1", "--checkpoint-every", "100000", "--no-progress", "--json"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not (
        (out / "metrics.jsonl").exists() and len((out / "metrics.jsonl").read_text().splitlines()) > 3
    ):
        time.sleep(0.1)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["stop"] == "interrupted" and summary["steps"] >= 3
    last = checkpoint_dirs(out)[-1]
    assert last.name == f"step_{summary['steps']:09d}" and checkpoint.verify_checkpoint(last) is None
