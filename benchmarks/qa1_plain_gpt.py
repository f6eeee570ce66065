"""A control for the qa1 plateau: a plain causal Transformer built from torch's own layers (absolute positions, no
memory, nothing of memtx's model), 4 x 128 like the babilong presets, trained on noise-free qa1 rows in BPE tokens:
the cheap place to try a training recipe before memtx's presets get it.

Rows: a training story's facts, each followed by the bAbI questions asked there and their answers (as memtx's
inline questions; ``--mode plain``: none), then the row's question; ``--mode aug`` also asks, after every other
fact, "Where is X?" for a random person already named, answered by qa1's rule (the room of X's last move), so that
most questions are not answered by the last-mentioned room; ``--ask anyone`` (``far``) makes each row's final question
about anyone named so far (the person whose last move is oldest); ``--filler N`` puts 0..N short filler sentences
after each fact. ``--fact-curriculum 2`` trains on the questions asked
after at most 2 facts for ``--stage-steps``, then on all. Test: the first ``--test`` qa1 test questions, the facts
then the question, placed where a training row puts its final question, argmax of the answer's token. Prints one
JSON line per evaluation, with the accuracy by how many facts came after the asked person's last move. memtx-*
models: ``--save DIR`` writes a memtx run folder, ``--init-from DIR`` continues one.

    python benchmarks/qa1_plain_gpt.py --fact-curriculum 2 --stage-steps 1250 --steps 3000
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from memtx.data.bpe import BpeTokenizer
from memtx.models.transformer_lm import TransformerLM
from memtx.presets import PRESETS
from memtx.tasks.babilong import BabiQuestion, load_babi
from memtx.tasks.babilong_batches import FILLERS, earlier_questions, prompt_suffix
from memtx.training.checkpoint import MODEL_FILE, load_weights, model_metadata, save_weights
from memtx.training.trainer import TOKENIZER_FILE, load_tokenizer

T = 192
PEOPLE = ("Mary", "John", "Daniel", "Sandra")  # qa1's people and rooms
ROOMS = ("bathroom", "bedroom", "garden", "hallway", "kitchen", "office")
MORE_PEOPLE = "Anna Ben Carl Dora Emma Fred Gina Hugo Iris Jack Kate Liam Nora Omar Paul Rosa Sam Tina Uma Vera".split()
MORE_ROOMS = "attic basement cellar garage library pantry porch studio lobby balcony yard lounge".split()


def renaming(rng: random.Random) -> dict[str, str]:
    """A row's entity renaming (``--rename``): qa1's 4 people and 6 rooms to distinct random picks from larger
    pools that include them, so that no name or room carries anything across rows but its place in the story."""
    people, rooms = rng.sample((*PEOPLE, *MORE_PEOPLE), 4), rng.sample((*ROOMS, *MORE_ROOMS), 6)
    return dict(zip((*PEOPLE, *ROOMS), (*people, *rooms), strict=True))


def mover(fact: str) -> tuple[str, str]:
    """(person, room) of a qa1 fact such as 'Mary went back to the kitchen.'"""
    words = fact.rstrip(".").split()
    return words[0], words[-1]


def row(
    stories: list[BabiQuestion],
    index: int,
    bpe: BpeTokenizer,
    aug: bool,
    rng: random.Random,
    lm: bool = False,
    inline: bool = True,
    rename: dict[str, str] | None = None,
    ask: str = "babi",
    filler: int = 0,
):
    """(x, y) of length T for question ``index``: pad, facts with questions inline, the question; answers scored
    (every token with ``lm``)."""
    q = stories[index]
    ids: list[int] = []
    scored: list[bool] = []

    def add(text: str, target: bool = False) -> None:
        if rename:
            text = re.sub(r"\w+", lambda m: rename.get(m.group(0), m.group(0)), text)
        e = bpe.encode(text)
        ids.extend(e)
        scored.extend([target or lm] * len(e))

    asked = {len(e.facts): e for e in earlier_questions(stories, index)} if inline else {}
    where: dict[str, str] = {}
    for i, fact in enumerate(q.facts, 1):
        add(fact + " ")
        for _ in range(rng.randint(0, filler) if filler else 0):
            add(rng.choice(FILLERS) + " ")
        person, room = mover(fact)
        where[person] = room
        if i in asked:
            question, answer = asked[i].question, asked[i].answer
        elif aug and i < len(q.facts):
            person = rng.choice(sorted(where))
            question, answer = f"Where is {person}?", where[person]
        else:
            continue
        add(prompt_suffix(question))
        add(answer + "\n", True)
        add(" ")
    question, answer = q.question, q.answer
    if ask != "babi":  # the final question about a person drawn from everyone named so far (or the least recent)
        named = sorted(where)
        if ask == "far":
            last_move = {mover(f)[0]: i for i, f in enumerate(q.facts)}
            named = [p for p in named if last_move[p] == min(last_move.values())]
        person = rng.choice(named)
        question, answer = f"Where is {person}?", where[person]
    add(prompt_suffix(question))
    add(answer + "\n", True)
    ids, scored = ids[-T - 1 :], scored[-T - 1 :]
    pad = T + 1 - len(ids)
    seq, target = np.array([0] * pad + ids), np.array([False] * pad + scored)
    return seq[:-1], np.where(target[1:], seq[1:], -100)


class PlainGPT(nn.Module):
    def __init__(self, vocab: int, d: int = 128, layers: int = 4, post_norm: bool = False) -> None:
        super().__init__()
        self.emb, self.pos = nn.Embedding(vocab, d), nn.Embedding(T, d)
        layer = nn.TransformerEncoderLayer(d, 4, 4 * d, dropout=0.0, batch_first=True, norm_first=not post_norm)
        self.body = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.ln, self.head = nn.LayerNorm(d), nn.Linear(d, vocab)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(T))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.emb(x) + self.pos(torch.arange(x.shape[1]))
        return self.head(self.ln(self.body(h, mask=self.mask, is_causal=True)))


class SmearedBlock(nn.Module):
    """A pre-LN Transformer layer (as the control's) whose keys are smeared: key j of head h is
    ``s_h k_j + (1 - s_h) k_{j-1}`` with a learned s_h = sigmoid(a_h) (Olsson et al. 2022, "In-context learning and
    induction heads"), so one layer can match "the token after the previous occurrence of this one"."""

    def __init__(self, d: int, heads: int = 4, smear: bool = True, alibi: bool = False) -> None:
        super().__init__()
        self.heads, self.smeared = heads, smear
        # --alibi: a learned recency bias -softplus(r_h) * distance per head (Press et al. 2022's slopes to start)
        slopes = torch.tensor([2.0 ** -(i + 1) for i in range(heads)]).view(heads, 1, 1)
        self.recency = nn.Parameter(torch.log(torch.expm1(slopes))) if alibi else None
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.smear = nn.Parameter(torch.zeros(heads, 1, 1))
        self.ff = nn.Sequential(nn.Linear(d, 4 * d), nn.ReLU(), nn.Linear(4 * d, d))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        b, t, d = h.shape
        q, k, v = (x.view(b, t, self.heads, -1).transpose(1, 2) for x in self.qkv(self.ln1(h)).chunk(3, -1))
        if self.smeared:
            s = torch.sigmoid(self.smear)
            k = s * k + (1 - s) * nn.functional.pad(k, (0, 0, 1, 0))[:, :, :-1]
        if self.recency is None:
            a = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            i = torch.arange(t)
            distance = (i[:, None] - i[None, :]).float()
            bias = -nn.functional.softplus(self.recency) * distance
            bias = bias.masked_fill(distance < 0, -torch.inf)
            a = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        h = h + self.out(a.transpose(1, 2).reshape(b, t, d))
        return h + self.ff(self.ln2(h))


class SmearedGPT(nn.Module):
    def __init__(self, vocab: int, d: int = 128, layers: int = 4, smear: bool = True, alibi: bool = False) -> None:
        super().__init__()
        self.emb, self.pos = nn.Embedding(vocab, d), nn.Embedding(T, d)
        self.body = nn.ModuleList(SmearedBlock(d, smear=smear, alibi=alibi) for _ in range(layers))
        self.ln, self.head = nn.LayerNorm(d), nn.Linear(d, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.emb(x) + self.pos(torch.arange(x.shape[1]))
        for block in self.body:
            h = block(h)
        return self.head(self.ln(h))


class MemtxGPT(nn.Module):
    """memtx's own model (``TransformerLM``, the babilong presets' model) on one window: the bridge between the
    control and memtx's BABILong presets."""

    def __init__(
        self, vocab: int, memory: str, layers: int = 4, norm: str = "post", smear: bool = False, recency: bool = False
    ) -> None:
        super().__init__()
        cfg = replace(PRESETS[f"babilong-qa1-{memory}"][1].model, vocab_size=vocab, n_layers=layers, norm=norm)
        cfg = replace(cfg, smear_keys=smear or cfg.smear_keys, recency_bias=recency or cfg.recency_bias)
        self.lm = TransformerLM(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lm(x).logits


def test_rows(questions: list[BabiQuestion], bpe: BpeTokenizer) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x, position, answer token) per question: the facts then the question, placed where a training row puts
    them (the positions are absolute, and a training row ends with its answer and newline, so the cue ends that
    many tokens before the row's end); the answer's first token is read at ``position``."""
    xs, where, answers = [], [], []
    for q in questions:
        answer = bpe.encode(q.answer + "\n")
        ids = (bpe.encode("".join(f + " " for f in q.facts) + prompt_suffix(q.question)) + answer)[-T - 1 :]
        xs.append(([0] * (T + 1 - len(ids)) + ids)[:-1])
        where.append(T - len(answer))
        answers.append(answer[0])
    return torch.tensor(xs), torch.tensor(where), torch.tensor(answers)


@torch.no_grad()
def test_accuracy(model: nn.Module, questions: list[BabiQuestion], bpe: BpeTokenizer) -> tuple[float, dict[int, float]]:
    """Accuracy, and accuracy by how many facts came after the asked person's last move (0: the last fact)."""
    x, where, answers = test_rows(questions, bpe)
    right = (model(x)[torch.arange(len(x)), where].argmax(-1) == answers).tolist()
    by_ago: dict[int, list[bool]] = {}
    for q, r in zip(questions, right, strict=True):
        person = q.question.rstrip("?").split()[-1]
        ago = next(i for i, fact in enumerate(reversed(q.facts)) if mover(fact)[0] == person)
        by_ago.setdefault(ago, []).append(r)
    return sum(right) / len(right), {n: round(sum(v) / len(v), 3) for n, v in sorted(by_ago.items())}


def save_run(model: MemtxGPT, bpe: BpeTokenizer, memory: str, out: Path) -> None:
    """A memtx run folder of the window model: config.json, model.safetensors, tokenizer.json."""
    preset = PRESETS[f"babilong-qa1-{memory}"][1]
    cfg = replace(preset, model=model.lm.cfg, data=replace(preset.data, tokens="bpe"), segment_len=T, out=str(out))
    out.mkdir(parents=True, exist_ok=False)
    (out / "config.json").write_text(cfg.to_json())
    save_weights(model.lm.state_dict(), out / MODEL_FILE, model_metadata(asdict(model.lm.cfg)))
    bpe.save(out / TOKENIZER_FILE)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("bab", "aug", "plain"), default="bab", help="plain: no inline questions")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=0.0, help="AdamW's decoupled weight decay")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument(
        "--model",
        choices=("plain", "smeared", "unsmeared", "memtx-xl", "memtx-rmt", "memtx-armt"),
        default="plain",
        help="smeared: the control with smeared keys (unsmeared: the same layers without); memtx-*: memtx's "
        "TransformerLM (babilong preset's 4x128) with that memory, one window",
    )
    parser.add_argument("--post-norm", action="store_true", help="plain: post-norm layers (memtx's default)")
    parser.add_argument("--norm", choices=("post", "pre"), default="post", help="memtx-*: model.norm")
    parser.add_argument("--smear", action="store_true", help="memtx-*: model.smear_keys (smeared keys)")
    parser.add_argument(
        "--alibi", action="store_true", help="a learned recency bias per head (memtx-*: model.recency_bias)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rename", action="store_true", help="train rows rename people and rooms from larger pools")
    parser.add_argument("--lm", action="store_true", help="score every token, not only the answers")
    parser.add_argument(
        "--filler", type=int, default=0, help="training rows: 0..N short filler sentences after each fact (test: none)"
    )
    parser.add_argument(
        "--ask",
        choices=("babi", "anyone", "far"),
        default="babi",
        help="anyone: each training row's final question asks about a person drawn from everyone named so far, "
        "answered by qa1's rule (bAbI's own questions mostly ask about someone who moved in the last facts); "
        "far: about the person whose last move is the oldest",
    )
    parser.add_argument(
        "--balance",
        action="store_true",
        help="train rows draw questions the last-mentioned room answers and the others half of the time each",
    )
    parser.add_argument("--max-facts", type=int, default=0, help="only questions asked after at most this many facts")
    parser.add_argument(
        "--fact-curriculum",
        type=lambda v: [int(n) for n in v.split(",")],
        default=[],
        help="e.g. 2,4: train on questions asked after at most 2 facts, then 4, --stage-steps each, then all",
    )
    parser.add_argument("--stage-steps", type=int, default=500)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument(
        "--save",
        default="",
        help="memtx-*: write the trained model as a memtx run folder (the babilong preset with these BPE tokens and "
        "segments of the window), to evaluate with memtx babilong or continue with memtx train --init-from",
    )
    parser.add_argument("--babi-dir", default=None, help="bAbI v1.2 folder (default: ../shared/data/babi)")
    parser.add_argument(
        "--init-from",
        default="",
        help="memtx-*: start from a folder written by --save (its weights and tokenizer; same --model and --smear)",
    )
    a = parser.parse_args(argv)
    if a.init_from and not (a.model.startswith("memtx") and (Path(a.init_from) / MODEL_FILE).is_file()):
        parser.error(f"--init-from: {a.init_from} holds no {MODEL_FILE}: pass a folder written by --save (memtx-*)")
    if a.save and (not a.model.startswith("memtx") or Path(a.save).exists()):
        parser.error("--save is for memtx-* models, into a folder that does not exist yet")
    torch.manual_seed(a.seed)
    rng = random.Random(a.seed)
    train = load_babi("qa1", "train", a.babi_dir, variant="en-10k")
    test = load_babi("qa1", "test", a.babi_dir)
    if a.max_facts:
        test = [q for q in test if len(q.facts) <= a.max_facts]
    test = test[: a.test]

    def chosen(limit: int) -> list[int]:
        return [i for i, q in enumerate(train) if not limit or len(q.facts) <= limit]

    def halves(pool: list[int]) -> list[list[int]]:
        """--balance: [questions the last-mentioned room answers, the others]; else [pool]."""
        if not a.balance:
            return [pool]
        last = [i for i in pool if train[i].answer == mover(train[i].facts[-1])[1]]
        return [last, sorted(set(pool) - set(last))]

    stages = [halves(chosen(n)) for n in a.fact_curriculum] + [halves(chosen(a.max_facts))]
    texts = [t for q in train for t in (*q.facts, q.question, q.answer)]
    if a.rename:  # the extra names and rooms in the tokenizer's training text
        texts += [f"{w} {w}." for w in MORE_PEOPLE + MORE_ROOMS for _ in range(2000)]
    bpe = load_tokenizer(Path(a.init_from)) if a.init_from else BpeTokenizer.train(texts, 1024)
    if a.model in ("smeared", "unsmeared"):
        model = SmearedGPT(bpe.vocab_size, layers=a.layers, smear=a.model == "smeared", alibi=a.alibi)
    elif a.model == "plain":
        model = PlainGPT(bpe.vocab_size, layers=a.layers, post_norm=a.post_norm)
    else:
        model = MemtxGPT(
            bpe.vocab_size, a.model.split("-")[1], layers=a.layers, norm=a.norm, smear=a.smear, recency=a.alibi
        )
        if a.init_from:
            load_weights(model.lm, Path(a.init_from) / MODEL_FILE)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=a.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 100))
    start = time.time()
    for step in range(1, a.steps + 1):
        pool = stages[min((step - 1) // a.stage_steps, len(stages) - 1)]
        rows = [
            row(
                train,
                rng.choice(rng.choice(pool) if len(pool) > 1 else pool[0]),  # unbalanced: the same draws as before
                bpe,
                a.mode == "aug",
                rng,
                a.lm,
                a.mode != "plain",
                renaming(rng) if a.rename else None,
                a.ask,
                a.filler,
            )
            for _ in range(a.batch_size)
        ]
        x, y = (torch.tensor(np.stack(r)) for r in zip(*rows, strict=True))
        loss = nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten(), ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        schedule.step()
        if step % a.every == 0:
            acc, by_ago = test_accuracy(model, test, bpe)
            print(
                json.dumps(
                    {
                        "model": a.model,
                        "mode": a.mode,
                        "step": step,
                        "test_accuracy": acc,
                        "by_moves_ago": by_ago,
                        "seconds": round(time.time() - start),
                    }
                )
            )
    if a.save:
        save_run(model, bpe, a.model.split("-")[1], Path(a.save))


if __name__ == "__main__":
    main()
