"""memtx: memory-augmented Transformer language models (All-attention, Transformer-XL cache, ...)."""

__version__ = "0.1.0"
