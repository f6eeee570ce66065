"""The CLI end to end on tiny runs, and every bad input: one line naming the problem, non-zero exit, no
traceback, nothing overwritten."""

import json

import pytest

from memtx.cli import main
from memtx.presets import PRESETS

TINY = [
    "--model.n-layers",
    "1",
    "--model.d-model",
    "16",
    "--model.n-heads",
    "2",
    "--model.n-persistent",
    "4",
    "--model.span",
    "16",
    "--batch-size",
    "2",
    "--segment-len",
    "16",
    "--max-steps",
    "3",
    "--sample-len",
    "5",
    "--eval-batch-size",
    "2",
    "--no-progress",
]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *needles):
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("memtx: error:"), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0]


@pytest.fixture
def trained(tmp_path, corpus_file, capsys):
    out = tmp_path / "run"
    code, stdout, _ = run(capsys, "train", "--data.corpus", str(corpus_file), "--out", str(out), *TINY, "--json")
    assert code == 0
    return out, json.loads(stdout.strip().splitlines()[-1])


def test_train_writes_run_folder_and_json(trained):
    out, summary = trained
    for name in ("config.json", "metrics.jsonl", "model.safetensors", "learning_curve.png"):
        assert (out / name).is_file(), name
    assert summary["steps"] == 3 and summary["valid_bpc"] > 0 and len(summary["sample"]) > 0
    assert json.loads((out / "config.json").read_text())["model"]["d_model"] == 16


def test_evaluate_and_generate_json(trained, capsys):
    out, summary = trained
    code, stdout, _ = run(capsys, "evaluate", str(out), "--json", "--no-progress")
    result = json.loads(stdout.strip().splitlines()[-1])
    assert code == 0 and result["bpc"] == pytest.approx(summary["valid_bpc"], abs=1e-4)
    code, stdout, _ = run(capsys, "evaluate", str(out), "--split", "test", "--max-bytes", "500", "--json")
    assert code == 0 and json.loads(stdout.strip().splitlines()[-1])["bytes"] == 499
    code, stdout, _ = run(capsys, "generate", str(out), "--prompt", "The", "--length", "12", "--json")
    result = json.loads(stdout.strip().splitlines()[-1])
    assert code == 0 and result["prompt"] == "The" and len(result["text"].encode("utf-8", "replace")) >= 1


def test_train_help_lists_every_preset(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for name in PRESETS:
        assert name in out


def test_resume_continues_run(trained, capsys):
    out, _ = trained
    config_before = (out / "config.json").read_text()
    code, stdout, _ = run(
        capsys,
        "train",
        "--out",
        str(out),
        *TINY[:-5],
        "--max-steps",
        "5",
        "--resume",
        "--data.corpus",
        json.loads(config_before)["data"]["corpus"],
        "--no-progress",
        "--json",
    )
    assert code == 0 and json.loads(stdout.strip().splitlines()[-1])["steps"] == 5


def test_existing_run_is_not_overwritten(trained, capsys, corpus_file):
    out, _ = trained
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    code, _, err = run(capsys, "train", "--data.corpus", str(corpus_file), "--out", str(out), *TINY)
    assert_one_line_error(code, err, "already holds a run", "--resume")
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


@pytest.mark.parametrize(
    "argv, needles",
    [
        (["train", "no-such-preset"], ["unknown preset", "memtx train --help"]),
        (["train", "--data.corpus", "/no/such/file.txt"], ["does not exist"]),
        (["train", "--model.n-heads", "3"], ["does not divide", "n-heads"]),
        (["train", "--model.span", "0"], ["model.span must be >= 1"]),
        (["train", "--model.dropout", "1.5"], ["dropout"]),
        (["train", "--optim.lr", "-1"], ["optim.lr"]),
        (["train", "--batch-size", "0"], ["batch-size"]),
        (["evaluate", "/no/such/run"], ["does not exist"]),
        (["generate", "/no/such/run"], ["does not exist"]),
        (["frobnicate"], ["unknown command"]),
    ],
)
def test_bad_input_gives_one_line_error(capsys, tmp_path, argv, needles):
    if argv[0] == "train":
        argv = [*argv, "--out", str(tmp_path / "r")]
    code, _, err = run(capsys, *argv)
    assert_one_line_error(code, err, *needles)
    assert not (tmp_path / "r" / "config.json").exists()


def test_empty_corpus(capsys, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    code, _, err = run(capsys, "train", "--data.corpus", str(empty), "--out", str(tmp_path / "r"))
    assert_one_line_error(code, err, "empty")


def test_resume_without_checkpoint(capsys, tmp_path, corpus_file):
    code, _, err = run(capsys, "train", "--data.corpus", str(corpus_file), "--out", str(tmp_path / "r"), "--resume")
    assert_one_line_error(code, err, "no checkpoint")


def test_checkpoint_of_another_architecture(trained, capsys, tmp_path, corpus_file):
    out, _ = trained
    other = tmp_path / "other"
    wider = [a if a != "16" else "32" for a in TINY]
    assert run(capsys, "train", "--data.corpus", str(corpus_file), "--out", str(other), *wider)[0] == 0
    (out / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())
    code, _, err = run(capsys, "evaluate", str(out))
    assert_one_line_error(code, err, "another architecture")


def test_truncated_checkpoint(trained, capsys):
    out, _ = trained
    path = out / "model.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    code, _, err = run(capsys, "generate", str(out), "--prompt", "x")
    assert_one_line_error(code, err, "truncated or corrupt")


def test_corrupt_trainer_state_is_refused_on_resume(trained, capsys, corpus_file):
    from memtx.training.checkpoint import checkpoint_dirs

    out, _ = trained
    (checkpoint_dirs(out)[-1] / "trainer.pt").write_bytes(b"not a checkpoint")
    code, _, err = run(capsys, "train", "--data.corpus", str(corpus_file), "--out", str(out), *TINY, "--resume")
    assert_one_line_error(code, err, "cannot be loaded safely")


def test_resume_with_other_architecture_is_refused(trained, capsys, corpus_file):
    out, _ = trained
    wider = [a if a != "16" else "32" for a in TINY]
    code, _, err = run(capsys, "train", "--data.corpus", str(corpus_file), "--out", str(out), *wider, "--resume")
    assert_one_line_error(code, err, "other model")
