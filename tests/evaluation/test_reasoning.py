"""BABILong training rows and the sweep command on tiny bAbI files and books that the tests write."""

import importlib.util
import itertools
import json
import math
import random
import re
import shutil
import types
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from helpers import tiny_run

from memtx.cli import main
from memtx.data.bpe import BpeTokenizer
from memtx.errors import ConfigError
from memtx.evaluation.reasoning import prompt_chunks, prompt_rows, row_accuracy, wilson
from memtx.models.config import ModelConfig
from memtx.tasks.babilong import Babilong, parse_babi
from memtx.tasks.babilong_batches import (
    ANSWER_ROOM,
    FILLERS,
    PAD,
    BabilongBatches,
    earlier_questions,
    prompt_suffix,
    with_inline,
)
from memtx.training.checkpoint import read_tensors
from memtx.training.config import DataConfig, RunConfig
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


def _qa1_train_dir(tmp_path) -> str:
    """A bAbI folder holding only a qa1 train file (the test story, five times)."""
    folder = tmp_path / "multi" / "en"
    folder.mkdir(parents=True)
    (folder / "qa1_single-supporting-fact_train.txt").write_text(_data.STORY * 5)
    return str(folder.parent)


def test_wilson_interval_known_values():
    low, high = wilson(5, 10)
    assert math.isclose(low, 0.2366, abs_tol=1e-4) and math.isclose(high, 0.7634, abs_tol=1e-4)
    assert wilson(0, 10)[0] == 0 and math.isclose(wilson(0, 10)[1], 0.2775, abs_tol=1e-4)
    assert wilson(10, 10)[1] == 1


def test_training_rows_fill_the_segments_and_target_only_the_answer(babi):
    batches = BabilongBatches(("qa1",), 16, 128, seed=3, babi_dir=babi[0], noise_dir=babi[1])
    b = batches.next_batch(segments=5)
    n = 640
    assert b.x.shape == b.y.shape == (16, n)
    cue_end = n - ANSWER_ROOM  # the cue ends here in every row, so its position says nothing about the answer
    lengths = set()
    for x, y in zip(b.x, b.y, strict=True):
        scored = (y != -100).nonzero().flatten()
        answer = bytes(y[scored].tolist()).decode()
        rooms = {"bathroom", "bedroom", "garden", "hallway", "kitchen", "office"}
        assert answer.endswith("\n") and answer.strip() in rooms
        assert scored.tolist() == list(range(cue_end - 1, cue_end - 1 + len(answer)))  # contiguous after the cue
        assert bytes(x[cue_end - 4 : cue_end].tolist()) == b"\nA: " and torch.equal(
            x[cue_end:][: len(answer) - 1], y[scored][:-1]
        )
        text = bytes(x[x != PAD].tolist()).decode()
        assert "\nQ: Where is" in text and "story" in text  # book noise fills the row
        lengths.add(len(answer))
    assert len(lengths) > 1  # answers of several lengths, all after the same cue position
    again = BabilongBatches(("qa1",), 16, 128, seed=3, babi_dir=babi[0], noise_dir=babi[1])
    again.load_state_dict({"index": 0})
    assert torch.equal(again.next_batch(5).x, b.x)


def test_story_numbers_and_earlier_questions():
    qs = parse_babi(_data.STORY, "qa1")
    assert [q.story for q in qs] == [1, 1, 2]
    assert earlier_questions(qs, 1) == [qs[0]] and earlier_questions(qs, 0) == earlier_questions(qs, 2) == []
    assert with_inline(qs[1], [qs[0]]) == (
        "Mary moved to the bathroom.",
        "John went to the hallway.",
        "\nQ: Where is Mary?\nA: bathroom\n",  # asked after the story's first two statements, as in the file
        "Daniel went back to the hallway.",
        "Sandra moved to the garden.",
    )


