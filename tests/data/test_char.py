import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from memtx.data import VOCAB_SIZE, decode, encode


@given(st.text())
def test_round_trip(text: str) -> None:
    ids = encode(text)
    assert ids.dtype == torch.int64 and ids.ndim == 1
    assert ids.tolist() == list(text.encode("utf-8"))
    assert decode(ids) == text


def test_ids_are_bytes() -> None:
    ids = encode("aé€😀")
    assert len(ids) == 1 + 2 + 3 + 4
    assert 0 <= int(ids.min()) and int(ids.max()) < VOCAB_SIZE == 256
    assert decode(ids.numpy()) == decode(ids.tolist()) == "aé€😀"


def test_empty() -> None:
    assert encode("").shape == (0,)
    assert decode(encode("")) == decode([]) == ""


def test_invalid_utf8_is_replaced() -> None:
    assert decode([0x61, 0xFF, 0x62]) == "a\ufffdb"
    assert decode(encode("é")[:1]) == "\ufffd"


@pytest.mark.parametrize("ids", [[256], [-1], np.zeros((2, 2), dtype=np.int64)])
def test_decode_rejects_non_bytes(ids) -> None:
    with pytest.raises(ValueError):
        decode(ids)
