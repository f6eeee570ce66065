import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import pytest

from memtx.data import WordCorpus, build_word_tokenizer, corpora, load_word_corpus
from memtx.data.corpora import split_punctuation
from memtx.data.word import split_lines
from memtx.errors import DataError

_ROOTS = Path(__file__).resolve().parents
WIKITEXT2 = next((d / "shared/data/wikitext-2" for d in _ROOTS if (d / "shared/data/wikitext-2").is_dir()), None)
GUTENBERG = next((d / "shared/data/gutenberg" for d in _ROOTS if (d / "shared/data/gutenberg").is_dir()), None)
needs_wikitext2 = pytest.mark.skipif(WIKITEXT2 is None, reason="no shared/data/wikitext-2 above the tests")
needs_gutenberg = pytest.mark.skipif(GUTENBERG is None, reason="no shared/data/gutenberg above the tests")


def raises_one_line(match: str, fn, *args, **kwargs) -> str:
    with pytest.raises(DataError, match=match) as err:
        fn(*args, **kwargs)
    assert "\n" not in str(err.value) and ": " in str(err.value)
    return str(err.value)


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def test_registry_pins_both_wikitexts() -> None:
    for name, zip_bytes in (("wikitext-2", 4_475_746), ("wikitext-103", 190_229_076)):
        entry = corpora.WORD_DOWNLOADS[name]
        assert all(url.endswith(f"/{name}-v1.zip") for url in entry["urls"])
        assert any(url.startswith("https://s3.amazonaws.com/research.metamind.io/wikitext/") for url in entry["urls"])
        assert entry["zip_name"] == f"{name}-v1.zip" and entry["zip_bytes"] == zip_bytes
        assert len(entry["zip_sha256"]) == 64
        assert list(entry["splits"]) == ["train", "valid", "test"]
        for split, (member, digest) in entry["splits"].items():
            assert member == f"{name}/wiki.{split}.tokens" and len(digest) == 40


# ---------------------------------------------------------------------------------------------- downloads


def tiny_texts() -> dict[str, bytes]:
    base = " = Title = \n \n the cat sat on the mat . \n a <unk> @-@ word \n"
    return {"train": (base * 40).encode(), "valid": (base * 3).encode(), "test": (" \n x y z \n" * 2).encode()}


@pytest.fixture
def tiny_wikitext2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, bytes], Path]:
    """A wikitext-2-v1.zip made here, served from file:// after a dead first URL; returns (texts, zip path)."""
    texts = tiny_texts()
    src = tmp_path / "src" / "wikitext-2-v1.zip"
    src.parent.mkdir()
    with zipfile.ZipFile(src, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("wikitext-2/", "")
        for split, data in texts.items():
            zf.writestr(f"wikitext-2/wiki.{split}.tokens", data)
    entry = {
        "urls": ((tmp_path / "dead" / "wikitext-2-v1.zip").as_uri(), src.as_uri()),
        "zip_name": "wikitext-2-v1.zip",
        "zip_sha256": hashlib.sha256(src.read_bytes()).hexdigest(),
        "zip_bytes": src.stat().st_size,
        "folder": "wikitext-2",
        "splits": {s: (f"wikitext-2/wiki.{s}.tokens", sha1(d)) for s, d in texts.items()},
    }
    monkeypatch.setitem(corpora.WORD_DOWNLOADS, "wikitext-2", entry)
    return texts, src


def check_texts(c: WordCorpus, texts: dict[str, bytes]) -> None:
    for split, data in texts.items():
        assert c.split(split) == data.decode()
        assert c.info["split_lines"][split] == len(split_lines(data.decode()))
    json.dumps(c.info)


def test_download_verify_extract(tiny_wikitext2, tmp_path: Path) -> None:
    texts, src = tiny_wikitext2
    cache = tmp_path / "cache"
    c = load_word_corpus("wikitext-2", data_dir=str(cache))
    assert c.name == "wikitext-2" and c.info["url"] == src.as_uri()  # fell back past the dead URL
    check_texts(c, texts)
    assert sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*")) == [
        "wikitext-2",
        "wikitext-2-v1.zip",
        "wikitext-2/wiki.test.tokens",
        "wikitext-2/wiki.train.tokens",
        "wikitext-2/wiki.valid.tokens",
    ]
    src.unlink()  # a second call uses the verified files, not the URLs
    again = load_word_corpus("wikitext-2", data_dir=str(cache))
    check_texts(again, texts)
    assert again.info["url"] is None


