"""The ``memtx`` command: parse, call a library function, print. No logic lives here."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Literal

import tyro

from memtx.errors import ConfigError, DataError, MemtxError
from memtx.presets import DEFAULT_PRESET, PRESETS
from memtx.runtime import tune_allocator
from memtx.training.config import RunConfig

USAGE = """usage: memtx {train,evaluate,generate,babilong} ...

  train [PRESET] [--out DIR] [--max-steps N] [--max-time S] [--seed S] [--resume | --init-from RUN] [overrides]
                                   train a preset (default: quickstart); memtx train --help lists them
  evaluate RUN_DIR [--split valid|test] [--max-bytes N] [--input FILE|-]
                                   exact bits per byte of a split, or of any file / stdin (streamed)
  generate RUN_DIR (--prompt TEXT | --input FILE|-) [--length N] [--temperature T]
                                   sample a continuation
  babilong RUN_DIR [--tasks qa1,qa2] [--lengths 0k,1k,4k] [--samples N|N,N,N] [--out FILE]
                                   BABILong accuracy table (JSON, heatmap PNG, printed table)
Each command accepts --json (end with one JSON line of its results) and --help."""


@dataclass(frozen=True)
class TrainCommand:
    run: Annotated[RunConfig, tyro.conf.arg(name="")]
    resume: bool = False
    """Continue the run already in --out from its latest checkpoint."""
    json: bool = False
    """End with one JSON line of the results."""
    progress: bool = True
    """Show progress bars (on a terminal)."""


@dataclass(frozen=True)
class EvaluateCommand:
    run_dir: Annotated[tyro.conf.Positional[str], tyro.conf.arg(metavar="RUN_DIR")]
    """Run folder written by 'memtx train'."""
    split: Literal["valid", "test"] = "valid"
    """Split of the run's corpus to score."""
    max_bytes: int = 0
    """Score only the first N bytes of the split (0 = all of it)."""
    batch_size: int = 0
    """Parallel evaluation streams (0 = the run's eval-batch-size)."""
    input: str | None = None
    """Score this file instead of a split ('-' = standard input), streamed in segments: any length, flat memory."""
    corpus: str | None = None
    """Score a split of this corpus instead of the run's own (e.g. wikitext-2 for a model trained on pg9 words)."""
    samples: int = 0
    """Synthetic-task runs: held-out samples to score (0 = the run's eval-samples)."""
    segments: int = 0
    """Synthetic-task runs: segments per sample (0 = the run's last curriculum stage); more tests generalisation."""
    device: str = "auto"
    """Where to run: 'auto' (the GPU when torch sees one, else the CPU), 'cpu', 'cuda' or 'cuda:N'."""
    json: bool = False
    """End with one JSON line of the results."""
    progress: bool = True
    """Show a progress bar (on a terminal)."""


@dataclass(frozen=True)
class GenerateCommand:
    run_dir: Annotated[tyro.conf.Positional[str], tyro.conf.arg(metavar="RUN_DIR")]
    """Run folder written by 'memtx train'."""
    prompt: str = "\n"
    """Text to continue."""
    input: str | None = None
    """Continue this file instead ('-' = standard input), read in segments: any length, flat memory (byte runs)."""
    length: int = 300
    """Tokens to generate."""
    temperature: float = 0.8
    """Sampling temperature (0 = greedy)."""
    top_k: int = 0
    """Sample among the k most likely tokens (0 = all)."""
    seed: int = 0
    """Sampling seed."""
    compile: bool = False
    """Compile the per-token step with torch.compile (XL cache): faster for long outputs, ~1 min to compile."""
    device: str = "auto"
    """Where to run: 'auto' (the GPU when torch sees one, else the CPU), 'cpu', 'cuda' or 'cuda:N'."""
    json: bool = False
    """End with one JSON line of the results."""


