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

USAGE = """usage: memtx {train,evaluate,generate} ...

  train [PRESET] [--out DIR] [--max-steps N] [--max-time S] [--seed S] [--resume] [overrides]
                                   train a preset (default: quickstart); memtx train --help lists them
  evaluate RUN_DIR [--split valid|test] [--max-bytes N] [--input FILE|-]
                                   exact bits per byte of a split, or of any file / stdin (streamed)
  generate RUN_DIR --prompt TEXT [--length N] [--temperature T]
                                   sample a continuation
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
    length: int = 300
    """Tokens to generate."""
    temperature: float = 0.8
    """Sampling temperature (0 = greedy)."""
    top_k: int = 0
    """Sample among the k most likely tokens (0 = all)."""
    seed: int = 0
    """Sampling seed."""
    json: bool = False
    """End with one JSON line of the results."""


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
    """`memtx train` arguments -> TrainCommand (PRESET defaults to quickstart; --out to runs/PRESET)."""
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


def default_run_dir(preset: str, resume: bool) -> str:
    """runs/PRESET, or runs/PRESET-2, -3, ... when taken (never overwrite); with --resume, the newest of them."""
    taken = [Path(f"runs/{preset}")] + sorted(
        (p for p in Path("runs").glob(f"{preset}-*") if p.name.removeprefix(f"{preset}-").isdigit()),
        key=lambda p: int(p.name.removeprefix(f"{preset}-")),
    )
    taken = [p for p in taken if p.exists()]
    if resume:
        return str(taken[-1]) if taken else f"runs/{preset}"
    n = 1
    while Path(f"runs/{preset}" + (f"-{n}" if n > 1 else "")).exists():
        n += 1
    return f"runs/{preset}" + (f"-{n}" if n > 1 else "")


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


def _evaluate(argv: list[str]) -> int:
    from memtx.data import load_corpus
    from memtx.evaluation.language_modeling import evaluate_lm, evaluate_stream
    from memtx.training.checkpoint import load_run

    cmd = _parse(
        lambda: tyro.cli(
            EvaluateCommand, prog="memtx evaluate", args=argv, description="Exact bits per byte of a run."
        ),
        "memtx evaluate",
    )
    if cmd.max_bytes < 0 or cmd.batch_size < 0:
        raise ConfigError("--max-bytes and --batch-size must be >= 0")
    cfg, model = load_run(cmd.run_dir)
    if cmd.input is not None:
        res = evaluate_stream(model, read_chunks(cmd.input, cmd.max_bytes), cfg.segment_len, progress=cmd.progress)
        if res["targets"] == 0:
            raise DataError(f"--input {cmd.input} has fewer than 2 bytes: nothing to score; pass a longer text")
        name, key = ("stdin" if cmd.input == "-" else cmd.input), "input"
    else:
        data = load_corpus(cfg.data.corpus, cfg.data.data_dir).split(cmd.split)
        batch = cmd.batch_size or cfg.eval_batch_size
        res = evaluate_lm(model, data, batch, cfg.segment_len, cmd.max_bytes, progress=cmd.progress)
        name, key = cmd.split, "split"
    result = {key: name, "bpc": res["bpc"], "bytes": res["targets"], "nats": res["nats"]}
    print(f"{name} bits per byte: {res['bpc']:.4f}  ({res['targets']:,} bytes scored)")
    if cmd.json:
        print(json.dumps(result))
    return 0


def _generate(argv: list[str]) -> int:
    from memtx.training.checkpoint import load_run
    from memtx.training.trainer import sample_text

    cmd = _parse(
        lambda: tyro.cli(GenerateCommand, prog="memtx generate", args=argv, description="Sample a continuation."),
        "memtx generate",
    )
    if cmd.length < 0:
        raise ConfigError(f"--length must be >= 0, got {cmd.length}")
    cfg, model = load_run(cmd.run_dir)
    prompt = cmd.prompt.encode("utf-8", "surrogateescape")  # the raw bytes the shell passed, valid UTF-8 or not
    text = sample_text(
        model, prompt, cmd.length, cmd.seed, cfg.segment_len, temperature=cmd.temperature, top_k=cmd.top_k or None
    )
    shown = prompt.decode("utf-8", "replace")
    print(shown + text)
    if cmd.json:
        print(json.dumps({"prompt": shown, "text": text}))
    return 0


COMMANDS = {"train": _train, "evaluate": _evaluate, "generate": _generate}


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
