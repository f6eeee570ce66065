"""BABILong training batches: each row is one sample laid out as

    [pad ...] context  "\nQ: " question "\nA: " | answer "\n" [pad ...]

filling exactly S*T+1 tokens (left-padded with id 0), the context generated at the length that fills the row
(within one sentence; ``tasks/babilong.py``). Tokens are bytes, or a run's BPE tokens (``data/bpe.py``); every
chunk (sentence, cue, answer) is encoded on its own, as the generator counts and the sweep streams them. The cue
"\nA: " always ends ``ANSWER_ROOM`` tokens before the end of
the row (``|`` above), whatever the answer, and evaluation puts it at the same place (``evaluation/reasoning.py``):
were the answer right-aligned instead, the cue's position in the segment would tell its length (6, 7 or 8 bytes
for qa1's rooms) and a model learns that shortcut, which fails at evaluation. Only the answer and its newline are
targets (cut at the row end if longer than ``ANSWER_ROOM``); with ``inline_questions`` the story's earlier questions
also appear in the context, each right after the statements bAbI asks it after and in the same layout, and their
answers are targets too; with ``question_curriculum`` the first batches draw only questions asked early in their
story (stage by stage); ``fillers`` puts 0..N short filler sentences after each fact; ``noise=False`` leaves the
book text out (the facts alone, left-padded; ``trim_padding`` drops the padding all rows of a batch share);
``ask="anyone"`` (qa1) asks each row's final question about anyone named so far rather than bAbI's own
(``ask="far"``: about the person whose last move is the oldest), and ``dense_questions`` (qa1) asks such a question
inline after every fact but the last, in place of the story's own inline questions. Batch k is a pure function of
(seed, k), so resumed runs see the same batches. Train samples use bAbI train stories (less the last 10%, the
valid split that validation during training asks) and the train books; the sweep the test stories and test books.
``split="valid"`` builds the same rows from the valid stories (looking at a model on training-style rows without
touching the training or test stories: ``benchmarks/window_screen.py``).
"""

from __future__ import annotations

from dataclasses import replace
from functools import cached_property

import numpy as np
import torch

from memtx.data.char import BYTES
from memtx.errors import ConfigError
from memtx.tasks.babilong import SEP, Babilong, BabiQuestion, open_babilong
from memtx.tasks.synthetic import IGNORE_INDEX, TaskBatch

PAD = 0
ANSWER_ROOM = 8  # tokens after the cue: the row's last x positions, whose targets are the answer and its newline
QUESTION, ANSWER = "\nQ: ", "\nA: "
# ``fillers``: sentences that name no one and no place, put between facts so that a fact's place stops telling how
# many facts back it is (book noise does this at length; these do it in a short noise-free row)
FILLERS = ("Then.", "Later.", "Next.", "Soon.", "Meanwhile.", "Afterwards.")


def prompt_suffix(question: str) -> str:
    """What follows the context: the question, then the cue after which the model answers."""
    return f"{QUESTION}{question}{ANSWER}"


def earlier_questions(questions: list[BabiQuestion], index: int) -> list[BabiQuestion]:
    """The questions of ``questions[index]``'s story that come before it, oldest first."""
    first = index
    while first > 0 and questions[first - 1].story == questions[index].story:
        first -= 1
    return questions[first:index]


def with_inline(
    q: BabiQuestion, earlier: list[BabiQuestion], fillers: tuple[tuple[str, ...], ...] = ()
) -> tuple[str, ...]:
    """``q``'s statements with each earlier question and its answer right after the statements it was asked
    after, in the layout of the final one (``prompt_suffix`` + answer + newline); ``fillers[i]`` go right after
    statement i."""
    after: dict[int, list[str]] = {}
    for e in earlier:
        after.setdefault(len(e.facts), []).append(f"{prompt_suffix(e.question)}{e.answer}\n")
    out: list[str] = []
    for i, fact in enumerate(q.facts, 1):
        out += [fact, *(fillers[i - 1] if fillers else ()), *after.get(i, [])]
    return tuple(out)


def last_rooms(facts: tuple[str, ...]) -> dict[str, str]:
    """qa1's rule: each person named in ``facts`` ("Mary went back to the kitchen.") -> the room of their last
    move."""
    where: dict[str, str] = {}
    for fact in facts:
        words = fact.rstrip(".").split()
        where[words[0]] = words[-1]
    return where


