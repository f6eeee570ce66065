"""BABILong training rows and the sweep command on tiny bAbI files and books that the tests write."""

import importlib.util
import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from helpers import tiny_run

from memtx.cli import main
from memtx.evaluation.reasoning import ALIGN, prompt_chunks, prompt_rows, wilson
from memtx.models.config import ModelConfig
from memtx.tasks.babilong import Babilong
from memtx.tasks.babilong_batches import PAD, BabilongBatches, prompt_suffix
from memtx.training.config import DataConfig
from memtx.training.trainer import train

_spec = importlib.util.spec_from_file_location("babilong_data", Path(__file__).parents[1] / "tasks/test_babilong.py")
_data = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_data)


@pytest.fixture
def babi(tmp_path):
    root = _data.write_babi(tmp_path / "babi")
    noise = tmp_path / "noise"
    noise.mkdir()
    for word in ("alpha", "beta", "gamma", "delta"):
        (noise / f"{word[0]}.txt").write_text(_data.book(word, 400))
    return str(root), str(noise)


def test_wilson_interval_known_values():
    low, high = wilson(5, 10)
    assert math.isclose(low, 0.2366, abs_tol=1e-4) and math.isclose(high, 0.7634, abs_tol=1e-4)
    assert wilson(0, 10)[0] == 0 and math.isclose(wilson(0, 10)[1], 0.2775, abs_tol=1e-4)
    assert wilson(10, 10)[1] == 1


def test_training_rows_fill_the_segments_and_target_only_the_answer(babi):
    batches = BabilongBatches(("qa1",), 4, 128, seed=3, babi_dir=babi[0], noise_dir=babi[1])
    b = batches.next_batch(segments=5)
    assert b.x.shape == b.y.shape == (4, 640)
    for x, y in zip(b.x, b.y, strict=True):
        text = bytes(x[x != PAD].tolist()).decode()
        answer = bytes(y[y != -100].tolist()).decode()
        assert answer.endswith("\n") and answer.strip() in {
            "bathroom",
            "bedroom",
            "garden",
            "hallway",
            "kitchen",
            "office",
        }
        assert "\nQ: Where is" in text and text.endswith("\nA: " + answer[:-1])  # x stops before the last target
        assert "story" in text  # book noise fills the row
    again = BabilongBatches(("qa1",), 4, 128, seed=3, babi_dir=babi[0], noise_dir=babi[1])
    again.load_state_dict({"index": 0})
    assert torch.equal(again.next_batch(5).x, b.x)


def test_eval_prompt_ends_where_training_rows_put_the_question(babi):
    sample = next(Babilong("qa1", "test", babi_dir=babi[0], noise_dir=babi[1]).samples("300", 1))
    ids = [i for chunk in prompt_chunks(sample, 64) for i in chunk]
    assert (len(ids) + ALIGN) % 64 == 0 and bytes(ids).decode().endswith("\nA: ")
    assert bytes(ids).lstrip(b"\0").decode().startswith(next(sample.chunks()))


def test_batch_rows_are_padded_to_one_aligned_length(babi):
    samples = list(Babilong("qa1", "test", babi_dir=babi[0], noise_dir=babi[1]).samples("400", 5, seed=1))
    assert len({s.length for s in samples}) > 1
    rows = [[i for chunk in row for i in chunk] for row in prompt_rows(samples, 64)]
    assert len({len(r) for r in rows}) == 1 and (len(rows[0]) + ALIGN) % 64 == 0
    for sample, row in zip(samples, rows, strict=True):
        text = bytes(row).lstrip(b"\0").decode()
        assert text == sample.context() + prompt_suffix(sample.question)


def test_train_then_sweep_end_to_end(tmp_path, babi, capsys):
    cfg = tiny_run("unused", max_steps=3, segment_len=128, curriculum=(3, 4), stage_steps=2, eval_samples=2)
    cfg = replace(
        cfg,
        model=ModelConfig(n_layers=1, d_model=16, n_heads=2, n_persistent=2, span=160, memory="rmt", mem_tokens=2),
        data=DataConfig(task="babilong", babi_dir=babi[0], noise_dir=babi[1]),
    )
    summary = train(cfg, tmp_path / "run", progress=False)
    assert summary["valid_samples"] == 2 and 0 <= summary["valid_accuracy"] <= 1
    argv = ["babilong", str(tmp_path / "run"), "--lengths", "0k,600", "--samples", "5,3", "--batch-size", "2",
            "--babi-dir", babi[0], "--noise-dir", babi[1], "--json", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [(r["length"], r["samples"]) for r in result["rows"]] == [("0k", 5), ("600", 3)]
    assert Path(result["plot"]).is_file() and json.loads(Path(result["table"]).read_text())["rows"]
    first = Path(result["table"]).read_text()
    assert main([*argv[:3], "0k", *argv[4:5], "2", *argv[6:]]) == 0  # a second sweep keeps the first table
    second = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert Path(second["table"]).name == "babilong-2.json" and Path(result["table"]).read_text() == first


@pytest.mark.parametrize(
    "extra, code, needle",
    [
        (["--tasks", "qa99"], 2, "qa"),
        (["--lengths", "12q"], 2, "length"),
        (["--babi-dir", "/nonexistent"], 3, "bAbI"),
        (["--lengths", "0k,1k", "--samples", "5,5,5"], 2, "one per length"),
    ],  # fmt: skip
)
def test_sweep_bad_input_is_one_line(tmp_path, babi, capsys, extra, code, needle):
    cfg = replace(tiny_run("unused", max_steps=1, segment_len=128, unroll=3, eval_samples=1),
                  model=ModelConfig(n_layers=1, d_model=16, n_heads=2, n_persistent=2, span=160),
                  data=DataConfig(task="babilong", babi_dir=babi[0], noise_dir=babi[1]))  # fmt: skip
    train(cfg, tmp_path / "run", progress=False)
    capsys.readouterr()
    argv = ["babilong", str(tmp_path / "run"), "--babi-dir", babi[0], "--noise-dir", babi[1], "--no-progress", *extra]
    assert main(argv) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("memtx: error:") and needle in err[0]
