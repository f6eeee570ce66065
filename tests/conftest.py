"""Shared fixtures."""

import pytest
from helpers import make_text


@pytest.fixture
def corpus_file(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(make_text(20_000))
    return path
