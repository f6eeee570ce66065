"""BABILong (Kuratov et al. 2024, arXiv 2406.10149): bAbI questions hidden in long book text, and its scorer.

Every question of a bAbI v1.2 task file (qa1..qa20, Weston et al. 2015) becomes one sample whose facts are the
statements of its story up to the question (earlier questions dropped), as BABILong's ``get_dataset_df`` does. The
facts keep their order and go in at random sorted gaps between distractor sentences read from a folder of books,
and sentences are added until one more would overflow the target length, so the context reaches the target within
one sentence. Lengths are counted in the model's tokens by ``count_tokens`` (default: UTF-8 bytes, the tokens of
memtx's byte-level models) and cover the context only; the question and answer come separately.

- **Lengths** (``parse_length``): ``k`` = 1,000 and ``M`` = 1,000,000 tokens, as BABILong's ``create_tasks.py``
  names them (``'1k'`` -> 1000, ..., ``'1M'`` -> 1_000_000); ``'0k'`` = the facts alone, no noise. Questions whose
  facts alone exceed a non-zero target are skipped (BABILong drops stories with more than length/8 facts).
- **Splits**: eval (``split="test"``) samples use bAbI *test* stories and the test books; train samples the train
  stories and train books; ``split="valid"`` holds out the last 10% of the train file's stories (whole stories, as
  bAbI's own ``en-valid`` folders do) with the train books, for choices made during training (the test split stays
  for the final table). Books: the ``*.txt`` files of the noise folder (recursively, without LICENSE*/README*),
  sorted by relative path; file ``i`` is a test book when ``i % 4 == 1``, else a train book, so no book feeds
  both. For ``shared/data/gutenberg`` that makes the test books pg1342 and pg2701, PG-9's valid and test books.
  Project Gutenberg header and footer are cut off (text kept between the ``*** START OF`` / ``*** END OF`` lines).
- **Sentences** (``split_sentences``): a deliberately simple regex: a sentence runs from a non-space character to
  the first run of ``.``, ``!`` or ``?`` (plus closing quotes or brackets) followed by whitespace; whitespace
  inside it is collapsed to single spaces. Abbreviations such as "Mr." therefore end a sentence. Sentences of
  fewer than ``MIN_WORDS`` words or more than ``MAX_CHARS`` characters are skipped (headings, tables).
- **Streaming**: a ``Sample`` keeps only its facts, where its noise starts and how many sentences it takes;
  ``Sample.chunks()`` re-reads them lazily. Each chunk is one sentence plus a trailing space, so
  ``"".join(sample.chunks())`` is the context and ``sample.length`` is the sum of ``count_tokens`` over the
  chunks (exact for bytes). Memory stays flat in the target length.
- **Determinism**: ``Babilong.samples(length, n, seed)`` visits the questions in a seeded order; each sample is a
  pure function of (seed, question index, target), independent of ``n``.
- **Scoring** (``score``): exact match after normalisation, or BABILong's label rule (``compare_answers`` of its
  ``metrics.py``): in the first sentence of the output, the task's answer labels that are mentioned, minus those
  the question mentions, must be exactly the target. Two deliberate changes: labels match as whole words (the
  original matched substrings, so "none" also mentioned "one"), and a comma-separated target of qa8 must have
  exactly its items mentioned (the original could never accept one).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from itertools import islice
from pathlib import Path

import numpy as np

from memtx.data.corpora import _find_pg9_folder
from memtx.errors import ConfigError, DataError

SPLITS = ("train", "valid", "test")
VALID_STORIES = 0.1  # the fraction of a train file's stories held out as the valid split
VARIANTS = ("en", "en-10k")
LENGTHS = ("0k", "1k", "2k", "4k", "8k", "16k", "32k", "64k", "128k", "256k", "512k", "1M")
MIN_WORDS = 3
MAX_CHARS = 1000
SEP = " "  # ends every chunk of the context

#: The answer labels of each task (BABILong's ``TASK_LABELS``; they are the answer vocabularies of bAbI).
_ROOMS = ("bathroom", "bedroom", "garden", "hallway", "kitchen", "office")
TASK_LABELS: dict[str, frozenset[str]] = {
    f"qa{n}": frozenset(labels)
    for n, labels in {
        1: _ROOMS,
        2: _ROOMS,
        3: _ROOMS,
        4: _ROOMS,
        5: ("bill", "fred", "jeff", "mary", "apple", "football", "milk"),
        6: ("no", "yes"),
        7: ("none", "one", "three", "two"),
        8: ("apple", "football", "milk", "nothing"),
        9: ("no", "yes"),
        10: ("maybe", "no", "yes"),
        11: _ROOMS,
        12: _ROOMS,
        13: _ROOMS,
        14: ("bedroom", "cinema", "kitchen", "office", "park", "school"),
        15: ("cat", "mouse", "sheep", "wolf"),
        16: ("gray", "green", "white", "yellow"),
        17: ("no", "yes"),
        18: ("no", "yes"),
        19: ("e,e", "e,n", "e,s", "n,e", "n,n", "n,w", "s,e", "s,s", "s,w", "w,n", "w,s", "w,w"),
        20: ("bedroom", "bored", "garden", "hungry", "kitchen", "thirsty", "tired"),
    }.items()
}

_SENTENCE = re.compile(r"\S.*?[.!?]+[\"')\]]*(?=\s|\Z)", re.S)
_PG_START = re.compile(r"^\*\*\* ?START OF.*$", re.M)
_PG_END = re.compile(r"^\*\*\* ?END OF", re.M)
_LENGTH = re.compile(r"(\d+)([kKmM]?)")
_TASK = re.compile(r"qa(\d+)(?:_[\w-]*)?", re.I)
_DATA_FIX = "pass babi_dir / noise_dir, or set MEMTX_DATA_DIR to the folder that holds babi/ and gutenberg/"


def utf8_len(text: str) -> int:
    """Tokens of a byte-level model: the UTF-8 length of ``text``."""
    return len(text.encode("utf-8"))


def parse_length(value: str | int) -> int:
    """``'0k'``, ``'4k'``, ``'1M'``, ``'512'`` or an int -> tokens (k = 1,000, M = 1,000,000, as BABILong)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    m = _LENGTH.fullmatch(str(value).strip())
    if m is None:
        raise ConfigError(
            f"cannot parse length {value!r}: write a token count such as 4096, 16k or 1M (k = 1000, M = 1000000)"
        )
    return int(m[1]) * {"": 1, "k": 1000, "m": 1_000_000}[m[2].lower()]


