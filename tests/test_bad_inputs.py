"""The catalogue of user-facing failures: each gives one line `memtx: error: <problem>: <fix>`, its exit code,
no traceback, and leaves every existing file as it was.

Exit codes: 2 usage / configuration, 3 data, 4 checkpoint / run folder, 5 training stopped (diverged).
"""

from __future__ import annotations

import errno
import io
import json
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from helpers import make_text

from memtx.cli import main
from memtx.data import corpora
from memtx.training import checkpoint

TINY = [
    "--model.n-layers", "1", "--model.d-model", "16", "--model.n-heads", "2", "--model.n-persistent", "4",
    "--model.span", "16", "--batch-size", "2", "--segment-len", "16", "--max-steps", "2", "--sample-len", "0",
    "--eval-batch-size", "2", "--no-progress",
]  # fmt: skip


@dataclass
class Case:
    """setup(tmp, corpus, trained_run, monkeypatch) -> argv; the error line must contain every needle."""

    name: str
    setup: Callable[..., list[str]]
    needles: tuple[str, ...]
    code: int


def train_args(corpus, out, *extra):
    return ["train", "--data.corpus", str(corpus), "--out", str(out), *TINY, *extra]


def _write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


class Evil:
    """A pickle that runs code when unpickled: it would create the file `marker`."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _evil_trainer_state(tmp, corpus, run, mp):
    """An attacker who also rewrites the manifest: the checksum passes, weights_only loading must refuse it."""
    ckpt = checkpoint.checkpoint_dirs(run)[-1]
    torch.save({"step": Evil(tmp / "pwned")}, ckpt / "trainer.pt")
    manifest = json.loads((ckpt / "manifest.json").read_text())
    manifest["sha256"]["trainer.pt"] = checkpoint._sha256(ckpt / "trainer.pt")
    (ckpt / "manifest.json").write_text(json.dumps(manifest))
    return train_args(corpus, run, "--resume")


def _disk_full(tmp, corpus, run, mp):
    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    mp.setattr(checkpoint.torch, "save", full)
    return train_args(corpus, tmp / "new")


def _bad_download(tmp, corpus, run, mp):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("enwik8", make_text(30_000))
    url = _write(tmp / "enwik8.zip", buf.getvalue()).as_uri()
    mp.setitem(corpora.DOWNLOADS, "enwik8", dict(corpora.DOWNLOADS["enwik8"], url=url))
    return ["train", "--data.corpus", "enwik8", "--data.data-dir", str(tmp / "cache"), "--out", str(tmp / "r")]


def _other_architecture(tmp, corpus, run, mp):
    assert main(train_args(corpus, tmp / "wide", "--model.d-model", "32")) == 0
    (run / "model.safetensors").write_bytes((tmp / "wide" / "model.safetensors").read_bytes())
    return ["evaluate", str(run)]


def _truncate(run: Path, name: str) -> None:
    path = run / name
    path.write_bytes(path.read_bytes()[:100])


def _edit_config(run: Path, **changes) -> None:
    cfg = json.loads((run / "config.json").read_text())
    cfg["model"].update(changes)
    (run / "config.json").write_text(json.dumps(cfg))


CASES = [
    # -- paths and corpora
    Case("corpus missing", lambda t, c, r, m: train_args(t / "nope.txt", t / "r"), ("does not exist",), 3),
    Case("corpus empty file", lambda t, c, r, m: train_args(_write(t / "e.txt", ""), t / "r"), ("is empty",), 3),
    Case("corpus tiny", lambda t, c, r, m: train_args(_write(t / "s.txt", "abc" * 100), t / "r"), ("too few",), 3),
    Case("corpus folder without files", lambda t, c, r, m: (t / "d").mkdir() or train_args(t / "d", t / "r"),
         ("has no files",), 3),
    Case("corpus broken symlink", lambda t, c, r, m: (t / "ln").symlink_to(t / "gone") or train_args(t / "ln", t / "r"),
         ("does not exist",), 3),
    Case("corpus too short for batch x segment",
         lambda t, c, r, m: train_args(c, t / "r", "--batch-size", "64", "--segment-len", "512"),
         ("lower --batch-size or --segment-len",), 3),
    Case("pg9 folder wrong", lambda t, c, r, m: ["train", "pg9-allattn-8x256", "--data.data-dir", str(t), "--out",
         str(t / "r")], ("PG-9",), 3),
    Case("download hash mismatch", _bad_download, ("sha256", "expected"), 3),
    # -- configuration values and types
    Case("memory tokens missing", lambda t, c, r, m: train_args(c, t / "r", "--model.memory", "rmt"),
         ("--model.mem-tokens",), 2),
    Case("armt heads do not divide", lambda t, c, r, m: train_args(c, t / "r", "--model.memory", "armt",
         "--model.mem-tokens", "2", "--model.mem-heads", "3"), ("mem_heads",), 2),
    Case("curriculum without stage length", lambda t, c, r, m: train_args(c, t / "r", "--curriculum", "1", "2"),
         ("--stage-steps",), 2),
    Case("task vocabulary mismatch", lambda t, c, r, m: ["train", "copy-rmt", "--model.vocab-size", "256", "--out",
         str(t / "r")], ("--model.vocab-size 18",), 2),
    Case("assoc pairs do not fit", lambda t, c, r, m: ["train", "assoc-rmt", "--data.pairs", "30", "--out",
         str(t / "r")], ("lower --data.pairs",), 2),
    Case("adaptive cutoffs beyond the word vocabulary", lambda t, c, r, m: train_args(c, t / "r", "--data.tokens",
         "words", "--model.vocab-size", "0", "--model.adaptive", "--model.cutoffs", "5000", "9000"),
         ("model.cutoffs", "--model.cutoffs"), 2),
    Case("unroll longer than the corpus", lambda t, c, r, m: train_args(c, t / "r", "--unroll", "100000"),
         ("segments per step",), 3),
    Case("unknown preset", lambda t, c, r, m: ["train", "no-such-preset"], ("unknown preset", "--help"), 2),
    Case("heads do not divide width", lambda t, c, r, m: train_args(c, t / "r", "--model.n-heads", "3"),
         ("does not divide",), 2),
    Case("span zero", lambda t, c, r, m: train_args(c, t / "r", "--model.span", "0"), ("model.span",), 2),
    Case("dropout out of range", lambda t, c, r, m: train_args(c, t / "r", "--model.dropout", "1.5"),
         ("model.dropout",), 2),
    Case("negative learning rate", lambda t, c, r, m: train_args(c, t / "r", "--optim.lr", "-1"), ("optim.lr",), 2),
    Case("batch size zero", lambda t, c, r, m: train_args(c, t / "r", "--batch-size", "0"), ("batch-size",), 2),
    Case("int field given text", lambda t, c, r, m: train_args(c, t / "r", "--max-steps", "abc"),
         ("--max-steps", "--help"), 2),
    Case("unknown block type", lambda t, c, r, m: train_args(c, t / "r", "--model.block", "lstm"), ("allattn",), 2),
    Case("unknown optimiser", lambda t, c, r, m: train_args(c, t / "r", "--optim.name", "sgd"), ("adagrad",), 2),
    Case("unknown option", lambda t, c, r, m: train_args(c, t / "r", "--learning-rate", "3"),
         ("Unrecognized options",), 2),
    Case("unknown command", lambda t, c, r, m: ["fit"], ("unknown command",), 2),
    Case("evaluate without run folder", lambda t, c, r, m: ["evaluate"], ("RUN_DIR",), 2),
    Case("evaluate unknown split", lambda t, c, r, m: ["evaluate", str(r), "--split", "dev"], ("valid",), 2),
    Case("evaluate negative max-bytes", lambda t, c, r, m: ["evaluate", str(r), "--max-bytes", "-1"],
         ("--max-bytes",), 2),
    Case("evaluate input missing", lambda t, c, r, m: ["evaluate", str(r), "--input", str(t / "nope.txt")],
         ("cannot read --input",), 3),
    Case("evaluate input too short", lambda t, c, r, m: ["evaluate", str(r), "--input", str(_write(t / "a", "x"))],
         ("nothing to score",), 3),
    Case("generate negative length", lambda t, c, r, m: ["generate", str(r), "--length", "-3"], ("--length",), 2),
    # -- run folders and checkpoints
    Case("run folder missing", lambda t, c, r, m: ["evaluate", str(t / "nope")], ("does not exist",), 4),
    Case("run folder without config", lambda t, c, r, m: (t / "empty").mkdir() or ["generate", str(t / "empty")],
         ("config.json not found",), 4),
    Case("config.json not JSON", lambda t, c, r, m: _write(r / "config.json", "{oops") and ["evaluate", str(r)],
         ("cannot read",), 4),
    Case("config.json of something else", lambda t, c, r, m: _write(r / "config.json", '{"a": 1}') and
         ["evaluate", str(r)], ("does not describe a memtx run",), 4),
    Case("config.json with invalid values", lambda t, c, r, m: _edit_config(r, n_heads=3) or ["evaluate", str(r)],
         ("does not divide",), 2),
    Case("weights missing", lambda t, c, r, m: (r / "model.safetensors").unlink() or ["evaluate", str(r)],
         ("model.safetensors not found",), 4),
    Case("weights truncated", lambda t, c, r, m: _truncate(r, "model.safetensors") or ["generate", str(r)],
         ("truncated or corrupt",), 4),
    Case("weights of another architecture", _other_architecture, ("another architecture",), 4),
    Case("pickle as trainer state", _evil_trainer_state, ("cannot be loaded safely",), 4),
    Case("pickle as weights", lambda t, c, r, m: torch.save({"w": Evil(t / "pwned")}, r / "model.safetensors") or
         ["evaluate", str(r)], ("truncated or corrupt",), 4),
    Case("existing run without --resume", lambda t, c, r, m: train_args(c, r), ("already holds a run", "--resume"), 4),
    Case("resume with other settings", lambda t, c, r, m: train_args(c, r, "--model.d-model", "32", "--resume"),
         ("other model settings",), 4),
    Case("resume a folder that holds no run", lambda t, c, r, m: train_args(c, t / "fresh", "--resume"),
         ("holds no run",), 4),
    Case("train on a GPU that is not there", lambda t, c, r, m: train_args(c, t / "g", "--device", "cuda:99"),
         ("--device cuda:99", "CUDA device"), 2),
    Case("train on an unknown device", lambda t, c, r, m: train_args(c, t / "g", "--device", "gpu"),
         ("--device must be auto, cpu, cuda or cuda:N",), 2),
    Case("evaluate on an unknown device", lambda t, c, r, m: ["evaluate", str(r), "--device", "tpu"],
         ("--device must be",), 2),
    Case("out is a file", lambda t, c, r, m: train_args(c, _write(t / "f", "x")), ("cannot write the run folder",), 4),
    Case("disk full while saving", _disk_full, ("No space left on device", "free"), 4),
]  # fmt: skip


@pytest.fixture(scope="module")
def trained_template(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("template")
    corpus = _write(tmp / "corpus.txt", make_text(20_000))
    assert main(train_args(corpus, tmp / "run")) == 0
    return corpus, tmp / "run"


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case, tmp_path, trained_template, capsys, monkeypatch):
    import shutil

    corpus, template = trained_template
    run = tmp_path / "run"
    shutil.copytree(template, run)
    argv = case.setup(tmp_path, corpus, run, monkeypatch)
    before = _snapshot(run)
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("memtx: error:"), err
    assert "Traceback" not in err
    for needle in case.needles:
        assert needle in lines[0], lines[0]
    assert code == case.code, lines[0]
    assert _snapshot(run) == before, "an existing run folder was changed"
    assert not (tmp_path / "pwned").exists(), "a pickle ran code"