def ask_anyone(facts: tuple[str, ...], rng: np.random.Generator) -> tuple[str, str]:
    """("Where is P?", P's room) for a person P drawn from everyone named in ``facts``, by qa1's rule."""
    where = last_rooms(facts)
    person = sorted(where)[int(rng.integers(len(where)))]
    return f"Where is {person}?", where[person]


def ask_far(facts: tuple[str, ...]) -> tuple[str, str]:
    """("Where is P?", P's room) for the person P whose last move in ``facts`` is the oldest, by qa1's rule."""
    last = {fact.split()[0]: i for i, fact in enumerate(facts)}
    person = min(last, key=last.__getitem__)
    return f"Where is {person}?", last_rooms(facts)[person]


def anyone_questions(q: BabiQuestion, rng: np.random.Generator) -> list[BabiQuestion]:
    """After each of ``q``'s facts but the last, "Where is P?" about a person P drawn from everyone named so far,
    answered by qa1's rule, as questions of ``q``'s story (their ``facts``: the statements before them)."""
    out = []
    for i in range(1, len(q.facts)):
        question, answer = ask_anyone(q.facts[:i], rng)
        facts, ids = q.facts[:i], q.fact_ids[:i]
        out.append(replace(q, facts=facts, fact_ids=ids, question=question, answer=answer, supporting_ids=()))
    return out


