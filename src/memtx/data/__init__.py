"""Data layer: byte codec, word tokenizer, corpora with train/valid/test splits, train streams, exact eval batches."""

from memtx.data.char import VOCAB_SIZE, decode, encode
from memtx.data.corpora import Corpus, WordCorpus, load_corpus, load_word_corpus
from memtx.data.streams import Batch, TrainStreams, count_targets, eval_batches
from memtx.data.word import WordTokenizer, build_word_tokenizer

__all__ = [
    "VOCAB_SIZE",
    "Batch",
    "Corpus",
    "TrainStreams",
    "WordCorpus",
    "WordTokenizer",
    "build_word_tokenizer",
    "count_targets",
    "decode",
    "encode",
    "eval_batches",
    "load_corpus",
    "load_word_corpus",
]