@dataclass(frozen=True)
class BabilongCommand:
    run_dir: Annotated[tyro.conf.Positional[str], tyro.conf.arg(metavar="RUN_DIR")]
    """Run folder of a byte-level model written by 'memtx train'."""
    tasks: str = "qa1"
    """Comma-separated bAbI tasks (qa1..qa20)."""
    lengths: str = "0k,1k,4k,16k"
    """Comma-separated context lengths in tokens (bytes): 0k (facts only), 1k = 1,000, ..., 1M."""
    samples: str = "100"
    """Test samples per (task, length) cell: one count, or one per length (e.g. 100,100,25 for 1k,16k,128k)."""
    batch_size: int = 16
    """Samples answered together (memory grows with it, not with the length)."""
    seed: int = 0
    """Seed of the samples (which questions, where the noise starts, where the facts go)."""
    split: Literal["test", "valid"] = "test"
    """bAbI's test stories and test books, or the valid stories held out of the train file (with the train books):
    the split to choose runs and settings on, leaving the test split for the final table."""
    babi_dir: str | None = None
    """bAbI v1.2 folder (default: shared/data/babi above the working directory)."""
    noise_dir: str | None = None
    """Folder of books for the distractor text (default: shared/data/gutenberg; the test books)."""
    out: str = ""
    """Where to write the JSON table ('' = RUN_DIR/babilong.json, or babilong-2.json, ... when taken); the heatmap
    goes beside it (.png)."""
    device: str = "auto"
    """Where to run: 'auto' (the GPU when torch sees one, else the CPU), 'cpu', 'cuda' or 'cuda:N'."""
    json: bool = False
    """End with one JSON line of the results."""
    progress: bool = True
    """Show a progress bar over samples (on a terminal)."""


def _parse(parse, prog: str):
    """Run a tyro parser; turn its boxed usage errors into memtx's one-line error (help still prints in full)."""
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stderr(buffer):
            return parse()
    except SystemExit as e:
        if not e.code:
            sys.stderr.write(buffer.getvalue())
            raise
        # tyro draws a box (unicode or ASCII): keep its title and first paragraph, drop borders and help text
        rows = []
        for line in buffer.getvalue().splitlines():
            if re.fullmatch(r"[\s\-─━═│|+╭╮╰╯]*", line):
                continue
            row = line.strip(" │╭╮╰╯─━═|")
            if row.startswith(("Argument helptext", "For full helptext", "Available subcommands")):
                break
            rows.append(row)
        title, *body = rows or ["invalid arguments"]
        if body and body[0].startswith(title):
            title, *body = body
        message = re.sub(r"\s+", " ", f"{title}: {' '.join(body)}" if body else title)
        raise ConfigError(f"{message} (see {prog} --help)") from None


def parse_train_args(argv: list[str]) -> TrainCommand:
    """`memtx train` arguments -> TrainCommand (PRESET defaults to quickstart; --out to runs/PRESET). --resume
    without a PRESET continues the run in --out with its own config.json (overrides apply on top)."""
    if "--resume" in argv and (not argv or argv[0].startswith("-")):
        out = _flag_value(argv, "--out") or default_run_dir(DEFAULT_PRESET, resume=True)
        if (Path(out) / "config.json").is_file():
            saved = replace(RunConfig.load(out), out=out)
            return _parse(
                lambda: tyro.cli(TrainCommand, default=TrainCommand(run=saved), args=argv, prog="memtx train"),
                "memtx train",
            )
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = [DEFAULT_PRESET, *argv]
    if not argv[0].startswith("-") and argv[0] not in PRESETS:
        raise ConfigError(
            f"unknown preset {argv[0]!r}: choose one of {', '.join(PRESETS)} (memtx train --help describes them)"
        )
    cmd = _parse(
        lambda: tyro.extras.overridable_config_cli(
            {name: (desc, TrainCommand(run=cfg)) for name, (desc, cfg) in PRESETS.items()},
            prog="memtx train",
            description="Train a preset; every field can be overridden (e.g. --max-steps 100 --model.n-layers 4).",
            args=argv,
        ),
        "memtx train",
    )
    return cmd if cmd.run.out else replace(cmd, run=replace(cmd.run, out=default_run_dir(argv[0], cmd.resume)))


def _flag_value(argv: list[str], flag: str) -> str | None:
    """The value given to ``flag`` ("--out DIR" or "--out=DIR"), the last one when repeated; None when absent."""
    value = None
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(f"{flag}="):
            value = arg.split("=", 1)[1]
    return value


def _free_path(path: Path) -> Path:
    """path, or path-2, path-3, ... (before the suffix): the first that does not exist."""
    n = 1
    while (found := path if n == 1 else path.with_stem(f"{path.stem}-{n}")).exists():
        n += 1
    return found