def task_name(task: str | int) -> str:
    """``'qa1'``, ``'QA1'``, ``'qa1_single-supporting-fact'`` or ``1`` -> ``'qa1'``."""
    m = _TASK.fullmatch(f"qa{task}" if isinstance(task, int) else str(task).strip())
    if m is None or not 1 <= int(m[1]) <= 20:
        raise ConfigError(f"unknown bAbI task {task!r}: use qa1 .. qa20")
    return f"qa{int(m[1])}"


# ---------------------------------------------------------------------------------------------- bAbI


@dataclass(frozen=True)
class BabiQuestion:
    """One bAbI question with the statements of its story that precede it (their bAbI line ids in ``fact_ids``)."""

    task: str
    facts: tuple[str, ...]
    fact_ids: tuple[int, ...]
    question: str
    answer: str
    supporting_ids: tuple[int, ...]
    story: int = 0  # the story's number in its file (questions of one story share it)

    @property
    def supporting(self) -> tuple[str, ...]:
        """The texts of the supporting facts, in the order bAbI lists them."""
        by_id = dict(zip(self.fact_ids, self.facts))
        return tuple(by_id[i] for i in self.supporting_ids)


def parse_babi(text: str, task: str = "", source: str = "<text>") -> list[BabiQuestion]:
    """The questions of a bAbI v1.2 file: ``ID sentence`` lines, a new story where ID is 1, and question lines
    ``ID question<TAB>answer<TAB>supporting IDs``."""
    questions: list[BabiQuestion] = []
    story: list[tuple[int, str]] = []
    stories = 0
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        head, _, rest = line.partition(" ")
        parts = rest.split("\t")
        bad = not head.isdigit() or not parts[0].strip() or len(parts) == 2 or len(parts) > 3
        if not bad and len(parts) == 3:
            sup = parts[2].split()
            bad = not parts[1].strip() or not all(s.isdigit() for s in sup)
        if bad:
            raise DataError(
                f"{source}:{lineno}: not a bAbI line ({line[:60]!r}): pass an unmodified bAbI v1.2 task file"
            )
        if int(head) == 1:
            story, stories = [], stories + 1
        if len(parts) == 1:
            story.append((int(head), rest.strip()))
            continue
        ids = tuple(int(s) for s in sup)
        if not set(ids) <= {i for i, _ in story}:
            raise DataError(
                f"{source}:{lineno}: supporting ids {parts[2].strip()} are not statements of the story: "
                "pass an unmodified bAbI v1.2 task file"
            )
        facts = tuple(t for _, t in story)
        fact_ids = tuple(i for i, _ in story)
        questions.append(BabiQuestion(task, facts, fact_ids, parts[0].strip(), parts[1].strip(), ids, stories))
    return questions


