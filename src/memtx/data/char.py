"""Byte-level codec: text <-> UTF-8 byte ids in ``[0, 256)``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

VOCAB_SIZE = 256


def encode(text: str) -> torch.Tensor:
    """UTF-8 bytes of ``text`` as a 1-D int64 tensor of ids in ``[0, 256)``."""
    return torch.from_numpy(np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64))


def decode(ids: torch.Tensor | np.ndarray | Sequence[int]) -> str:
    """Inverse of :func:`encode` for a 1-D sequence of byte ids; invalid UTF-8 becomes U+FFFD."""
    if isinstance(ids, torch.Tensor):
        ids = ids.detach().cpu().numpy()
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise ValueError(f"decode expects a 1-D sequence of byte ids, got shape {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() >= VOCAB_SIZE):
        raise ValueError(f"byte ids must lie in [0, {VOCAB_SIZE}), got range [{arr.min()}, {arr.max()}]")
    return arr.astype(np.uint8).tobytes().decode("utf-8", errors="replace")


class ByteCodec:
    """Bytes with the list interface of ``bpe.BpeTokenizer`` (BABILong rows and prompts): pad id 0 (NUL)."""

    vocab_size = VOCAB_SIZE
    pad_id = 0

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(ids).decode("utf-8", errors="replace")

    def count(self, text: str) -> int:
        return len(text.encode("utf-8"))


BYTES = ByteCodec()
