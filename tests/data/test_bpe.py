"""The word-internal byte-level BPE of BABILong runs: round trip, additivity at non-word characters, training."""

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memtx.data.bpe import BpeTokenizer, is_bpe_file
from memtx.data.char import BYTES
from memtx.data.word import build_word_tokenizer
from memtx.errors import DataError

STORIES = ["Mary moved to the bathroom.", "John went to the hallway.", "Where is Mary?", "bathroom"] * 50


@pytest.fixture(scope="module")
def bpe() -> BpeTokenizer:
    return BpeTokenizer.train(STORIES, 512)


def test_story_words_become_single_tokens_and_book_text_still_encodes(bpe):
    pieces = [bpe.decode([i]) for i in bpe.encode("Mary moved to the bathroom. ")]
    assert pieces == ["Mary", " ", "moved", " ", "to", " ", "the", " ", "bathroom", ".", " "]
    assert bpe.encode("bathroom\n")[0] == bpe.encode(" bathroom")[1]  # one token wherever the word stands
    text = "Ishmael — “call me”, naïve 日本!\n"
    assert bpe.decode(bpe.encode(text)) == text
    unseen = "日本 — “¿”"  # no merge learned: one token per byte
    assert bpe.decode(bpe.encode(unseen)) == unseen and bpe.count(unseen) == len(unseen.encode())
    assert 0 not in bpe.encode(text) and bpe.pad_id == 0 and bpe.decode([0, *bpe.encode("Mary")]) == "Mary"


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("Mary wentoh bathroom.?\n,é日")), max_size=60), st.data())
def test_round_trip_and_additive_at_every_non_word_character(bpe, text, data):
    """What the generator relies on: a context's tokens are the concatenation of its chunks' tokens."""
    assert bpe.decode(bpe.encode(text)) == text
    cuts = [i for i, c in enumerate(text) if not c.isalnum()]
    if cuts:
        i = data.draw(st.sampled_from(cuts))
        for cut in (i, i + 1):  # before or after the space / punctuation mark
            assert bpe.encode(text[:cut]) + bpe.encode(text[cut:]) == bpe.encode(text)


def test_training_is_deterministic_and_save_load_round_trips(bpe, tmp_path: Path):
    again = BpeTokenizer.train(STORIES, 512)
    assert again.tokenizer.to_str() == bpe.tokenizer.to_str()
    bpe.save(tmp_path / "tokenizer.json")
    assert is_bpe_file(tmp_path / "tokenizer.json")
    loaded = BpeTokenizer.load(tmp_path / "tokenizer.json")
    assert loaded.encode("Where is Mary?") == bpe.encode("Where is Mary?") and loaded.vocab_size == bpe.vocab_size
    assert bpe.vocab_size < 512  # stops once every repeated word is one token
    capped = BpeTokenizer.train(STORIES, 260)
    assert capped.vocab_size == 260 and capped.count("bathroom") > 1


def test_bad_files_and_sizes_are_one_line_errors(tmp_path: Path):
    words = build_word_tokenizer(["a b c"])
    words.save(tmp_path / "words.json")
    assert not is_bpe_file(tmp_path / "words.json") and not is_bpe_file(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match="cannot read BPE tokenizer"):
        BpeTokenizer.load(tmp_path / "bad.json")
    with pytest.raises(DataError, match="not a memtx BPE tokenizer"):
        BpeTokenizer.load(tmp_path / "words.json")
    with pytest.raises(DataError, match="at least 258"):
        BpeTokenizer.train(STORIES, 100)
    assert json.loads((tmp_path / "words.json").read_text())["model"]["type"] == "WordLevel"


def test_byte_codec_has_the_same_interface():
    assert BYTES.encode("é\n") == [0xC3, 0xA9, 10] and BYTES.decode([0xC3, 0xA9]) == "é" and BYTES.count("é") == 2
    assert BYTES.vocab_size == 256 and BYTES.pad_id == 0