def _shared_data(name: str, what: str) -> Path:
    """``shared/data/NAME`` found above the working directory, or a DataError naming ``what`` is missing."""
    try:
        return _find_pg9_folder(None).parent / name
    except DataError:
        raise DataError(f"{what} not found (no shared/data/{name} above the current directory): {_DATA_FIX}") from None


def babi_file(task: str | int, split: str, babi_dir: str | Path | None = None, variant: str = "en") -> Path:
    """The file ``qaN_*_{split}.txt`` under ``babi_dir`` (a folder holding it, ``VARIANT/`` or
    ``tasks_1-20_v1-2/VARIANT/``); default: ``babi/`` beside the gutenberg folder corpora.py finds."""
    name = task_name(task)
    if split not in ("train", "test"):
        raise ConfigError(f"unknown bAbI file split {split!r}: use train or test")
    if variant not in VARIANTS:
        raise ConfigError(f"unknown bAbI variant {variant!r}: use en (1k questions per task) or en-10k")
    if babi_dir is None:
        babi_dir = _shared_data("babi", "bAbI folder")
    root = Path(babi_dir).expanduser()
    for folder in (root, root / variant, root / "tasks_1-20_v1-2" / variant):
        found = sorted(folder.glob(f"{name}_*_{split}.txt"))
        if found:
            return found[0]
    raise DataError(
        f"bAbI file {name}_*_{split}.txt not found in '{root}' (variant {variant}): pass babi_dir pointing at "
        "the folder with bAbI v1.2's tasks_1-20_v1-2/ (or at its en/ folder), or another variant"
    )


def load_babi(task: str | int, split: str, babi_dir: str | Path | None = None, variant: str = "en"):
    """The questions of task ``task``, split ``train``, ``valid`` (both from the train file, see ``hold_out``) or
    ``test``, as a list of ``BabiQuestion``."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    path = babi_file(task, "test" if split == "test" else "train", babi_dir, variant)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read bAbI file '{path}' ({e}): check that it is a readable text file") from e
    questions = parse_babi(text, task_name(task), str(path))
    if split != "test":
        questions = hold_out(questions, split)
    if not questions:
        raise DataError(f"bAbI file '{path}' has no {split} questions: pass an unmodified bAbI v1.2 task file")
    return questions


def hold_out(questions: list[BabiQuestion], split: str) -> list[BabiQuestion]:
    """A train file's questions of split ``train`` (its first 90% of stories) or ``valid`` (the last 10%, at least
    one story; none when the file has only one)."""
    stories = max((q.story for q in questions), default=0)
    n_valid = max(1, round(stories * VALID_STORIES)) if stories > 1 else 0
    return [q for q in questions if (q.story > stories - n_valid) == (split == "valid")]


# ---------------------------------------------------------------------------------------------- noise


def split_sentences(text: str) -> Iterator[str]:
    """The sentences of ``text`` (see the module docstring), whitespace collapsed, none filtered."""
    for m in _SENTENCE.finditer(text):
        yield " ".join(m.group().split())


def strip_gutenberg(text: str) -> str:
    """The text between Project Gutenberg's ``*** START OF`` and ``*** END OF`` lines (all of it if absent)."""
    start = _PG_START.search(text)
    text = text[start.end() :] if start else text
    end = _PG_END.search(text)
    return text[: end.start()] if end else text


def _keep(sentence: str) -> bool:
    return len(sentence) <= MAX_CHARS and len(sentence.split()) >= MIN_WORDS


def split_books(files: list[Path]) -> dict[str, list[Path]]:
    """Deterministic book split: sorted file ``i`` is a test book when ``i % 4 == 1``, else a train book."""
    files = sorted(files)
    return {
        "train": [f for i, f in enumerate(files) if i % 4 != 1],
        "test": [f for i, f in enumerate(files) if i % 4 == 1],
    }


