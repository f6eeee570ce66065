import hashlib
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from memtx.data import Corpus, corpora, load_corpus
from memtx.errors import DataError

_FOUND = [d / "shared/data/gutenberg" for d in Path(__file__).resolve().parents]
GUTENBERG = next((d for d in _FOUND if d.is_dir()), None)
needs_gutenberg = pytest.mark.skipif(GUTENBERG is None, reason="no shared/data/gutenberg above the tests")


def whole(c: Corpus) -> bytes:
    return b"".join(c.split(s).tobytes() for s in ("train", "valid", "test"))


def check_90_5_5(c: Corpus, data: bytes) -> None:
    n = len(data)
    assert whole(c) == data
    assert [len(c.train), len(c.valid), len(c.test)] == [
        n * 90 // 100,
        n * 95 // 100 - n * 90 // 100,
        n - n * 95 // 100,
    ]
    assert all(s.dtype == np.uint8 and s.ndim == 1 for s in (c.train, c.valid, c.test))
    assert c.info["split_bytes"] == {"train": len(c.train), "valid": len(c.valid), "test": len(c.test)}
    json.dumps(c.info)


def raises_one_line(match: str, fn, *args, **kwargs) -> None:
    """``fn(*args, **kwargs)`` raises DataError with a one-line 'problem: fix' message matching ``match``."""
    with pytest.raises(DataError, match=match) as err:
        fn(*args, **kwargs)
    assert "\n" not in str(err.value) and ": " in str(err.value)


def test_default_corpus() -> None:
    from pydoc_data.topics import topics

    data = "\n\n".join(topics[k] for k in sorted(topics)).encode("utf-8")
    c = load_corpus("default")
    assert c.name == "default"
    check_90_5_5(c, data)
    assert c.info["sha256"] == hashlib.sha256(data).hexdigest()
    assert c.info["python_version"] == sys.version.split()[0]


def test_unknown_split() -> None:
    raises_one_line("unknown split 'dev'", load_corpus("default").split, "dev")


def test_single_file(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(0, 256, 10_000, dtype=np.uint8).tobytes()
    (tmp_path / "t.txt").write_bytes(data)
    c = load_corpus(str(tmp_path / "t.txt"))
    check_90_5_5(c, data)
    assert isinstance(c.train, np.memmap)
    assert c.info["sha256"] == hashlib.sha256(data).hexdigest()


def test_folder_sorted_by_relative_path(tmp_path: Path) -> None:
    files = {
        "b.txt": b"B" * 3000,
        "a/x.txt": b"X" * 2000,
        "a.txt": b"A" * 1000,
        "a/y/z": b"Z" * 500,
        "e": b"",
    }
    for rel, content in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(content)
    order = ["a.txt", "a/x.txt", "a/y/z", "b.txt", "e"]  # '.' < '/' in byte order
    c = load_corpus(str(tmp_path))
    check_90_5_5(c, b"".join(files[r] for r in order))
    assert [f["path"] for f in c.info["files"]] == order


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (None, "does not exist: pass an existing text file or folder, or one of default, pg9, enwik8, text8"),
        (b"", "is empty"),
        (b"x" * 1000, "has 1,000 bytes, too few .* 256 bytes.* 5,120 bytes"),
    ],
    ids=["missing", "empty", "too-small"],
)
def test_file_errors(tmp_path: Path, content: bytes | None, match: str) -> None:
    path = tmp_path / "t.txt"
    if content is not None:
        path.write_bytes(content)
    raises_one_line(match, load_corpus, str(path))


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    raises_one_line("has no files", load_corpus, str(tmp_path))


def test_empty_spec_is_not_the_cwd() -> None:
    raises_one_line("corpus path '' does not exist", load_corpus, "")


def test_folder_of_empty_files(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"")
    raises_one_line("is empty", load_corpus, str(tmp_path))


def test_smallest_corpus_splits(tmp_path: Path) -> None:
    (tmp_path / "t").write_bytes(b"x" * corpora.MIN_CORPUS_BYTES)
    c = load_corpus(str(tmp_path / "t"))
    assert min(len(c.valid), len(c.test)) >= corpora.MIN_SPLIT_BYTES


