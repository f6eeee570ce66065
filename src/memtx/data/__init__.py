"""Data layer: byte codec, corpora with train/valid/test splits, train streams, exact eval batches."""

from memtx.data.char import VOCAB_SIZE, decode, encode
from memtx.data.corpora import Corpus, load_corpus
from memtx.data.streams import Batch, TrainStreams, count_targets, eval_batches

__all__ = [
    "VOCAB_SIZE",
    "Batch",
    "Corpus",
    "TrainStreams",
    "count_targets",
    "decode",
    "encode",
    "eval_batches",
    "load_corpus",
]
