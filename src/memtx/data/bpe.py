"""Byte-level BPE whose merges stay inside words (``tokenizers`` BPE), for BABILong models that read words whole.

Text is cut into pre-tokens: each run of word characters (``\\w``) and each other character on its own (space,
newline, punctuation). Each pre-token is mapped to bytes (GPT-2's byte alphabet: any text encodes, no ``<unk>``)
and merged by the learned merges. No token spans a space or a punctuation mark, so encoding is additive there:
``encode(a + b) == encode(a) + encode(b)`` whenever ``a`` ends, or ``b`` starts, with such a character. The BABILong
generator counts lengths chunk by chunk (sentence + space) and the sweep streams the same chunks, so their counts
are exact.

``train`` learns the merges from the texts given (for BABILong: the facts, questions and answers of the bAbI
training stories of the run's tasks, ``BabilongBatches.texts``). Every bAbI word becomes one token ("Mary",
"bathroom"), while book text stays mostly in bytes and short pieces, so a length in tokens holds about as much
text as the same length in bytes and the two test books still fill 1M tokens. Id 0 is ``<pad>`` (the byte
codec's 0 is NUL, which both use to left-pad).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from memtx.errors import DataError

PAD = "<pad>"
DEFAULT_VOCAB = 1024
_PIECES = r"\w+|[^\w]"


class BpeTokenizer:
    """Encode / decode / count with a trained word-internal byte-level BPE (the interface of ``char.BYTES``)."""

    pad_id = 0

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self.vocab_size = tokenizer.get_vocab_size()

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = DEFAULT_VOCAB) -> BpeTokenizer:
        """Merges learned from ``texts`` (stops early when every word that occurs twice is one token)."""
        if vocab_size < 258:
            raise DataError(f"a BPE vocabulary needs at least 258 ids (pad + 256 bytes + 1 merge), got {vocab_size}")
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(_PIECES), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=2,
            special_tokens=[PAD],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer)
        return cls(tok)

    @classmethod
    def load(cls, path: str | Path) -> BpeTokenizer:
        try:
            tok = Tokenizer.from_file(str(path))
        except Exception as e:  # tokenizers raises a bare Exception on a malformed file
            raise DataError(f"cannot read BPE tokenizer '{path}' ({e}): retrain the run or restore the file") from e
        if tok.token_to_id(PAD) != 0:
            raise DataError(f"'{path}' is not a memtx BPE tokenizer (no {PAD} at id 0): retrain the run")
        return cls(tok)

    def save(self, path: str | Path) -> None:
        self.tokenizer.save(str(path))

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def count(self, text: str) -> int:
        return len(self.encode(text))


def is_bpe_file(path: str | Path) -> bool:
    """True if ``path`` is a ``tokenizers`` JSON whose model is BPE (a word tokenizer's is WordLevel)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8")).get("model", {}).get("type") == "BPE"
    except (OSError, ValueError, AttributeError):
        return False