def test_corrupt_file_re_extracted_from_cached_zip(tiny_wikitext2, tmp_path: Path) -> None:
    texts, src = tiny_wikitext2
    cache = tmp_path / "cache"
    load_word_corpus("wikitext-2", data_dir=str(cache))
    src.unlink()
    (cache / "wikitext-2" / "wiki.valid.tokens").write_text("tampered\n")
    (cache / "wikitext-2" / "wiki.test.tokens").unlink()
    check_texts(load_word_corpus("wikitext-2", data_dir=str(cache)), texts)


def test_zip_fetched_by_hand_is_used(tiny_wikitext2, tmp_path: Path) -> None:
    texts, src = tiny_wikitext2
    cache = tmp_path / "cache"
    cache.mkdir()
    shutil.move(src, cache / "wikitext-2-v1.zip")  # no URL works any more
    check_texts(load_word_corpus("wikitext-2", data_dir=str(cache)), texts)


def test_folder_with_the_files_used_as_is(tiny_wikitext2, tmp_path: Path) -> None:
    texts, src = tiny_wikitext2
    src.unlink()
    for split, data in texts.items():
        (tmp_path / f"wiki.{split}.tokens").write_bytes(data)
    check_texts(load_word_corpus("wikitext-2", data_dir=str(tmp_path)), texts)