def default_run_dir(preset: str, resume: bool) -> str:
    """runs/PRESET, or runs/PRESET-2, -3, ... when taken (never overwrite); with --resume, the newest of them."""
    taken = [Path(f"runs/{preset}")] + sorted(
        (p for p in Path("runs").glob(f"{preset}-*") if p.name.removeprefix(f"{preset}-").isdigit()),
        key=lambda p: int(p.name.removeprefix(f"{preset}-")),
    )
    taken = [p for p in taken if p.exists()]
    if resume:
        return str(taken[-1]) if taken else f"runs/{preset}"
    return str(_free_path(Path(f"runs/{preset}")))


def _train(argv: list[str]) -> int:
    from memtx.training.trainer import train

    cmd = parse_train_args(argv)
    run_dir = Path(cmd.run.out)
    summary = train(cmd.run, run_dir, resume=cmd.resume, progress=cmd.progress)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 reports
        return 0
    s = summary
    print(f"run folder: {s['run_dir']}  ({s['steps']} steps, {s['train_time_s']} s of training, stop: {s['stop']})")
    print(f"parameters: {summary['params']:,}   median tokens/s: {summary['tokens_per_s_median']}")
    if "valid_bpc" in summary:
        print(f"valid bits per byte: {summary['valid_bpc']:.4f}  ({summary['valid_bytes']:,} bytes, exact)")
    if "sample" in summary:
        print(f"--- sample (prompt from the valid split, then {len(summary['sample'])} generated chars) ---")
        print(
            summary["sample_prompt"]
            + "\033[1m" * sys.stdout.isatty()
            + summary["sample"]
            + "\033[0m" * sys.stdout.isatty()
        )
    if cmd.json:
        print(json.dumps(summary))
    return 0


def read_chunks(path: str, max_bytes: int = 0, size: int = 1 << 20):
    """Bytes of a file ('-' = standard input) in chunks, up to max_bytes (0 = all)."""
    try:
        f = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    except OSError as e:
        raise DataError(f"cannot read --input {path} ({e.strerror}): pass a readable file, or - for stdin") from e
    left = max_bytes or float("inf")
    with f:
        while left > 0 and (chunk := f.read(int(min(size, left)))):
            left -= len(chunk)
            yield chunk


def _lm_tokenizer(tokenizer, run_dir: str):
    """A run's word tokenizer (None: bytes); a BABILong BPE run's tokens are scored by ``memtx babilong``."""
    from memtx.data.bpe import BpeTokenizer

    if isinstance(tokenizer, BpeTokenizer):
        raise ConfigError(f"{run_dir} reads BPE tokens of bAbI stories: score it with memtx babilong {run_dir}")
    return tokenizer


def _evaluate(argv: list[str]) -> int:
    from memtx.data import load_corpus
    from memtx.evaluation.language_modeling import evaluate_lm, evaluate_stream
    from memtx.training.checkpoint import load_run
    from memtx.training.trainer import load_tokenizer

    cmd = _parse(
        lambda: tyro.cli(
            EvaluateCommand, prog="memtx evaluate", args=argv, description="Exact bits per byte of a run."
        ),
        "memtx evaluate",
    )
    if min(cmd.max_bytes, cmd.batch_size, cmd.samples, cmd.segments) < 0:
        raise ConfigError("--max-bytes, --batch-size, --samples and --segments must be >= 0")
    cfg, model = load_run(cmd.run_dir, cmd.device)
    if cfg.data.task != "lm" and cmd.input is None:
        return _evaluate_task(cmd, cfg, model)
    tokenizer = _lm_tokenizer(load_tokenizer(cmd.run_dir), cmd.run_dir)
    if tokenizer is not None:
        return _evaluate_words(cmd, cfg, model, tokenizer)
    if cmd.input is not None:
        res = evaluate_stream(model, read_chunks(cmd.input, cmd.max_bytes), cfg.segment_len, progress=cmd.progress)
        if res["targets"] == 0:
            raise DataError(f"--input {cmd.input} has fewer than 2 bytes: nothing to score; pass a longer text")
        name, key = ("stdin" if cmd.input == "-" else cmd.input), "input"
    else:
        data = load_corpus(cmd.corpus or cfg.data.corpus, cfg.data.data_dir).split(cmd.split)
        batch = cmd.batch_size or cfg.eval_batch_size
        res = evaluate_lm(model, data, batch, cfg.segment_len, cmd.max_bytes, progress=cmd.progress)
        name, key = cmd.split, "split"
    result = {key: name, "bpc": res["bpc"], "bytes": res["targets"], "nats": res["nats"]}
    print(f"{name} bits per byte: {res['bpc']:.4f}  ({res['targets']:,} bytes scored)")
    if cmd.json:
        print(json.dumps(result))
    return 0


