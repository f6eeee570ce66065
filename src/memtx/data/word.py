"""Word-level tokenizer for pre-tokenized corpora (WikiText convention), stored as a ``tokenizers`` JSON.

Conventions (those of pytorch/examples ``word_language_model`` and Transformer-XL, which give the official WikiText
token counts, e.g. 217,646 for WikiText-2 valid):

- Lines end at ``\\n``, ``\\r\\n`` or ``\\r`` (Python's universal newlines). **Every** line, blank ones included,
  gets one ``<eos>`` after its words; a final line without a newline also gets one.
- Words are what ``str.split()`` returns: the text is already tokenized, so splitting on whitespace is all there is.
- Words missing from the vocabulary map to ``<unk>`` (WikiText already contains literal ``<unk>`` words).
- Ids are in order of frequency in the training text, most frequent first, ties broken by code-point order of the
  word. ``<eos>`` and ``<unk>`` are ranked by their own counts (``<unk>`` counts the words it replaces), so the
  order is exactly the frequency order of the *encoded* training stream, as adaptive softmax / adaptive input
  need. ``tokenizers``' ``WordLevelTrainer`` puts special tokens first whatever their count, so the vocabulary is
  counted here and handed to a ``WordLevel`` model.

The saved file is a plain ``tokenizers`` JSON (``Tokenizer.from_file`` gives the same ids: a normalizer maps
U+001C..U+001F, the only characters ``str.split`` treats as whitespace and ``WhitespaceSplit`` does not, to a space;
a template appends ``<eos>``). ``encode`` runs an equivalent pure-Python path (split + dict look-up), about 4x
faster than ``Tokenizer.encode_batch`` on WikiText; the tests check the two agree.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import chain
from pathlib import Path

import numpy as np
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors

from memtx.errors import DataError

EOS = "<eos>"
UNK = "<unk>"

_LINE_END = re.compile(r"\r\n|\r|\n")
_SPLIT_LIKE_PYTHON = "[\x1c-\x1f]"  # whitespace to str.split(), not to Rust's char::is_whitespace


def split_lines(text: str) -> list[str]:
    """Lines of ``text`` without their line ends (universal newlines); no empty line after a final newline."""
    lines = _LINE_END.split(text)
    if lines[-1] == "":
        lines.pop()
    return lines


def _lines(text_or_lines: str | Iterable[str]) -> Iterable[str]:
    """A string is split into lines; any other iterable already yields one line per item."""
    return split_lines(text_or_lines) if isinstance(text_or_lines, str) else text_or_lines


def _make_tokenizer(vocab: dict[str, int]) -> Tokenizer:
    tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tok.normalizer = normalizers.Replace(Regex(_SPLIT_LIKE_PYTHON), " ")
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single=f"$A {EOS}", special_tokens=[(EOS, vocab[EOS])])
    return tok


class WordTokenizer:
    """Word <-> id mapping with one ``<eos>`` per line; wraps a ``tokenizers.Tokenizer`` (WordLevel model).

    Build one with :func:`build_word_tokenizer`, or :meth:`load` a saved one.
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        vocab = tokenizer.get_vocab(with_added_tokens=False)
        self._ids: dict[str, int] = vocab
        self._tokens: list[str] = [""] * len(vocab)
        for word, i in vocab.items():
            self._tokens[i] = word
        self.eos_id: int = vocab[EOS]
        self.unk_id: int = vocab[UNK]

    @property
    def vocab_size(self) -> int:
        """V: number of ids, ``<eos>`` and ``<unk>`` included."""
        return len(self._tokens)

    @property
    def tokens(self) -> Sequence[str]:
        """Token of each id, id order (= frequency order)."""
        return tuple(self._tokens)

    def token_to_id(self, token: str) -> int:
        return self._ids.get(token, self.unk_id)

    def id_to_token(self, i: int) -> str:
        return self._tokens[i]

    def encode(self, text_or_lines: str | Iterable[str]) -> np.ndarray:
        """Ids (int64, shape (n_words + n_lines,)) of a text, or of an iterable of lines; ``<eos>`` ends each line."""
        get, unk, eos = self._ids.get, self.unk_id, (self.eos_id,)
        words = chain.from_iterable(chain((get(w, unk) for w in line.split()), eos) for line in _lines(text_or_lines))
        return np.fromiter(words, dtype=np.int64)

    def decode(self, ids: Iterable[int] | np.ndarray) -> str:
        """Text of ``ids``: words joined by spaces, each ``<eos>`` ending a line with ``\\n``."""
        arr = np.asarray(ids, dtype=np.int64).reshape(-1)
        if arr.size and (arr.min() < 0 or arr.max() >= self.vocab_size):
            raise ValueError(f"ids must lie in [0, {self.vocab_size}); got min {arr.min()}, max {arr.max()}")
        out: list[str] = []
        line: list[str] = []
        for i in arr.tolist():
            if i == self.eos_id:
                out.append(" ".join(line) + "\n")
                line = []
            else:
                line.append(self._tokens[i])
        out.append(" ".join(line))
        return "".join(out)

    def to_json(self) -> str:
        return self.tokenizer.to_str()

    def save(self, path: str | os.PathLike) -> None:
        """Write the ``tokenizers`` JSON to ``path`` (atomically: a temp file beside it, then a rename)."""
        path = Path(path)
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".part")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(self.to_json())
                os.replace(tmp, path)
            finally:
                Path(tmp).unlink(missing_ok=True)
        except OSError as e:
            raise DataError(f"cannot write word vocabulary '{path}' ({e}): check that its folder is writable") from e

    @classmethod
    def load(cls, path: str | os.PathLike) -> WordTokenizer:
        """Read a vocabulary written by :meth:`save`; a missing or corrupt file raises :class:`DataError`."""
        path = Path(path)
        rebuild = "delete it and build the vocabulary again (build_word_tokenizer(...).save(path))"
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError as e:
            raise DataError(
                f"word vocabulary '{path}' does not exist: build it with build_word_tokenizer(...).save(path) "
                "or pass the right path"
            ) from e
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"cannot read word vocabulary '{path}' ({_one_line(e)}): {rebuild}") from e
        try:
            loaded = Tokenizer.from_str(text)
        except Exception as e:  # tokenizers raises plain Exception on bad JSON
            raise DataError(
                f"word vocabulary '{path}' is not a valid tokenizers JSON ({_one_line(e)}): {rebuild}"
            ) from e
        model = json.loads(text).get("model") or {}
        vocab = model.get("vocab") if model.get("type") == "WordLevel" else None
        if not (
            isinstance(vocab, dict)
            and EOS in vocab
            and UNK in vocab
            and sorted(vocab.values()) == list(range(len(vocab)))
            and loaded.to_str() == _make_tokenizer(vocab).to_str()
        ):
            raise DataError(
                f"word vocabulary '{path}' is not a memtx word vocabulary (WordLevel with {EOS} and {UNK}, "
                f"ids 0..V-1, whitespace split, {EOS} per line): {rebuild}"
            )
        return cls(loaded)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WordTokenizer) and self._tokens == other._tokens

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"WordTokenizer(vocab_size={self.vocab_size}, eos_id={self.eos_id}, unk_id={self.unk_id})"


