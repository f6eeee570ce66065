"""The CLI end to end on tiny runs (its failures are catalogued in test_bad_inputs.py)."""

import json

import pytest

from memtx.cli import main
from memtx.presets import PRESETS

TINY = [
    "--model.n-layers", "1", "--model.d-model", "16", "--model.n-heads", "2", "--model.n-persistent", "4",
    "--model.span", "16", "--batch-size", "2", "--segment-len", "16", "--max-steps", "3", "--sample-len", "5",
    "--eval-batch-size", "2", "--no-progress",
]  # fmt: skip


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.fixture
def trained(tmp_path, corpus_file, capsys):
    out = tmp_path / "run"
    code, stdout, _ = run(capsys, "train", "--data.corpus", str(corpus_file), "--out", str(out), *TINY, "--json")
    assert code == 0
    return out, last_json(stdout)


def test_train_writes_run_folder_and_json(trained):
    out, summary = trained
    for name in ("config.json", "metrics.jsonl", "model.safetensors", "learning_curve.png"):
        assert (out / name).is_file(), name
    assert summary["steps"] == 3 and summary["valid_bpc"] > 0 and len(summary["sample"]) > 0
    assert json.loads((out / "config.json").read_text())["model"]["d_model"] == 16


def test_evaluate_and_generate_json(trained, capsys):
    out, summary = trained
    code, stdout, _ = run(capsys, "evaluate", str(out), "--json", "--no-progress")
    assert code == 0 and last_json(stdout)["bpc"] == pytest.approx(summary["valid_bpc"], abs=1e-4)
    code, stdout, _ = run(capsys, "evaluate", str(out), "--split", "test", "--max-bytes", "500", "--json")
    assert code == 0 and last_json(stdout)["bytes"] == 499
    code, stdout, _ = run(capsys, "generate", str(out), "--prompt", "The", "--length", "12", "--json")
    assert code == 0 and last_json(stdout)["prompt"] == "The"


def test_generate_accepts_any_prompt_bytes(trained, capsys):
    """A prompt that is not valid UTF-8 (as the shell hands it to Python) is fed as its raw bytes."""
    out, _ = trained
    code, stdout, err = run(capsys, "generate", str(out), "--prompt", "caf\udce9 \udcff", "--length", "5", "--json")
    assert code == 0, err


def test_corpus_with_invalid_utf8_trains(tmp_path, capsys):
    """The model reads bytes: any byte sequence is a valid corpus."""
    corpus = tmp_path / "latin1.txt"
    corpus.write_bytes(bytes(range(256)) * 40)
    code, stdout, err = run(
        capsys, "train", "--data.corpus", str(corpus), "--out", str(tmp_path / "r"), *TINY, "--json"
    )
    assert code == 0, err
    assert last_json(stdout)["valid_bytes"] > 0


def test_train_help_lists_every_preset(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for name in PRESETS:
        assert name in out


def test_default_out_is_the_next_free_runs_preset(tmp_path, monkeypatch):
    from memtx.cli import parse_train_args

    monkeypatch.chdir(tmp_path)
    assert parse_train_args([]).run.out == "runs/quickstart"
    assert parse_train_args(["pg9-allattn-8x256", "--max-steps", "3"]).run.out == "runs/pg9-allattn-8x256"
    (tmp_path / "runs" / "quickstart").mkdir(parents=True)
    assert parse_train_args([]).run.out == "runs/quickstart-2"
    (tmp_path / "runs" / "quickstart-2").mkdir()
    (tmp_path / "runs" / "quickstart-10").mkdir()
    assert parse_train_args([]).run.out == "runs/quickstart-3"
    assert parse_train_args(["--resume"]).run.out == "runs/quickstart-10"
    assert parse_train_args(["--out", "x", "--resume"]).run.out == "x"


def test_resume_continues_run(trained, capsys, corpus_file):
    out, _ = trained
    code, stdout, _ = run(capsys, "train", "--data.corpus", str(corpus_file), "--out", str(out), *TINY,
                          "--max-steps", "5", "--resume", "--json")  # fmt: skip
    assert code == 0 and last_json(stdout)["steps"] == 5


def test_resume_without_preset_takes_the_runs_own_config(trained, capsys):
    """--resume --out RUN alone continues RUN with its config.json (not the quickstart preset's), overrides on top."""
    out, _ = trained
    code, stdout, err = run(capsys, "train", "--out", str(out), "--max-steps", "4", "--resume", "--json")
    assert code == 0, err
    assert last_json(stdout)["steps"] == 4 and json.loads((out / "config.json").read_text())["model"]["d_model"] == 16
    code, _, err = run(capsys, "train", "--resume", f"--out={out}", "--model.d-model", "32")
    assert code != 0 and "trained with other model settings" in err


def test_evaluate_streams_a_file_or_stdin(trained, capsys, tmp_path, monkeypatch):
    import io
    import sys

    out, _ = trained
    text = tmp_path / "long.txt"
    text.write_bytes(b"the cache carries context across segments. " * 300)
    code, stdout, _ = run(capsys, "evaluate", str(out), "--input", str(text), "--json")
    from_file = last_json(stdout)
    assert code == 0 and from_file["bytes"] == len(text.read_bytes()) - 1 and from_file["input"] == str(text)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.read_bytes())))
    code, stdout, _ = run(capsys, "evaluate", str(out), "--input", "-", "--json")
    assert code == 0 and last_json(stdout)["bpc"] == from_file["bpc"]


def test_generate_continues_a_file_read_in_segments(trained, capsys, tmp_path):
    """--input streams the prompt; greedy output equals the --prompt path on the same text."""
    out, _ = trained
    text = "the memory of a persistent vector keeps what the attention reads " * 3
    (tmp_path / "prompt.txt").write_text(text)
    argv = ["--length", "10", "--temperature", "0", "--json"]
    code, stdout, err = run(capsys, "generate", str(out), "--input", str(tmp_path / "prompt.txt"), *argv)
    assert code == 0, err
    code2, stdout2, _ = run(capsys, "generate", str(out), "--prompt", text, *argv)
    assert code2 == 0 and last_json(stdout)["text"] == last_json(stdout2)["text"]
    (tmp_path / "empty.txt").write_text("")
    code, _, err = run(capsys, "generate", str(out), "--input", str(tmp_path / "empty.txt"))
    assert code == 3 and err.startswith("memtx: error:") and "empty" in err