class NoiseBooks:
    """The books of one split of a noise folder, read once; sentences stream from any character offset."""

    def __init__(self, folder: str | Path | None = None, split: str = "test"):
        if split not in SPLITS:
            raise ConfigError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
        if folder is None:
            folder = _shared_data("gutenberg", "noise folder")
        self.folder = Path(folder).expanduser()
        if not self.folder.is_dir():
            raise DataError(f"noise folder '{self.folder}' does not exist: pass a folder of .txt books")
        files = [
            p
            for p in self.folder.rglob("*.txt")
            if p.is_file() and not p.name.upper().startswith(("LICENSE", "README", "."))
        ]
        if len(files) < 2:
            raise DataError(
                f"noise folder '{self.folder}' has {len(files)} .txt book(s): pass a folder with at least 2, "
                "so that train and test noise come from different books"
            )
        self.split = split
        self.files = split_books(files)["test" if split == "test" else "train"]  # valid: the train books
        self.texts: list[str] = []
        for f in self.files:
            try:
                self.texts.append(strip_gutenberg(f.read_text(encoding="utf-8", errors="replace")))
            except OSError as e:
                raise DataError(f"cannot read noise book '{f}' ({e}): check that it is readable") from e
        self.total = sum(len(t) for t in self.texts)

    def sentences(self, start: int) -> Iterator[str]:
        """Kept sentences from character ``start`` of the split's books (in file order, wrapping around), each
        used at most once; the partial sentence at ``start`` is never used."""
        book, offset = 0, start
        while offset >= len(self.texts[book]):
            offset -= len(self.texts[book])
            book += 1
        n = len(self.texts)
        for k in range(n + 1):
            text = self.texts[(book + k) % n]
            matches = _SENTENCE.finditer(text, offset if k == 0 else 0)
            if k == 0:
                next(matches, None)  # the tail of the sentence that ``start`` cuts
            for m in matches:
                if k == n and m.end() > offset:
                    return
                sentence = " ".join(m.group().split())
                if _keep(sentence):
                    yield sentence


# ---------------------------------------------------------------------------------------------- samples


def exact_match(prediction: str, answer: str) -> bool:
    """Equal after lower-casing, collapsing whitespace, dropping spaces after commas and final punctuation."""

    def norm(s: str) -> str:
        return " ".join(s.lower().split()).replace(", ", ",").strip(" .!?")

    return bool(answer.strip()) and norm(prediction) == norm(answer)


def _mentioned(labels: frozenset[str], text: str) -> set[str]:
    return {label for label in labels if re.search(rf"(?<!\w){re.escape(label)}(?!\w)", text)}


def score(prediction: str, answer: str, task: str | int | None = None, question: str = "") -> bool:
    """True if ``prediction`` answers correctly: an exact match, or (given ``task``) BABILong's label rule."""
    if exact_match(prediction, answer):
        return True
    if task is None:
        return False
    labels = TASK_LABELS[task_name(task)]
    out = prediction.lower().split(".")[0]
    for stop in ("<context>", "<example>", "question"):  # the model started another example
        out = out.split(stop)[0]
    target = answer.strip().lower()
    wanted = {target} if target in labels else {t.strip() for t in target.split(",")}
    return _mentioned(labels, out) - _mentioned(labels, question.lower()) == wanted


@dataclass(frozen=True)
class Sample:
    """One BABILong sample. The context streams from ``chunks()``; ``length`` is its size in tokens (at most
    ``target``; the next noise sentence would have overflowed it)."""

    task: str
    question: str
    answer: str
    facts: tuple[str, ...]
    supporting: tuple[str, ...]
    target: int
    length: int
    noise_start: int  # character offset in the split's books where the noise starts
    n_noise: int  # noise sentences in the context
    fact_gaps: tuple[int, ...]  # fact i goes just before noise sentence fact_gaps[i] (n_noise: at the end)
    noise: NoiseBooks | None = field(default=None, repr=False, compare=False)

    def chunks(self) -> Iterator[str]:
        """The context, one sentence (with a trailing space) at a time; facts in order between noise sentences."""
        noise = islice(self.noise.sentences(self.noise_start), self.n_noise) if self.n_noise else iter(())
        fact = 0
        for gap in range(self.n_noise + 1):
            while fact < len(self.facts) and self.fact_gaps[fact] == gap:
                yield self.facts[fact] + SEP
                fact += 1
            if gap < self.n_noise:
                yield next(noise) + SEP

    def context(self) -> str:
        """The whole context as one string (materialises it: for short samples)."""
        return "".join(self.chunks())

    def score(self, prediction: str) -> bool:
        return score(prediction, self.answer, self.task, self.question)