@pytest.mark.parametrize("segments", [2, 8])
def test_inline_questions_are_asked_in_place_and_scored(tmp_path, babi, segments):
    """With inline_questions each row also asks its story's earlier questions where bAbI asks them: every scored
    span is an answer + newline right after a "\nA: " cue, the last one at the fixed cue position; without the
    option only the final answer is scored."""
    babi_dir = _qa1_train_dir(tmp_path)
    kw = dict(babi_dir=babi_dir, noise_dir=babi[1])
    plain = BabilongBatches(("qa1",), 16, 128, seed=1, **kw).next_batch(segments)
    inline = BabilongBatches(("qa1",), 16, 128, seed=1, inline_questions=True, **kw).next_batch(segments)
    spans_seen = set()
    for b, inline_on in ((plain, False), (inline, True)):
        for x, y in zip(b.x, b.y, strict=True):
            scored = (y != -100).nonzero().flatten().tolist()
            spans = [[scored[0]]]
            for i in scored[1:]:
                spans[-1].append(i) if i == spans[-1][-1] + 1 else spans.append([i])
            assert spans[-1][0] == 128 * segments - ANSWER_ROOM - 1  # the final answer where it always is
            text = bytes(x[x != PAD].tolist()).decode()
            for span in spans:
                answer = bytes(y[span].tolist()).decode()
                assert answer.strip() in ("bathroom", "hallway", "office") and answer.endswith("\n")
                assert bytes(x[span[0] - 3 : span[0] + 1].tolist()) == b"\nA: "  # the cue is the input just before
            if "Where is Daniel?" in text.split("\nQ: ")[-1]:  # the story's second question asks the first inline
                assert len(spans) == (2 if inline_on else 1)
                assert ("Where is Mary?\nA: bathroom\n" in text) == inline_on
            spans_seen.add(len(spans))
    assert spans_seen == {1, 2}


def test_question_curriculum_draws_early_questions_first(tmp_path, babi):
    """Stage by stage only questions asked early in their story (STORY: Mary and John are asked first, Daniel
    second); after the stages the batches are those of a run without the curriculum, and a resumed run draws the
    same stage's batch."""
    babi_dir = _qa1_train_dir(tmp_path)
    kw = dict(babi_dir=babi_dir, noise_dir=babi[1])
    batches = BabilongBatches(("qa1",), 16, 128, seed=1, question_curriculum=(1,), question_stage_steps=2, **kw)

    def asked(b) -> set[str]:
        return {bytes(x[x != PAD].tolist()).decode().split("\nQ: Where is ")[-1][:4] for x in b.x}

    first = [batches.next_batch(2) for _ in range(3)]
    assert asked(first[0]) | asked(first[1]) == {"Mary", "John"} and "Dani" in asked(first[2])
    plain = BabilongBatches(("qa1",), 16, 128, seed=1, **kw)
    plain.load_state_dict({"index": 2})
    assert torch.equal(plain.next_batch(2).x, first[2].x)
    batches.load_state_dict({"index": 1})
    assert torch.equal(batches.next_batch(2).x, first[1].x)
    with pytest.raises(ConfigError, match="question_curriculum"):
        DataConfig(task="babilong", question_curriculum=(1, 2))  # no stage steps
    with pytest.raises(ConfigError, match="question_curriculum"):
        DataConfig(question_curriculum=(1,), question_stage_steps=5)  # not babilong


def test_en_10k_training_stories_and_the_fallback_to_en(babi, tmp_path):
    """en-10k rows draw the en-10k stories; a task without an en-10k train file warns and uses en's."""
    en = Path(babi[0]) / "tasks_1-20_v1-2" / "en"
    ten_k = en.parent / "en-10k"
    ten_k.mkdir()
    text = (en / "qa1_single-supporting-fact_train.txt").read_text()
    (ten_k / "qa1_single-supporting-fact_train.txt").write_text(text.replace("Alice", "Carol"))
    rows = BabilongBatches(("qa1",), 8, 128, seed=0, babi_dir=babi[0], noise_dir=babi[1], variant="en-10k")
    text = b"".join(bytes(x.tolist()) for x in rows.next_batch(2).x).decode()
    assert "Carol" in text and "Alice" not in text
    (ten_k / "qa1_single-supporting-fact_train.txt").unlink()
    with pytest.warns(UserWarning, match="no en-10k train file for qa1"):
        rows = BabilongBatches(("qa1",), 8, 128, seed=0, babi_dir=babi[0], noise_dir=babi[1], variant="en-10k")
    assert "Alice" in b"".join(bytes(x.tolist()) for x in rows.next_batch(2).x).decode()


def test_eval_prompt_ends_where_training_rows_put_the_question(babi):
    sample = next(Babilong("qa1", "test", babi_dir=babi[0], noise_dir=babi[1]).samples("300", 1))
    ids = [i for chunk in prompt_chunks(sample, 64) for i in chunk]
    assert (len(ids) + ANSWER_ROOM) % 64 == 0 and bytes(ids).decode().endswith("\nA: ")
    assert bytes(ids).lstrip(b"\0").decode().startswith(next(sample.chunks()))