def count_words(text_or_lines: str | Iterable[str]) -> Counter[str]:
    """Count of each word, ``<eos>`` counted once per line."""
    counts: Counter[str] = Counter()
    n_lines = 0
    for line in _lines(text_or_lines):
        counts.update(line.split())
        n_lines += 1
    counts[EOS] += n_lines
    return counts


def build_word_tokenizer(
    text_or_lines: str | Iterable[str], max_vocab: int | None = None, min_freq: int = 1
) -> WordTokenizer:
    """Vocabulary of a training text, ids in frequency order (ties: code-point order of the word).

    Words seen fewer than ``min_freq`` times, and all but the ``max_vocab`` most frequent ids (``<eos>`` and
    ``<unk>`` included, always kept), become ``<unk>``; their counts go to ``<unk>`` before the final ranking.
    """
    if max_vocab is not None and max_vocab < 2:
        raise ValueError(f"max_vocab must be at least 2 (<eos> and <unk>), got {max_vocab}")
    if min_freq < 1:
        raise ValueError(f"min_freq must be at least 1, got {min_freq}")
    counts = count_words(text_or_lines)
    specials = {EOS: counts.pop(EOS), UNK: counts.pop(UNK, 0)}
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    n_keep = len(ranked) if max_vocab is None else max_vocab - 2
    kept = [(w, n) for w, n in ranked[:n_keep] if n >= min_freq]
    specials[UNK] += sum(counts.values()) - sum(n for _, n in kept)
    ordered = sorted([*kept, *specials.items()], key=lambda kv: (-kv[1], kv[0]))
    return WordTokenizer(_make_tokenizer({w: i for i, (w, _) in enumerate(ordered)}))


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def load_token_corpus(spec: str, data_dir: str | None, max_vocab: int = 0, tokenizer: WordTokenizer | None = None):
    """A word corpus as three int64 id arrays (a ``Corpus``), and its tokenizer: the given one, or one built from
    the training split (keeping the ``max_vocab`` most frequent words; 0 = all)."""
    from memtx.data.corpora import Corpus, load_word_corpus

    words = load_word_corpus(spec, data_dir)
    if tokenizer is None:
        tokenizer = build_word_tokenizer(words.train, max_vocab=max_vocab or None)
    ids = [tokenizer.encode(words.split(s)) for s in ("train", "valid", "test")]
    info = {**words.info, "vocab_size": tokenizer.vocab_size, "split_tokens": [len(a) for a in ids]}
    return Corpus(words.name, *ids, info), tokenizer