class Babilong:
    """BABILong samples of one bAbI task and split; see the module docstring.

    >>> gen = Babilong("qa1", "test")                       # doctest: +SKIP
    >>> for s in gen.samples("4k", n=100, seed=0): ...      # doctest: +SKIP
    """

    def __init__(
        self,
        task: str | int,
        split: str = "test",
        *,
        babi_dir: str | Path | None = None,
        noise_dir: str | Path | None = None,
        variant: str = "en",
        count_tokens: Callable[[str], int] = utf8_len,
    ):
        self.task = task_name(task)
        self.split = split
        self.questions = load_babi(self.task, split, babi_dir, variant)
        self.noise_dir = noise_dir
        self.count_tokens = count_tokens

    @cached_property
    def noise(self) -> NoiseBooks:
        """The split's noise books, read on first use (``'0k'`` samples never read them)."""
        return NoiseBooks(self.noise_dir, self.split)

    def sample(
        self, index: int, length: str | int, seed: int = 0, facts: tuple[str, ...] | None = None
    ) -> Sample | None:
        """The sample of question ``index`` at ``length`` tokens; None if its facts alone exceed the length.
        ``facts`` replaces the question's statements (training puts the story's earlier questions among them)."""
        q, target = self.questions[index], parse_length(length)
        if seed < 0:
            raise ConfigError(f"seed must be >= 0, got {seed}")
        rng = np.random.default_rng([seed, index, target])
        facts = q.facts if facts is None else facts
        facts_len = sum(self.count_tokens(f + SEP) for f in facts)
        common = dict(task=self.task, question=q.question, answer=q.answer, facts=facts, supporting=q.supporting)
        if target == 0:
            return Sample(**common, target=0, length=facts_len, noise_start=0, n_noise=0, fact_gaps=(0,) * len(facts))
        if facts_len > target:
            return None
        noise = self.noise
        start = int(rng.integers(noise.total)) if noise.total else 0
        length, n_noise = facts_len, 0
        for sentence in noise.sentences(start) if noise.total else ():
            size = self.count_tokens(sentence + SEP)
            if length + size > target:
                break
            length, n_noise = length + size, n_noise + 1
        else:
            raise DataError(
                f"noise corpus too small for {target:,} tokens (the {len(noise.files)} {self.split} book(s) of "
                f"'{noise.folder}' run out): pass a larger noise folder or a shorter length"
            )
        gaps = tuple(int(g) for g in np.sort(rng.integers(0, n_noise + 1, size=len(facts))))
        return Sample(
            **common, target=target, length=length, noise_start=start, n_noise=n_noise, fact_gaps=gaps, noise=noise
        )

    def samples(self, length: str | int, n: int | None = None, seed: int = 0) -> Iterator[Sample]:
        """Up to ``n`` samples (all questions if None) in a seeded order, skipping questions that do not fit."""
        target = parse_length(length)
        made = 0
        for index in np.random.default_rng(seed).permutation(len(self.questions)):
            if n is not None and made >= n:
                return
            s = self.sample(int(index), target, seed)
            if s is not None:
                made += 1
                yield s
        if made == 0:
            raise ConfigError(f"no {self.task} question fits in {target:,} tokens: ask for a longer length")


def open_babilong(task: str | int, split: str, *, variant: str = "en", **kwargs) -> Babilong:
    """``Babilong(task, split, variant=variant, **kwargs)``; for the train and valid splits, en-10k falls back to en
    (with a warning) where its train file is missing (en-10k qa3's, in shared/data)."""
    try:
        return Babilong(task, split, variant=variant, **kwargs)
    except DataError:
        if variant == "en" or split == "test":
            raise
        gen = Babilong(task, split, variant="en", **kwargs)
        warnings.warn(f"no {variant} train file for {gen.task}: its {split} split uses the en stories", stacklevel=2)
        return gen