def test_batch_rows_are_padded_to_one_aligned_length(babi):
    samples = list(Babilong("qa1", "test", babi_dir=babi[0], noise_dir=babi[1]).samples("400", 5, seed=1))
    assert len({s.length for s in samples}) > 1
    rows = [[i for chunk in row for i in chunk] for row in prompt_rows(samples, 64)]
    assert len({len(r) for r in rows}) == 1 and (len(rows[0]) + ANSWER_ROOM) % 64 == 0
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


def test_memory_drift_reports_the_state_after_each_power_of_two(tmp_path, babi):
    """benchmarks/memory_drift.py: the norms it records after 1 segment are those of the state a direct call returns."""
    spec = importlib.util.spec_from_file_location(
        "memory_drift", Path(__file__).parents[2] / "benchmarks/memory_drift.py"
    )
    drift_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(drift_module)
    cfg = tiny_run("unused", max_steps=1, segment_len=128, curriculum=(3,), eval_samples=1)
    model = ModelConfig(n_layers=2, d_model=16, n_heads=2, n_persistent=0, span=128, memory="armt", mem_tokens=2,
                        mem_dim=4, dropout=0.0)  # fmt: skip
    cfg = replace(cfg, model=model, data=DataConfig(task="babilong", babi_dir=babi[0], noise_dir=babi[1]))
    train(cfg, tmp_path / "run", progress=False)
    out = tmp_path / "drift.json"
    args = [str(tmp_path / "run"), "--length", "1200", "--samples", "2", "--babi-dir", babi[0], "--noise-dir", babi[1]]
    assert drift_module.main([*args, "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [r["segments"] for r in result["rows"]] == [1, 2, 4, 8][: len(result["rows"])] and len(result["rows"]) == 4
    assert result["trained_segments"] == 3 and out.with_suffix(".png").is_file()

    from memtx.training.checkpoint import load_run

    _, net = load_run(tmp_path / "run")
    net.eval()
    samples = list(Babilong("qa1", "test", babi_dir=babi[0], noise_dir=babi[1]).samples(1200, 2, 0))
    first = torch.tensor(
        [list(itertools.islice(itertools.chain.from_iterable(r), 128)) for r in prompt_rows(samples, 128)]
    )
    with torch.no_grad():
        state = net(first, None).state
    for name, t in state.to_tensors().items():
        assert result["rows"][0]["norms"][name] == pytest.approx(float(t.flatten(1).norm(dim=1).mean()), abs=1e-4)
    assert result["rows"][0]["norms"]["armt.A.0"] < result["rows"][-1]["norms"]["armt.A.0"]  # writes accumulate


def test_armt_capped_sets_the_bound_of_every_loaded_model_and_restores_loading():
    """benchmarks/armt_capped.py: inside `bound(caps)`, a loaded model's A never outgrows caps; inside
    `bound(None)` it runs uncapped; outside, loading keeps the saved bound."""
    spec = importlib.util.spec_from_file_location(
        "armt_capped", Path(__file__).parents[2] / "benchmarks/armt_capped.py"
    )
    capped_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(capped_module)
    from memtx.memory.associative import AssociativeMemory

    class Same(torch.nn.Module):
        def forward(self, h, state, pos):
            return h

    torch.manual_seed(0)
    memory = AssociativeMemory(n_layers=2, d_model=16, n_tokens=2, d_mem=4, n_heads=2).eval()
    for layer in memory.layers:
        torch.nn.init.normal_(layer.v.weight)  # zero-initialised: the memory would stay empty
    blocks, h = torch.nn.ModuleList([Same(), Same()]), torch.randn(3, 5, 16) * 4
    saved = {**memory.state_dict(), "norm_bound": torch.tensor([1e-3, 1e-3])}

    def norms(state):
        return [float(a.flatten(1).norm(dim=1).max()) for a in state.A]

    def stream(segments):
        state = None
        with torch.no_grad():
            for _ in range(segments):
                _, state = memory.run(blocks, h, state, None)
        return state

    free = norms(stream(12))  # nothing recorded: no cap
    caps = [n / 4 for n in norms(stream(3))]
    assert all(f > c for f, c in zip(free, caps, strict=True))
    with capped_module.bound(caps):
        memory.load_state_dict(saved)
        assert all(n <= c * (1 + 1e-5) for n, c in zip(norms(stream(12)), caps, strict=True))
    with capped_module.bound(None):
        memory.load_state_dict(saved)
        assert norms(stream(12)) == free
    memory.load_state_dict(saved)
    assert torch.equal(memory.norm_bound, saved["norm_bound"])
    drift = {"rows": [{"segments": 32, "norms": {"armt.A.1": 2.0, "armt.A.0": 1.0, "armt.z.0": 9.0}}]}
    assert capped_module.layer_caps(drift, 32) == [1.0, 2.0]
    with pytest.raises(SystemExit, match="no row at 8"):
        capped_module.layer_caps(drift, 8)


def test_shortcut_split_finds_the_room_mentioned_last():
    spec = importlib.util.spec_from_file_location(
        "shortcut_split", Path(__file__).parents[2] / "benchmarks/shortcut_split.py"
    )
    split = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(split)
    facts = ("Mary went to the garden.", "John moved to the office.", "Mary is in the bathroom, not the kitchen.")
    assert split.last_room(facts) == "kitchen" and split.last_room(facts[:2]) == "office"
    assert split.last_room(("The officers left the gardens.",)) is None  # whole words only
    moves = ("Mary went to the garden.", "John moved to the office.", "Mary travelled to the hallway.")
    assert [split.moves_ago(moves, f"Where is {p}?") for p in ("Mary", "John")] == [0, 1]
    assert split.moves_ago(moves[:2], "Where is Mary?") == 1


def test_bpe_rows_and_prompts_count_in_tokens(tmp_path, babi):
    """BPE runs lay rows out as bytes runs do, counted in BPE tokens: the cue ends ANSWER_ROOM tokens before the
    row's end, every scored span is an answer + newline after "\nA: ", and a sample's length is exact in tokens."""
    babi_dir = _qa1_train_dir(tmp_path)
    batches = BabilongBatches(("qa1",), 8, 64, seed=1, babi_dir=babi_dir, noise_dir=babi[1],
                              inline_questions=True)  # fmt: skip
    bpe = BpeTokenizer.train(batches.texts(), 400)
    batches.set_codec(bpe)
    assert len(bpe.encode("Sandra moved to the garden. ")) == 11  # the story's words are single tokens
    b = batches.next_batch(segments=3)
    assert b.x.shape == (8, 192)
    for x, y in zip(b.x, b.y, strict=True):
        scored = (y != -100).nonzero().flatten().tolist()
        assert scored[-2:] == [192 - ANSWER_ROOM - 1, 192 - ANSWER_ROOM]  # the final answer's token and newline
        for i in range(0, len(scored), 2):
            assert scored[i + 1] == scored[i] + 1 and bpe.decode(y[scored[i + 1]].view(1).tolist()) == "\n"
            assert bpe.decode(y[scored[i]].view(1).tolist()) in ("bathroom", "hallway", "office")
            assert bpe.decode(x[: scored[i] + 1].tolist()).endswith("?\nA: ")
        assert "\nQ: Where is" in bpe.decode(x.tolist()) and "story" in bpe.decode(x.tolist())
    gen = Babilong("qa1", "test", babi_dir=babi[0], noise_dir=babi[1], count_tokens=bpe.count)
    samples = list(gen.samples("300", 3, seed=2))
    assert all(len(bpe.encode(s.context())) == s.length <= 300 for s in samples)
    rows = [[i for chunk in row for i in chunk] for row in prompt_rows(samples, 64, bpe)]
    assert (len(rows[0]) + ANSWER_ROOM) % 64 == 0 and len({len(r) for r in rows}) == 1
    assert [bpe.decode(r) for r in rows] == [s.context() + prompt_suffix(s.question) for s in samples]


def test_bpe_run_trains_saves_its_tokenizer_and_sweeps(tmp_path, babi, capsys):
    cfg = tiny_run("unused", max_steps=2, segment_len=64, unroll=3, eval_samples=2)
    cfg = replace(
        cfg,
        model=ModelConfig(vocab_size=0, n_layers=1, d_model=16, n_heads=2, n_persistent=2, span=80, memory="rmt",
                          mem_tokens=2),
        data=DataConfig(task="babilong", babi_dir=babi[0], noise_dir=babi[1], tokens="bpe", max_vocab=300),
    )  # fmt: skip
    run = tmp_path / "run"
    train(cfg, run, progress=False)
    bpe = BpeTokenizer.load(run / "tokenizer.json")
    assert 258 <= bpe.vocab_size <= 300 and RunConfig.load(run).model.vocab_size == bpe.vocab_size
    argv = ["babilong", str(run), "--lengths", "0k,200", "--samples", "3", "--batch-size", "2",
            "--babi-dir", babi[0], "--noise-dir", babi[1], "--json", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [(r["length"], r["samples"]) for r in result["rows"]] == [("0k", 3), ("200", 3)]
    assert main(["generate", str(run), "--length", "5"]) == 2
    assert "memtx babilong" in capsys.readouterr().err
    (run / "tokenizer.json").unlink()
    assert main(argv) == 3 and "no BPE tokenizer.json" in capsys.readouterr().err
    for tokens, task in (("bpe", "lm"), ("words", "babilong")):
        with pytest.raises(ConfigError, match="bpe is for babilong"):
            DataConfig(tokens=tokens, task=task)


def test_noise_free_rows_with_fillers_and_questions_about_anyone(tmp_path, babi):
    """babilong-qa1-window's rows: the facts alone (no book text), left-padded, 0..2 fillers after each fact, and a
    final question about anyone named so far, answered by the room of their last move in the row; the same batch
    for the same seed; without the options the rows are the usual ones."""
    babi_dir = _qa1_train_dir(tmp_path)
    kw = dict(babi_dir=babi_dir, noise_dir=babi[1], inline_questions=True)
    batches = BabilongBatches(("qa1",), 16, 64, seed=2, noise=False, fillers=2, ask="anyone", **kw)
    bpe = BpeTokenizer.train(itertools.chain(batches.texts(), FILLERS), 400)
    batches.set_codec(bpe)
    move = re.compile(r"(\w+) [\w ]+ to the (\w+)\.")
    asked, gaps = set(), set()
    for _ in range(4):
        b = batches.next_batch(segments=2)
        for x, y in zip(b.x, b.y, strict=True):
            kept = (x != PAD).nonzero().flatten()
            assert x[0] == PAD and kept[-1] - kept[0] + 1 == len(kept)  # left-padded, then one block
            text = bpe.decode(x[x != PAD].tolist())
            assert "story" not in text  # no book sentence
            context, final = text.rsplit("\nQ: ", 1)
            person = final.removeprefix("Where is ").split("?")[0]
            where = {m[1]: m[2] for m in move.finditer(context)}
            answer = bpe.decode(y[y != -100].tolist()).split()[-1]
            assert answer == where[person]  # qa1's rule on the row's own facts
            asked.add((person, move.findall(context)[-1][0] == person))
            runs = re.split(r"\w+ [\w ]+ to the \w+\.", re.sub(r"\nQ: .*?\nA: \w+\n", "", context))
            assert not runs[0].strip() and all(set(r.split()) <= set(FILLERS) for r in runs[1:])  # facts, fillers
            gaps |= {len(r.split()) for r in runs[1:]}
    assert gaps == {0, 1, 2}  # 0..2 fillers after a fact
    assert len({p for p, _ in asked}) >= 3 and {last for _, last in asked} == {True, False}  # not only the last mover
    again = BabilongBatches(("qa1",), 16, 64, seed=2, noise=False, fillers=2, ask="anyone", **kw)
    again.set_codec(bpe)
    again.load_state_dict({"index": 3})
    assert torch.equal(again.next_batch(2).x, b.x)
    usual = BabilongBatches(("qa1",), 16, 64, seed=2, **kw)
    usual.set_codec(bpe)
    assert any("story" in bpe.decode(x.tolist()) for x in usual.next_batch(2).x)  # book text by default
    with pytest.raises(ConfigError, match="needs --data.babi-tasks qa1"):
        DataConfig(task="babilong", babi_tasks=("qa1", "qa2"), ask="anyone")
    with pytest.raises(ConfigError, match="are for --data.task babilong"):
        DataConfig(fillers=2)


def test_ask_far_asks_about_the_person_whose_last_move_is_oldest(tmp_path, babi):
    babi_dir = _qa1_train_dir(tmp_path)
    batches = BabilongBatches(("qa1",), 16, 64, seed=5, babi_dir=babi_dir, noise=False, ask="far")
    bpe = BpeTokenizer.train(batches.texts(), 400)
    batches.set_codec(bpe)
    move = re.compile(r"(\w+) [\w ]+ to the (\w+)\.")
    far, batch = 0, batches.next_batch(segments=2)
    for x, y in zip(batch.x, batch.y, strict=True):
        context, final = bpe.decode(x[x != PAD].tolist()).rsplit("\nQ: ", 1)
        moves = move.findall(context)
        last = {person: i for i, (person, _) in enumerate(moves)}
        person = final.removeprefix("Where is ").split("?")[0]
        assert last[person] == min(last.values())  # the oldest last move
        assert bpe.decode(y[y != -100].tolist()).split()[0] == moves[last[person]][1]
        far += last[person] < len(moves) - 2
    assert far > 0  # not only the last two movers
    with pytest.raises(ConfigError, match="data.ask far asks qa1's question"):
        DataConfig(task="babilong", babi_tasks=("qa2",), ask="far")


def test_dense_questions_ask_after_every_fact_by_the_qa1_rule(tmp_path, babi):
    """--data.dense-questions: after every fact but the last, an inline question about someone named so far,
    answered (and scored) by the room of their last move up to that point; the final question follows as usual."""
    babi_dir = _qa1_train_dir(tmp_path)
    kw = dict(babi_dir=babi_dir, noise_dir=babi[1], inline_questions=True, noise=False)
    batches = BabilongBatches(("qa1",), 16, 64, seed=1, dense_questions=True, **kw)
    bpe = BpeTokenizer.train(batches.texts(), 400)
    batches.set_codec(bpe)
    items = re.compile(r"(\w+) [\w ]+ to the (\w+)\.|Where is (\w+)\?\nA: (\w+)")
    far, batch = 0, batches.next_batch(segments=2)
    for x, y in zip(batch.x, batch.y, strict=True):
        where, order, facts, answers = {}, [], 0, []
        for m in items.finditer(bpe.decode(x[x != PAD].tolist())):
            if m[1]:
                where[m[1]], facts = m[2], facts + 1
                order.append(m[1])
            else:
                assert m[4] == where[m[3]]  # qa1's rule on the facts before the question
                far += m[3] not in order[-2:]
                answers.append((facts, m[4]))
        inline = [f for f, _ in answers[:-1]]
        assert inline == list(range(1, facts))  # one question after each fact but the last, then the final one
        scored = bpe.decode(y[y != -100].tolist()).split()
        assert scored == [a for _, a in answers]  # every answer scored, nothing else
    assert far > 0  # not only the last two movers
    plain = BabilongBatches(("qa1",), 16, 64, seed=1, **kw)
    plain.set_codec(bpe)
    assert not torch.equal(plain.next_batch(2).y != -100, batches.next_batch(2).y != -100)
    with pytest.raises(ConfigError, match="dense_questions asks qa1's question"):
        DataConfig(task="babilong", babi_tasks=("qa2",), dense_questions=True)
    with pytest.raises(ConfigError, match="are for --data.task babilong"):
        DataConfig(dense_questions=True)


def test_trim_padding_drops_only_the_padding_every_row_shares(tmp_path, babi):
    """--data.trim-padding: the same rows as without it, less the left columns that are padding in every row
    (kept to a multiple of 16); a batch of short stories (question_curriculum's first stage) gets narrower."""
    babi_dir = _qa1_train_dir(tmp_path)
    kw = dict(babi_dir=babi_dir, noise_dir=babi[1], inline_questions=True, noise=False, ask="anyone")
    kw |= dict(question_curriculum=(1,), question_stage_steps=2)
    full, trimmed = (BabilongBatches(("qa1",), 4, 96, seed=3, trim_padding=t, **kw) for t in (False, True))
    bpe = BpeTokenizer.train(full.texts(), 400)
    widths = []
    for batches in (full, trimmed):
        batches.set_codec(bpe)
    for _ in range(4):
        a, b = full.next_batch(segments=2), trimmed.next_batch(segments=2)
        w = b.x.shape[1]
        widths.append(w)
        assert w % 16 == 0 and (a.x[:, :-w] == PAD).all() and (a.y[:, :-w] == -100).all()
        assert torch.equal(a.x[:, -w:], b.x) and torch.equal(a.y[:, -w:], b.y)
        assert w == 192 or (b.x[:, :16] != PAD).any()  # nothing more than the shared padding goes
    assert widths[0] < 192 and widths[-1] > widths[0]  # short stories first, then longer ones
    with pytest.raises(ConfigError, match="trim_padding is for babilong rows without book text"):
        DataConfig(task="babilong", trim_padding=True)


def test_noise_free_run_validates_at_0k(tmp_path, babi):
    cfg = tiny_run("unused", max_steps=2, segment_len=256, eval_samples=2)
    cfg = replace(
        cfg,
        model=ModelConfig(vocab_size=256, n_layers=1, d_model=16, n_heads=2, n_persistent=2, span=256),
        data=DataConfig(task="babilong", babi_dir=babi[0], noise_dir=babi[1], babi_noise=False, fillers=1),
    )
    train(cfg, tmp_path / "run", progress=False)
    final = json.loads((tmp_path / "run/metrics.jsonl").read_text().splitlines()[-1])
    assert final["valid_length"] == 0 and final["valid_samples"] == 2


def test_rows_of_the_valid_stories_and_their_teacher_forced_accuracy(tmp_path, babi):
    """split="valid" draws rows from the 3 held-out stories only; row_accuracy counts a row right when every target
    of its final answer is the argmax (an inline answer's miss does not count against it)."""
    kw = dict(babi_dir=babi[0], noise_dir=babi[1], noise=False, dense_questions=True)
    valid = BabilongBatches(("qa1",), 4, 512, seed=0, split="valid", **kw)
    assert {q.story for q in valid.generators[0].questions} == {28, 29, 30}
    with pytest.raises(ValueError, match="split must be 'train' or 'valid'"):
        BabilongBatches(("qa1",), 4, 512, seed=0, split="test", **kw)

    class Stub:  # hits: every target but those of the chosen rows' final answers, or of their inline answers
        device = torch.device("cpu")

        def __init__(self, miss_final: set[int], miss_inline: bool):
            self.miss_final, self.miss_inline = miss_final, miss_inline

        def __call__(self, x, state, targets, scores):
            hits = targets != -100
            final = torch.zeros_like(hits)
            final[:, -(ANSWER_ROOM + 1) :] = True
            for r in self.miss_final:
                hits[r] &= ~final[r]
            if self.miss_inline:
                hits &= final
            return types.SimpleNamespace(hits=hits)

    batch = BabilongBatches(("qa1",), 4, 512, seed=0, split="valid", **kw).next_batch(1)
    assert ((batch.y[:, : -(ANSWER_ROOM + 1)] != -100).any(1)).any()  # some rows carry inline answers
    for miss_final, miss_inline, right in (((), False, 8), ((), True, 8), ({1}, True, 6), ({0, 2, 3}, False, 2)):
        rows = BabilongBatches(("qa1",), 4, 512, seed=0, split="valid", **kw)
        res = row_accuracy(Stub(set(miss_final), miss_inline), rows, 7)  # whole batches: 8 rows
        assert (res["correct"], res["samples"]) == (right, 8) and rows.index == 2


def test_training_holds_out_the_valid_stories_and_never_reads_the_test_file(tmp_path, babi):
    """Rows draw the first 27 of 30 train stories; validation asks the last 3, so a run trains and validates
    with the test file gone (the test split stays for `memtx babilong`)."""
    rows = BabilongBatches(("qa1",), 4, 128, seed=0, babi_dir=babi[0], noise_dir=babi[1])
    assert {q.story for q in rows.generators[0].questions} == set(range(1, 28))
    next(Path(babi[0]).rglob("qa1_*_test.txt")).unlink()
    cfg = tiny_run("unused", max_steps=2, segment_len=256, eval_samples=3)
    cfg = replace(
        cfg,
        model=ModelConfig(vocab_size=256, n_layers=1, d_model=16, n_heads=2, n_persistent=2, span=256),
        data=DataConfig(task="babilong", babi_dir=babi[0], noise_dir=babi[1], babi_noise=False),
    )
    train(cfg, tmp_path / "run", progress=False)
    final = json.loads((tmp_path / "run/metrics.jsonl").read_text().splitlines()[-1])
    assert final["valid_samples"] == 3


def _plain_gpt_script():
    spec = importlib.util.spec_from_file_location("plain", Path(__file__).parents[2] / "benchmarks/qa1_plain_gpt.py")
    plain = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plain)
    return plain


def test_plain_gpt_save_then_init_from_continues_the_same_model(babi, tmp_path):
    plain = _plain_gpt_script()
    stories = Path(babi[0]) / "tasks_1-20_v1-2"
    shutil.copytree(stories / "en", stories / "en-10k")  # the script trains on the en-10k stories
    common = ["--babi-dir", babi[0], "--model", "memtx-rmt", "--smear", "--steps", "1", "--every", "1", "--test", "4"]
    plain.main([*common, "--save", str(tmp_path / "a")])
    # lr 0 and another seed: the weights come out as they went in only if they were read from the saved folder
    plain.main([*common, "--init-from", str(tmp_path / "a"), "--lr", "0", "--seed", "1", "--save", str(tmp_path / "b")])
    saved, continued = (read_tensors(tmp_path / d / "model.safetensors") for d in ("a", "b"))
    assert saved.keys() == continued.keys() and all(torch.equal(saved[k], continued[k]) for k in saved)
    assert (tmp_path / "a/tokenizer.json").read_text() == (tmp_path / "b/tokenizer.json").read_text()
    with pytest.raises(SystemExit):  # a folder without a model: one-line usage error
        plain.main([*common, "--init-from", str(tmp_path)])


def test_plain_gpt_control_rows_answer_by_the_qa1_rule(babi):
    plain = _plain_gpt_script()
    stories = parse_babi(_data.STORY * 3, "qa1")
    bpe = BpeTokenizer.train((t for q in stories for t in (*q.facts, q.question, q.answer)), 400)
    rng = random.Random(0)
    items = re.compile(r"(\w+) [\w ]+ to the (\w+)\.|Where is (\w+)\?\nA: (\w+)")
    renamed = plain.renaming(random.Random(3))
    for aug, index, rename in ((False, 1, None), (True, 1, None), (True, 2, None), (False, 1, renamed)):
        x, y = plain.row(stories, index, bpe, aug, rng, rename=rename)
        assert len(x) == len(y) == plain.T
        where, asked = {}, []
        for m in items.finditer(bpe.decode(x.tolist())):
            if m[1]:
                where[m[1]] = m[2]
            else:
                assert m[4] == where[m[3]]  # the room of the person's last move
                asked.append(m[4])
        scored = [bpe.decode([int(v)]) for v in y if v != -100]
        if rename:  # the tokenizer has not seen the pools' words: an answer may take several tokens
            assert "".join(scored) == "".join(f"{a}\n" for a in asked)
        else:
            assert scored == [t for a in asked for t in (a, "\n")]  # every answer and its newline, nothing else
        assert (
            len(asked) == {(False, 1): 2, (True, 1): 4, (True, 2): 1}[aug, index]
        )  # aug: after all facts but the last
        people = {plain.mover(f)[0] for f in stories[index].facts}
        assert set(where) == ({renamed[p] for p in people} if rename else people)  # --rename: every name swapped
    # --ask anyone: the final question is about one of the people named, answered by their last move
    finals = set()
    for seed in range(12):
        x, y = plain.row(stories, 1, bpe, False, random.Random(seed), inline=False, ask="anyone")
        (person, room), *_ = re.findall(r"Where is (\w+)\?\nA: (\w+)", bpe.decode(x.tolist()))  # x holds the answer
        where = dict(plain.mover(f) for f in stories[1].facts)
        assert room == where[person]
        finals.add(person)
    assert finals == set(where)  # everyone named gets asked
    x, _ = plain.row(stories, 1, bpe, False, random.Random(0), inline=False, ask="far")  # the oldest last move
    oldest = min(where, key=lambda p: max(i for i, f in enumerate(stories[1].facts) if plain.mover(f)[0] == p))
    assert re.findall(r"Where is (\w+)\?", bpe.decode(x.tolist())) == [oldest]
    # --filler: filler sentences between the facts; the facts, questions and scored answers unchanged
    x, y = plain.row(stories, 2, bpe, False, random.Random(5), inline=False, filler=2)
    bare_x, bare_y = plain.row(stories, 2, bpe, False, random.Random(5), inline=False)
    text, bare = bpe.decode(x.tolist()), bpe.decode(bare_x.tolist())
    assert sum(text.count(f) for f in plain.FILLERS) > 0 and not any(f in bare for f in plain.FILLERS)
    assert items.findall(text) == items.findall(bare)
    assert y[y != -100].tolist() == bare_y[bare_y != -100].tolist()
    # A test prompt sits exactly where a training row puts the same question (the positions are absolute).
    x, where, answer = plain.test_rows(stories[:1], bpe)
    row_x, row_y = plain.row(stories, 0, bpe, False, rng)
    assert x[0].tolist() == row_x.tolist() and row_y[where[0]] == answer[0]
