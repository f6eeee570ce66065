import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from memtx.data.word import EOS, UNK, WordTokenizer, build_word_tokenizer, count_words, split_lines
from memtx.errors import DataError

WORDS = "the of and a to in is was it that for on with as by he at from his an".split()


def make_lines(n_lines: int, seed: int = 0) -> list[str]:
    """Lines of Zipf-ish random words, some blank, with WikiText-like leading/trailing spaces."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, len(WORDS) + 1)
    lines = []
    for _ in range(n_lines):
        n = int(rng.integers(0, 12))
        words = rng.choice(WORDS, size=n, p=p / p.sum()) if n else []
        lines.append(" " + " ".join(words) + " " if n else " ")
    return lines


def test_split_lines_universal_newlines() -> None:
    assert split_lines("") == []
    assert split_lines("a") == ["a"]
    assert split_lines("a\n") == ["a"]
    assert split_lines("a\r\nb\rc\n\n") == ["a", "b", "c", ""]
    assert split_lines("\n") == [""]


def test_round_trip() -> None:
    lines = make_lines(300)
    text = "\n".join(lines) + "\n"
    tok = build_word_tokenizer(text)
    ids = tok.encode(text)
    assert ids.dtype == np.int64 and ids.ndim == 1
    assert len(ids) == sum(len(line.split()) for line in lines) + len(lines)
    normalised = "".join(" ".join(line.split()) + "\n" for line in lines)
    assert tok.decode(ids) == normalised
    assert np.array_equal(tok.encode(tok.decode(ids)), ids)
    assert np.array_equal(tok.encode(lines), ids)  # an iterable of lines == the text
    assert UNK not in tok.decode(ids).split()


def test_ids_in_frequency_order() -> None:
    lines = make_lines(500, seed=1)
    tok = build_word_tokenizer("\n".join(lines))
    counts = Counter(w for line in lines for w in line.split())
    counts[EOS] = len(lines)
    counts[UNK] = 0
    expected = sorted(counts, key=lambda w: (-counts[w], w))
    assert list(tok.tokens) == expected
    assert tok.vocab_size == len(expected)
    ids = tok.encode("\n".join(lines))
    freq = np.bincount(ids, minlength=tok.vocab_size)
    assert np.all(np.diff(freq) <= 0)  # id order == frequency order of the encoded stream


def test_ties_and_specials_ranked_by_count() -> None:
    # counts: b 2, a 2, c 1, <unk> 1 (literal), <eos> 3 lines
    tok = build_word_tokenizer("b a\nc a b\n<unk>\n")
    assert tok.tokens == (EOS, "a", "b", UNK, "c")  # '<' < 'c' in code-point order
    assert (tok.eos_id, tok.unk_id) == (0, 3)


def test_unknown_words_map_to_unk() -> None:
    tok = build_word_tokenizer("a a b\n")
    assert tok.encode("a zebra b").tolist() == [tok.token_to_id("a"), tok.unk_id, tok.token_to_id("b"), tok.eos_id]
    assert tok.token_to_id("zebra") == tok.unk_id


def test_min_freq_and_max_vocab_feed_unk() -> None:
    text = "a a a a b b b c c d e f\n"
    rare = build_word_tokenizer(text, min_freq=2)
    assert rare.tokens == ("a", UNK, "b", "c", EOS)  # <unk> holds d, e, f: 3, tied with b; "<" < "b"
    assert rare.encode("d").tolist() == [rare.unk_id, rare.eos_id]
    small = build_word_tokenizer(text, max_vocab=3)
    assert small.tokens == (UNK, "a", EOS)  # b..f (8 words) became <unk>
    assert small.vocab_size == 3
    with pytest.raises(ValueError, match="max_vocab"):
        build_word_tokenizer(text, max_vocab=1)


def test_one_eos_per_line() -> None:
    tok = build_word_tokenizer("x y\n")
    for text, n_lines in [("x\n\ny\n", 3), ("x\r\ny\r\n", 2), ("x\ry", 2), ("x", 1), ("", 0), (" \n \n", 2)]:
        ids = tok.encode(text)
        assert int((ids == tok.eos_id).sum()) == n_lines, text
        assert ids[-1] == tok.eos_id if n_lines else len(ids) == 0
    assert tok.decode(tok.encode("x\n\ny")) == "x\n\ny\n"
    assert count_words("x\n\n")[EOS] == 2


def test_decode_rejects_bad_ids() -> None:
    tok = build_word_tokenizer("x y\n")
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        tok.decode([0, 4])


def test_save_load_equal(tmp_path: Path) -> None:
    text = "\n".join(make_lines(200, seed=2))
    tok = build_word_tokenizer(text, max_vocab=15)
    path = tmp_path / "vocab.json"
    tok.save(path)
    loaded = WordTokenizer.load(path)
    assert loaded == tok and loaded.to_json() == tok.to_json()
    assert (loaded.eos_id, loaded.unk_id, loaded.vocab_size) == (tok.eos_id, tok.unk_id, 15)
    assert np.array_equal(loaded.encode(text), tok.encode(text))
    assert [p.name for p in tmp_path.iterdir()] == ["vocab.json"]  # no temp file left


def test_saved_file_is_a_plain_tokenizers_json(tmp_path: Path) -> None:
    """Tokenizer.from_file gives the same ids as encode, whitespace handling included."""
    spaces = [chr(c) for c in range(0x110000) if chr(c).isspace() and chr(c) not in "\n\r"]
    assert {"\x1c", "\x1d", "\x1e", "\x1f", "\x85", "\xa0", "\u2028", "\u3000"} <= set(spaces)
    others = ["\u200b", "\ufeff", "\u180e", "é", "日本"]  # not whitespace to str.split
    lines = ["a" + s + "b" for s in spaces + others] + [" a  b ", "", "<eos> a", "c\u00a0d"]
    tok = build_word_tokenizer(lines)
    tok.save(tmp_path / "v.json")
    plain = Tokenizer.from_file(str(tmp_path / "v.json"))
    via_tokenizers = [i for enc in plain.encode_batch(lines) for i in enc.ids]
    assert tok.encode(lines).tolist() == via_tokenizers
    assert json.loads((tmp_path / "v.json").read_text())["model"]["type"] == "WordLevel"


def one_line_error(match: str, path: Path) -> None:
    with pytest.raises(DataError, match=match) as err:
        WordTokenizer.load(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_load_errors(tmp_path: Path) -> None:
    one_line_error("does not exist: build it", tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"model": {')
    one_line_error("not a valid tokenizers JSON.*build the vocabulary again", tmp_path / "bad.json")
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00")
    one_line_error("cannot read word vocabulary", tmp_path / "bin.json")
    other = Tokenizer.from_str(build_word_tokenizer("a b\n").to_json())
    other.post_processor = None  # no <eos> per line: not ours
    (tmp_path / "other.json").write_text(other.to_str())
    one_line_error("not a memtx word vocabulary", tmp_path / "other.json")


def test_save_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot write word vocabulary .*writable"):
        build_word_tokenizer("a\n").save(tmp_path / "no" / "such" / "v.json")