def _evaluate_words(cmd: EvaluateCommand, cfg: RunConfig, model, tokenizer) -> int:
    """Exact perplexity of a word-level run: every word of the split (or --input text) scored once, in order."""
    import math

    from memtx.data.corpora import load_word_split, split_punctuation
    from memtx.evaluation.language_modeling import evaluate_lm

    if cmd.input is not None:
        text = b"".join(read_chunks(cmd.input, cmd.max_bytes)).decode("utf-8", "replace")
        ids = tokenizer.encode(split_punctuation(text) if cfg.data.corpus == "pg9" else text)
        name, key, batch = ("stdin" if cmd.input == "-" else cmd.input), "input", 1
    else:
        spec = cmd.corpus or cfg.data.corpus
        text = load_word_split(spec, cmd.split, None if cmd.corpus else cfg.data.data_dir)
        ids = tokenizer.encode(text)  # already in the corpus's tokens
        name, key, batch = f"{spec} {cmd.split}", "split", cmd.batch_size or cfg.eval_batch_size
    res = evaluate_lm(model, ids, batch, cfg.segment_len, cmd.max_bytes if cmd.input is None else 0, cmd.progress)
    if res["targets"] == 0:
        raise DataError(f"{name} has fewer than 2 words: nothing to score; pass a longer text")
    ppl = math.exp(res["nats"] / res["targets"])
    unk = float((ids == tokenizer.unk_id).mean()) if len(ids) else 0.0
    print(f"{name} perplexity: {ppl:.2f}  ({res['targets']:,} words scored, {unk:.1%} <unk>)")
    if cmd.json:
        print(json.dumps({key: name, "ppl": ppl, "words": res["targets"], "nats": res["nats"], "unk_rate": unk}))
    return 0


def _evaluate_task(cmd: EvaluateCommand, cfg: RunConfig, model) -> int:
    from memtx.evaluation.tasks import evaluate_task
    from memtx.tasks.synthetic import check_task
    from memtx.training.trainer import load_tokenizer, training_batches

    batches, _, _ = training_batches(cfg, load_tokenizer(cmd.run_dir))
    n_segments = cmd.segments or cfg.final_segments

    check_task(cfg.data.task, cfg.data.symbols, cfg.data.pairs, n_segments, cfg.segment_len)
    res = evaluate_task(
        model, batches, cmd.samples or cfg.eval_samples, n_segments, cmd.batch_size or cfg.eval_batch_size
    )
    print(
        f"{cfg.data.task} over {n_segments} segments: accuracy {res['accuracy']:.4f} of answer tokens, "
        f"{res['exact']:.4f} of samples exactly ({res['samples']} samples)"
    )
    if cmd.json:
        print(json.dumps({"task": cfg.data.task, "segments": n_segments, **res}))
    return 0


def _generate(argv: list[str]) -> int:
    from memtx.training.checkpoint import load_run
    from memtx.training.trainer import load_tokenizer, sample_text

    cmd = _parse(
        lambda: tyro.cli(GenerateCommand, prog="memtx generate", args=argv, description="Sample a continuation."),
        "memtx generate",
    )
    if cmd.length < 0:
        raise ConfigError(f"--length must be >= 0, got {cmd.length}")
    cfg, model = load_run(cmd.run_dir, cmd.device)
    tokenizer = _lm_tokenizer(load_tokenizer(cmd.run_dir), cmd.run_dir)
    if cmd.input is not None:
        return _generate_from_input(cmd, cfg, model, tokenizer)
    prompt = cmd.prompt.encode("utf-8", "surrogateescape")  # the raw bytes the shell passed, valid UTF-8 or not
    shown = prompt.decode("utf-8", "replace")
    if tokenizer is not None:  # word level: the prompt in the corpus's tokens
        from memtx.data.corpora import split_punctuation

        prompt = split_punctuation(shown) if cfg.data.corpus == "pg9" else shown
    text = sample_text(
        model,
        prompt,
        cmd.length,
        cmd.seed,
        cfg.segment_len,
        temperature=cmd.temperature,
        top_k=cmd.top_k or None,
        tokenizer=tokenizer,
        compile=cmd.compile,
    )
    if tokenizer is not None and text and not text[0].isspace():
        text = " " + text
    print(shown + text)
    if cmd.json:
        print(json.dumps({"prompt": shown, "text": text}))
    return 0