def test_download_env_cache(tiny_wikitext2, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMTX_CACHE", str(tmp_path / "env-cache"))
    check_texts(load_word_corpus("wikitext-2"), tiny_wikitext2[0])
    assert (tmp_path / "env-cache" / "wikitext-2" / "wiki.train.tokens").is_file()


def test_wrong_zip_hash_refused(tiny_wikitext2, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(corpora.WORD_DOWNLOADS["wikitext-2"], "zip_sha256", "0" * 64)
    cache = tmp_path / "cache"
    msg = raises_one_line(
        "could not download wikitext-2-v1.zip .*wrong sha256.*by hand", load_word_corpus, "wikitext-2", str(cache)
    )
    assert "0" * 64 in msg
    assert list(cache.iterdir()) == []  # nothing half-written


def test_wrong_member_hash_refused(tiny_wikitext2, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    splits = dict(corpora.WORD_DOWNLOADS["wikitext-2"]["splits"])
    splits["test"] = (splits["test"][0], "0" * 40)
    monkeypatch.setitem(corpora.WORD_DOWNLOADS["wikitext-2"], "splits", splits)
    raises_one_line(
        "wiki.test.tokens' in .* expected sha1 0{40}: delete the zip", load_word_corpus, "wikitext-2", str(tmp_path)
    )


def test_all_urls_dead(tiny_wikitext2, tmp_path: Path) -> None:
    tiny_wikitext2[1].unlink()
    cache = tmp_path / "cache"
    msg = raises_one_line("could not download wikitext-2-v1.zip", load_word_corpus, "wikitext-2", str(cache))
    assert msg.count("file://") == 2
    assert list(cache.iterdir()) == []


@needs_wikitext2
def test_shared_wikitext2_valid_test(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real valid/test files verify against the pinned sha1s and give the official token counts."""
    folder = tmp_path / "wikitext-2"
    folder.mkdir()
    for split in ("valid", "test"):
        shutil.copy(WIKITEXT2 / f"wiki.{split}.tokens", folder)
    train = b" = Made here = \n the train split is not on this machine \n"
    (folder / "wiki.train.tokens").write_bytes(train)
    splits = dict(corpora.WORD_DOWNLOADS["wikitext-2"]["splits"])
    splits["train"] = (splits["train"][0], sha1(train))  # valid/test keep the published pins
    monkeypatch.setitem(corpora.WORD_DOWNLOADS["wikitext-2"], "splits", splits)
    monkeypatch.setitem(corpora.WORD_DOWNLOADS["wikitext-2"], "urls", ((tmp_path / "no.zip").as_uri(),))

    c = load_word_corpus("wikitext-2", data_dir=str(tmp_path))
    assert c.valid == (WIKITEXT2 / "wiki.valid.tokens").read_text(encoding="utf-8")
    assert c.info["split_lines"] == {"train": 2, "valid": 3_760, "test": 4_358}
    tok = build_word_tokenizer(c.valid)
    assert len(tok.encode(c.valid)) == 217_646  # one <eos> per line, blank lines included
    assert len(tok.encode(c.test)) == 245_569
    assert tok.tokens[:4] == ("the", "<unk>", ",", ".")
    # the pinned sha256 of shared/data agree with the files the sha1 pins accepted
    assert hashlib.sha256(c.valid.encode()).hexdigest().startswith("f0737ed31fc13290")


# ---------------------------------------------------------------------------------------------- pg9 and paths


@needs_gutenberg
def test_pg9_word_view(monkeypatch: pytest.MonkeyPatch) -> None:
    c = load_word_corpus("pg9", data_dir=str(GUTENBERG))
    (valid,) = GUTENBERG.glob("pg1342*.txt")
    assert c.valid == split_punctuation(valid.read_bytes().decode("utf-8", errors="replace"))
    assert c.info["bytes"]["test_file"].startswith("pg2701")
    assert c.info["bytes"]["split_bytes"]["train"] == 15_438_353
    assert split_punctuation("Well, he's here.\r\nNext") == "Well , he ' s here .\nNext"
    tok = build_word_tokenizer(c.valid)
    assert len(tok.encode(c.valid)) == len(c.valid.split()) + c.info["split_lines"]["valid"]


def test_text_file_split_by_lines(tmp_path: Path) -> None:
    lines = [f"line {i} word\r\n" if i % 3 else f"line {i}\n" for i in range(1000)]
    text = "".join(lines) + "tail without newline"
    (tmp_path / "t.txt").write_bytes(text.encode())
    c = load_word_corpus(str(tmp_path / "t.txt"))
    assert c.train + c.valid + c.test == text
    assert [c.info["split_lines"][s] for s in ("train", "valid", "test")] == [900, 50, 51]
    assert c.valid.startswith("line 900") and c.test.startswith("line 950")
    assert c.info["sha256"] == hashlib.sha256(text.encode()).hexdigest()


def test_folder_with_split_files(tmp_path: Path) -> None:
    texts = {s: f"{s} words here\n".encode() for s in ("train", "valid", "test")}
    for split, data in texts.items():
        (tmp_path / f"{split}.txt").write_bytes(data)
    (tmp_path / "README").write_text("ignored\n")
    c = load_word_corpus(str(tmp_path))
    check_texts(c, texts)
    assert [f["path"] for f in c.info["files"]] == ["train.txt", "valid.txt", "test.txt"]


def test_path_errors(tmp_path: Path) -> None:
    raises_one_line("does not exist.*one of wikitext-2, wikitext-103, pg9", load_word_corpus, str(tmp_path / "no"))
    (tmp_path / "short.txt").write_text("one\ntwo\n")
    raises_one_line("has 2 lines, too few .* at least 20 lines", load_word_corpus, str(tmp_path / "short.txt"))
    (tmp_path / "t.txt").write_text("a\n" * 40)
    raises_one_line("unknown split 'dev'", load_word_corpus(str(tmp_path / "t.txt")).split, "dev")