class BabilongBatches:
    """Training batches over one or more bAbI tasks (each row draws its task uniformly)."""

    def __init__(
        self,
        tasks: tuple[str, ...],
        batch_size: int,
        segment_len: int,
        seed: int,
        babi_dir: str | None = None,
        noise_dir: str | None = None,
        variant: str = "en",
        inline_questions: bool = False,
        codec=BYTES,
        question_curriculum: tuple[int, ...] = (),
        question_stage_steps: int = 0,
        noise: bool = True,
        fillers: int = 0,
        ask: str = "babi",
        dense_questions: bool = False,
        trim_padding: bool = False,
        split: str = "train",
    ) -> None:
        if split not in ("train", "valid"):
            raise ValueError(f"BabilongBatches split must be 'train' or 'valid', got {split!r}")
        self.split = split
        self.tasks, self.batch_size, self.segment_len, self.seed = tasks, batch_size, segment_len, seed
        self.inline_questions, self.noise, self.fillers, self.ask = inline_questions, noise, fillers, ask
        self.dense_questions, self.trim_padding = dense_questions, trim_padding
        self.question_curriculum, self.question_stage_steps = question_curriculum, question_stage_steps
        self.babi_dir, self.noise_dir, self.variant = babi_dir, noise_dir, variant
        self.index = 0
        _ = self.generators  # fail on missing bAbI files now
        self.set_codec(codec)

    def set_codec(self, codec) -> None:
        """Count and encode in ``codec``'s tokens (``char.BYTES`` or a ``bpe.BpeTokenizer``)."""
        self.codec = codec
        for gen in self.generators:
            gen.count_tokens = codec.count

    def texts(self):
        """The facts, questions and answers of the training stories (what a BPE tokenizer is trained on)."""
        for gen in self.generators:
            for q in gen.questions:
                yield from q.facts
                yield q.question
                yield q.answer

    @cached_property
    def generators(self) -> list[Babilong]:
        return [self._generator(t) for t in self.tasks]

    def _generator(self, task: str) -> Babilong:
        """The task's train stories (less the valid split's), or the valid ones, in ``variant``."""
        return open_babilong(task, self.split, babi_dir=self.babi_dir, noise_dir=self.noise_dir, variant=self.variant)

    @cached_property
    def places(self) -> list[np.ndarray]:
        """Per generator, each question's place in its story (1 = asked first, after the fewest facts)."""
        return [
            np.array([len(earlier_questions(g.questions, i)) + 1 for i in range(len(g.questions))])
            for g in self.generators
        ]

    def question_limit(self) -> int:
        """The latest place in its story a question of the current batch may have (0 = any): question_curriculum."""
        if not self.question_curriculum:
            return 0
        stage = self.index // self.question_stage_steps
        return self.question_curriculum[stage] if stage < len(self.question_curriculum) else 0

    def row(self, rng: np.random.Generator, n: int, limit: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """One sample as (x, y) int64 arrays of length n; with ``limit``, of a question asked at most limit-th in
        its story."""
        encode = self.codec.encode
        for _ in range(1000):
            g = int(rng.integers(len(self.generators)))
            gen = self.generators[g]
            if limit:
                allowed = np.flatnonzero(self.places[g] <= limit)
                index = int(allowed[rng.integers(len(allowed))])
            else:
                index = int(rng.integers(len(gen.questions)))
            q = gen.questions[index]
            question, answer = q.question, q.answer
            if self.ask == "anyone":
                question, answer = ask_anyone(q.facts, rng)
            elif self.ask == "far":
                question, answer = ask_far(q.facts)
            fillers = ()
            if self.fillers:
                counts = rng.integers(self.fillers + 1, size=len(q.facts))
                fillers = tuple(tuple(FILLERS[int(j)] for j in rng.integers(len(FILLERS), size=c)) for c in counts)
            cue = encode(prompt_suffix(question))
            room = n - ANSWER_ROOM - len(cue)  # context tokens: the cue's last token is x[n - ANSWER_ROOM - 1]
            if room < 0:
                continue
            seed = int(rng.integers(2**31))
            if self.dense_questions:
                earlier = anyone_questions(q, rng)
            else:
                earlier = earlier_questions(gen.questions, index) if self.inline_questions else []
            for k in range(len(earlier) + 1):  # the story's earlier questions inline, the oldest dropped to fit
                facts = with_inline(q, earlier[k:], fillers)
                sample = gen.sample(index, room if self.noise else 0, seed=seed, facts=facts)
                if sample is not None and sample.length <= room:
                    break
                sample = None
            if sample is None:  # the facts alone do not fit: draw another question
                continue
            seq = np.full(n + 1, PAD, dtype=np.int64)
            targets = np.zeros(n + 1, dtype=bool)
            start = n - ANSWER_ROOM  # seq index of the answer's first token
            pos = start - len(cue) - sample.length  # the generator counts with the codec: length is exact
            for chunk in sample.chunks():
                if chunk.startswith(QUESTION):  # an inline question: cue, then answer and newline as targets
                    cut = chunk.index(ANSWER) + len(ANSWER)
                    head, inline_answer = encode(chunk[:cut]), encode(chunk[cut:].rstrip(SEP))
                    data = head + inline_answer + encode(SEP)
                    targets[pos + len(head) : pos + len(head) + len(inline_answer)] = True
                else:
                    data = encode(chunk)
                seq[pos : pos + len(data)] = data
                pos += len(data)
            seq[pos:start] = cue
            answer_ids = encode(answer + "\n")[: ANSWER_ROOM + 1]
            seq[start : start + len(answer_ids)] = answer_ids
            targets[start : start + len(answer_ids)] = True
            x, y = seq[:-1].copy(), np.where(targets[1:], seq[1:], IGNORE_INDEX)
            return x, y
        raise ConfigError(
            f"rows of {n} tokens are too short for the questions' facts: raise --segment-len or the segments per step"
        )

    def next_batch(self, segments: int = 1) -> TaskBatch:
        rng = np.random.default_rng([self.seed, self.index])
        limit = self.question_limit()
        self.index += 1
        rows = [self.row(rng, segments * self.segment_len, limit) for _ in range(self.batch_size)]
        x, y = (np.stack(a) for a in zip(*rows))
        if self.trim_padding:  # rows are left-padded: keep the columns from the longest row's first token on
            used = x.shape[1] - int(np.argmax((x != PAD).any(axis=0)))
            keep = min(-(-used // 16) * 16, x.shape[1])
            x, y = x[:, -keep:], y[:, -keep:]
        return TaskBatch(torch.from_numpy(x), torch.from_numpy(y), True)

    def state_dict(self) -> dict[str, int]:
        return {"index": self.index}

    def load_state_dict(self, state: dict) -> None:
        index = state.get("index")
        if not (isinstance(index, int) and index >= 0):
            raise ValueError(f"invalid BabilongBatches state {state!r}: index must be an integer >= 0")
        self.index = index