@pytest.mark.parametrize("folder", [False, True])
def test_unreadable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, folder: bool) -> None:
    (tmp_path / "t.txt").write_bytes(b"x" * 10_000)

    def deny(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    # Patched rather than chmod-ed: root can read a mode-000 file.
    monkeypatch.setattr(corpora.Path, "read_bytes", deny)
    monkeypatch.setattr(corpora.np, "memmap", deny)
    raises_one_line("cannot read .*Permission denied", load_corpus, str(tmp_path if folder else tmp_path / "t.txt"))


# ---------------------------------------------------------------------------------------------- pg9


@needs_gutenberg
@pytest.mark.parametrize("how", ["search", "data_dir", "parent", "env"])
def test_pg9_exact_split(how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEMTX_DATA_DIR", raising=False)
    data_dir = {"data_dir": GUTENBERG, "parent": GUTENBERG.parent}.get(how)
    if how == "env":
        monkeypatch.setenv("MEMTX_DATA_DIR", str(GUTENBERG.parent))
    c = load_corpus("pg9", data_dir=None if data_dir is None else str(data_dir))
    books = sorted(GUTENBERG.glob("pg*.txt"))
    assert len(books) == 9
    (valid,) = [p for p in books if p.name.startswith("pg1342")]
    (test,) = [p for p in books if p.name.startswith("pg2701")]
    train = [p for p in books if p not in (valid, test)]
    assert c.valid.tobytes() == valid.read_bytes()
    assert c.test.tobytes() == test.read_bytes()
    assert len(c.train) == sum(p.stat().st_size for p in train) == 15_438_353
    assert c.train.tobytes() == b"".join(p.read_bytes() for p in train)
    assert c.info["train_files"] == [p.name for p in train]
    assert isinstance(c.valid, np.memmap) and isinstance(c.test, np.memmap)
    json.dumps(c.info)


def test_pg9_not_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEMTX_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(corpora, "__file__", str(tmp_path / "corpora.py"))
    raises_one_line("not found.*--data.data-dir.*MEMTX_DATA_DIR", load_corpus, "pg9")


def test_pg9_bad_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raises_one_line("does not exist.*--data.data-dir", load_corpus, "pg9", data_dir=str(tmp_path / "nope"))
    monkeypatch.setenv("MEMTX_DATA_DIR", str(tmp_path / "nope"))
    raises_one_line("does not exist.*MEMTX_DATA_DIR", load_corpus, "pg9")
    for num in corpora.PG9_BOOKS:
        if num != 2701:
            (tmp_path / f"pg{num}_book.txt").write_bytes(b"x" * 1000)
    (tmp_path / "pg27010_other.txt").write_bytes(b"x")  # not Moby Dick: the number must match exactly
    raises_one_line(r"pg2701\*.txt is missing", load_corpus, "pg9", data_dir=str(tmp_path))
    (tmp_path / "pg2701_moby.txt").write_bytes(b"x" * 1000)
    raises_one_line("is not the expected file", load_corpus, "pg9", data_dir=str(tmp_path))


# ---------------------------------------------------------------------------------------------- downloads


@pytest.fixture
def tiny_enwik8(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[bytes, Path]:
    """A 20,000-byte ``enwik8`` in a zip served from a file:// URL; returns (content, zip path)."""
    content = np.random.default_rng(1).integers(0, 256, 20_000, dtype=np.uint8).tobytes()
    src = tmp_path / "src" / "enwik8.zip"
    src.parent.mkdir()
    with zipfile.ZipFile(src, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("enwik8", content)
    entry = {
        "url": src.as_uri(),
        "zip_sha256": hashlib.sha256(src.read_bytes()).hexdigest(),
        "zip_bytes": src.stat().st_size,
        "member": "enwik8",
        "sha256": hashlib.sha256(content).hexdigest(),
        "bytes": len(content),
    }
    monkeypatch.setitem(corpora.DOWNLOADS, "enwik8", entry)
    return content, src


def test_download_verify_extract_split(tiny_enwik8, tmp_path: Path) -> None:
    content, src = tiny_enwik8
    cache = tmp_path / "cache"
    c = load_corpus("enwik8", data_dir=str(cache))
    check_90_5_5(c, content)
    assert (len(c.train), len(c.valid), len(c.test)) == (18_000, 1_000, 1_000)
    assert isinstance(c.train, np.memmap)
    assert sorted(p.name for p in cache.iterdir()) == ["enwik8", "enwik8.zip"]
    assert c.info["url"] == src.as_uri() and c.info["sha256"] == hashlib.sha256(content).hexdigest()
    src.unlink()  # a second call must use the cache, not the URL
    assert whole(load_corpus("enwik8", data_dir=str(cache))) == content


def test_download_uses_memtx_cache(tiny_enwik8, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMTX_CACHE", str(tmp_path / "env-cache"))
    assert whole(load_corpus("enwik8")) == tiny_enwik8[0]
    assert (tmp_path / "env-cache" / "enwik8").is_file()


def test_download_hash_mismatch(tiny_enwik8, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(corpora.DOWNLOADS["enwik8"], "zip_sha256", "0" * 64)
    cache = tmp_path / "cache"
    raises_one_line("sha256 .* expected 0{64}", load_corpus, "enwik8", data_dir=str(cache))
    assert list(cache.iterdir()) == []  # the partial download is gone, nothing half-written remains


def test_download_unreachable(tiny_enwik8, tmp_path: Path) -> None:
    tiny_enwik8[1].unlink()
    cache = tmp_path / "cache"
    raises_one_line("could not download", load_corpus, "enwik8", data_dir=str(cache))
    assert list(cache.iterdir()) == []


def test_corrupt_cached_file(tiny_enwik8, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    load_corpus("enwik8", data_dir=str(cache))
    (cache / "enwik8").write_bytes(b"y" * 20_000)
    raises_one_line("delete it and run again", load_corpus, "enwik8", data_dir=str(cache))
    (cache / "enwik8").unlink()  # re-extracted from the cached, verified zip
    assert whole(load_corpus("enwik8", data_dir=str(cache))) == tiny_enwik8[0]


def test_registry_has_both_downloads() -> None:
    for name, zip_bytes in (("enwik8", 36_445_475), ("text8", 31_344_016)):
        entry = corpora.DOWNLOADS[name]
        assert entry["url"] == f"http://mattmahoney.net/dc/{name}.zip"
        assert entry["zip_bytes"] == zip_bytes and entry["bytes"] == 100_000_000
        assert all(len(entry[k]) == 64 for k in ("zip_sha256", "sha256"))