def _generate_from_input(cmd: GenerateCommand, cfg: RunConfig, model, tokenizer) -> int:
    import torch

    from memtx.data import decode
    from memtx.models.generation import generate, prefill

    if tokenizer is not None:
        raise ConfigError("--input is for byte-level runs; pass the prompt of a word-level run with --prompt")
    try:
        state, tail = prefill(model, [read_chunks(cmd.input)], cfg.segment_len)
    except ValueError as e:
        raise DataError(f"--input {cmd.input} is empty: pass a text to continue") from e
    gen = torch.Generator().manual_seed(cmd.seed)
    out = generate(
        model,
        tail,
        cmd.length,
        temperature=cmd.temperature,
        top_k=cmd.top_k or None,
        segment_len=cfg.segment_len,
        state=state,
        generator=gen,
        compile=cmd.compile,
    )
    text = decode(out[0])
    print(text)
    if cmd.json:
        print(json.dumps({"input": cmd.input, "text": text}))
    return 0


def _babilong(argv: list[str]) -> int:
    from memtx.evaluation.reasoning import evaluate_babilong, plot_heatmap
    from memtx.tasks.babilong import parse_length, task_name
    from memtx.training.checkpoint import load_run
    from memtx.training.trainer import babilong_codec

    cmd = _parse(
        lambda: tyro.cli(BabilongCommand, prog="memtx babilong", args=argv, description="BABILong accuracy table."),
        "memtx babilong",
    )
    tasks = [task_name(t.strip()) for t in cmd.tasks.split(",") if t.strip()]
    lengths = [n.strip() for n in cmd.lengths.split(",") if n.strip()]
    for n in lengths:
        parse_length(n)
    try:
        counts = [int(c) for c in cmd.samples.split(",")]
    except ValueError:
        counts = []
    if len(counts) == 1:
        counts *= len(lengths)
    if not tasks or not lengths or len(counts) != len(lengths) or min(counts) < 1 or cmd.batch_size < 1:
        raise ConfigError(
            "--tasks and --lengths must name at least one cell, --samples be one count >= 1 or one per length, "
            "--batch-size >= 1: e.g. --tasks qa1 --lengths 1k,16k --samples 100,25"
        )
    from memtx.data.char import BYTES

    cfg, model = load_run(cmd.run_dir, cmd.device)
    codec = babilong_codec(Path(cmd.run_dir), cfg)
    out = Path(cmd.out) if cmd.out else _free_path(Path(cmd.run_dir) / "babilong.json")
    result = {"run_dir": cmd.run_dir, "model": cfg.model.memory, "split": cmd.split, "samples": counts,
              "seed": cmd.seed, "rows": []}  # fmt: skip
    cells = evaluate_babilong(model, cfg.segment_len, tasks, lengths, counts, cmd.seed, cmd.babi_dir, cmd.noise_dir,
                              cmd.progress, cmd.batch_size, codec, cmd.split, cfg.data.babi_variant)  # fmt: skip
    for row in cells:  # the table is rewritten after each cell, so a long sweep keeps what it has done
        result["rows"].append(row)
        out.write_text(json.dumps(result, indent=1) + "\n")
    rows = result["rows"]
    unit = "BPE tokens" if codec is not BYTES else "tokens = bytes"
    png = plot_heatmap(rows, out.with_suffix(".png"), f"BABILong accuracy: {Path(cmd.run_dir).name}", unit)
    print(f"{'task':6} {'length':>7} {'accuracy':>9}  {'95% interval':>15} {'n':>5} {'peak MB':>8}")
    for r in rows:
        low, high = r["ci95"]
        print(f"{r['task']:6} {r['length']:>7} {r['accuracy']:9.1%}  [{low:5.1%}, {high:5.1%}] {r['samples']:5d} "
              f"{r['peak_rss_mb']:8.0f}")  # fmt: skip
    print(f"wrote {out} and {png}")
    if cmd.json:
        print(json.dumps({"table": str(out), "plot": str(png), "rows": rows}))
    return 0


COMMANDS = {"train": _train, "evaluate": _evaluate, "generate": _generate, "babilong": _babilong}


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # a real process (not a test calling main): choose its allocator settings
        tune_allocator()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] not in COMMANDS:
        print(f"memtx: error: unknown command {argv[0]!r}: use one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    try:
        return COMMANDS[argv[0]](argv[1:])
    except MemtxError as e:
        print(f"memtx: error: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
