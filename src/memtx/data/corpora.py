"""Byte corpora with contiguous train/valid/test splits.

``load_corpus(spec)`` understands ``default`` (CPython's embedded pydoc topics, always available),
``pg9`` (nine local Project Gutenberg novels, whole books held out), ``enwik8`` / ``text8``
(downloaded once into a cache and verified by sha256) and any path to a text file or folder.
Every split is a 1-D ``uint8`` array (a read-only memmap where the bytes come straight from one file).

``load_word_corpus(spec)`` gives the same kind of splits as text for the word tokenizer (``memtx.data.word``):
``wikitext-2`` / ``wikitext-103`` (the tokenized "v1" zips, downloaded once and verified), ``pg9`` (the PG-9 byte
splits decoded as UTF-8) or a path to a text file/folder.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from memtx.errors import DataError

SPLITS = ("train", "valid", "test")
NAMED_SPECS = ("default", "pg9", "enwik8", "text8")

#: Every split must hold at least this many bytes; with the 90/5/5 split that means a corpus of at least
#: ``MIN_CORPUS_BYTES`` bytes.
MIN_SPLIT_BYTES = 256
MIN_CORPUS_BYTES = 20 * MIN_SPLIT_BYTES

#: PG-9: Project Gutenberg ebook number -> (bytes, sha256) of the plain-text edition in shared/data/gutenberg.
PG9_BOOKS: dict[int, tuple[int, str]] = {
    1023: (2001188, "51c12bd20b0c8efbe08578b4966adb9ece1805f2ff8d96e6b02c4562a4797449"),
    1342: (717602, "441e778a4297bfc944dc254810e8ded3134cfb0e36d73eef6bb312b4ffd74d6a"),
    1399: (2026606, "1886bafcba5ff19dbdeb12290b2abacbe7ea8d55db6a9def72e118ddc50612dd"),
    145: (1847708, "f499b77eb0e4e34edc3bae6b968e3241c8327384631bd26e8eec76b726915a7d"),
    2600: (3226652, "31b5d23be25fe9ad27eca1e78f9f449ae2e17adf07ce62238a79425c53a96646"),
    2701: (1257304, "f17ab08e0ad8c6e43d1e85e3cdae4e1b617ae35069cee7db8dcd457c87b1ec76"),
    28054: (1995783, "6cf57d26086e479007cb9fb501d8324cbd785538fc267dd23f09f9b436317ca1"),
    766: (1992563, "c43537db85ec5df721765a9516d951aec99920b0cf1abcf1eb0a790191ccbc11"),
    996: (2347853, "69ef241e632ef4fba882bde06ad31ecb395d865b11028cc046c4d253f4cf118e"),
}
PG9_VALID, PG9_TEST = 1342, 2701

#: Downloadable corpora: ``zip_sha256``/``zip_bytes`` pin the archive, ``sha256``/``bytes`` the file extracted
#: from it (tests monkeypatch entries). The enwik8 values are the ones the Hugging Face enwik8 loader and many
#: repositories publish. text8: neither hash was recomputed here (no network). Both are the values pinned by
#: several independent public projects for http://mattmahoney.net/dc/text8.zip; 31,344,016 bytes is the size
#: TensorFlow's word2vec tutorial checks.
DOWNLOADS: dict[str, dict[str, Any]] = {
    "enwik8": {
        "url": "http://mattmahoney.net/dc/enwik8.zip",
        "zip_sha256": "547994d9980ebed1288380d652999f38a14fe291a6247c157c3d33d4932534bc",
        "zip_bytes": 36_445_475,
        "member": "enwik8",
        "sha256": "2b49720ec4d78c3c9fabaee6e4179a5e997302b3a70029f30f2d582218c024a8",
        "bytes": 100_000_000,
    },
    "text8": {
        "url": "http://mattmahoney.net/dc/text8.zip",
        "zip_sha256": "a6640522afe85d1963ad56c05b0ede0a0c000dddc9671758a6cc09b7a38e5232",
        "zip_bytes": 31_344_016,
        "member": "text8",
        "sha256": "6e890197040d37d85beb962ae1f041ff1d9a9ca8d20c7d99c85027eebf51dca7",
        "bytes": 100_000_000,
    },
}

NAMED_WORD_SPECS = ("wikitext-2", "wikitext-103", "pg9")

#: WikiText word-level zips (the tokenized "v1" variant: ``<unk>`` already substituted, `` @-@ `` etc.).
#: ``zip_sha256``/``zip_bytes``: the values the Hugging Face ``wikitext`` loader pins (datasets/wikitext/
#: dataset_infos.json) for the Salesforce S3 zips; not recomputed here (no network). ``splits``: zip member and the
#: **sha1** of the extracted file, as GluonNLP pins them (``gluonnlp/data/language_model.py``); no sha256 of the
#: members is published. The WikiText-2 valid/test sha1 were checked against ``shared/data/wikitext-2`` (whose
#: sha256 are in its README). ``urls`` are tried in order: the S3 bucket has answered 403 since 2024; the mirror of
#: the dataset's author (Stephen Merity) serves the same zips (same sha256 expected; a mismatch is refused).
WORD_DOWNLOADS: dict[str, dict[str, Any]] = {
    "wikitext-2": {
        "urls": (
            "https://wikitext.smerity.com/wikitext-2-v1.zip",
            "https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-2-v1.zip",
        ),
        "zip_name": "wikitext-2-v1.zip",
        "zip_sha256": "92675f1d63015c1c8b51f1656a52d5bdbc33aafa60cc47a218a66e7ee817488c",
        "zip_bytes": 4_475_746,
        "folder": "wikitext-2",
        "splits": {
            "train": ("wikitext-2/wiki.train.tokens", "863f29c46ef9d167fff4940ec821195882fe29d1"),
            "valid": ("wikitext-2/wiki.valid.tokens", "0418625c8b4da6e4b5c7a0b9e78d4ae8f7ee5422"),
            "test": ("wikitext-2/wiki.test.tokens", "c7b8ce0aa086fb34dab808c5c49224211eb2b172"),
        },
    },
    "wikitext-103": {
        "urls": (
            "https://wikitext.smerity.com/wikitext-103-v1.zip",
            "https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-103-v1.zip",
        ),
        "zip_name": "wikitext-103-v1.zip",
        "zip_sha256": "242ba0f20b329cfdf1ccc61e9e9e5b59becf189db7f7a81cd2a0e2fc31539590",
        "zip_bytes": 190_229_076,
        "folder": "wikitext-103",
        "splits": {
            "train": ("wikitext-103/wiki.train.tokens", "b7497e2dfe77e72cfef5e3dbc61b7b53712ac211"),
            "valid": ("wikitext-103/wiki.valid.tokens", "c326ac59dc587676d58c422eb8a03e119582f92b"),
            "test": ("wikitext-103/wiki.test.tokens", "8a5befc548865cec54ed4273cf87dbbad60d1e47"),
        },
    },
}

#: Folder files taken as ready-made splits by ``load_word_corpus(PATH)`` (first complete set wins).
WORD_SPLIT_FILES = (
    ("wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens"),
    ("train.txt", "valid.txt", "test.txt"),
)

#: Some hosts refuse urllib's default User-Agent ("Python-urllib/3.x").
_USER_AGENT = "Mozilla/5.0 (compatible; memtx)"

_CHUNK = 1 << 20


@dataclass(frozen=True, eq=False)
class Corpus:
    """A byte corpus: three contiguous ``uint8`` splits and JSON-able provenance ``info``."""

    name: str
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    info: dict

    def split(self, name: str) -> np.ndarray:
        """The array of split ``name`` (``train``, ``valid`` or ``test``)."""
        if name not in SPLITS:
            raise DataError(f"unknown split {name!r}: use one of {', '.join(SPLITS)}")
        return getattr(self, name)


def load_corpus(spec: str, data_dir: str | os.PathLike | None = None) -> Corpus:
    """Load corpus ``spec``: ``default``, ``pg9``, ``enwik8``, ``text8`` or a path to a text file/folder.

    ``data_dir`` is the Gutenberg folder for ``pg9`` and the download cache for ``enwik8``/``text8``;
    other specs ignore it.
    """
    if spec == "default":
        return _load_default()
    if spec == "pg9":
        return _load_pg9(data_dir)
    if spec in DOWNLOADS:
        return _load_download(spec, data_dir)
    return _load_path(spec)


@dataclass(frozen=True, eq=False)
class WordCorpus:
    """A word corpus: three texts (lines of whitespace-separated words) and JSON-able provenance ``info``."""

    name: str
    train: str
    valid: str
    test: str
    info: dict

    def split(self, name: str) -> str:
        """The text of split ``name`` (``train``, ``valid`` or ``test``)."""
        if name not in SPLITS:
            raise DataError(f"unknown split {name!r}: use one of {', '.join(SPLITS)}")
        return getattr(self, name)


def load_word_corpus(spec: str, data_dir: str | os.PathLike | None = None) -> WordCorpus:
    """Load word corpus ``spec``: ``wikitext-2``, ``wikitext-103``, ``pg9`` or a path to a text file/folder.

    ``data_dir``: the download cache for WikiText (default ``$MEMTX_CACHE`` or ``~/.cache/memtx``; the files go
    to ``DATA_DIR/wikitext-N/``, and a folder that already holds the three ``wiki.*.tokens`` is used as it is),
    the Gutenberg folder for ``pg9``. A folder path holding ``wiki.{train,valid,test}.tokens`` or
    ``{train,valid,test}.txt`` uses those files as the splits; any other file or folder (files concatenated in
    sorted relative-path order) is split 90/5/5 by lines.
    """
    if spec in WORD_DOWNLOADS:
        return _load_wikitext(spec, data_dir)
    if spec == "pg9":
        chars = _load_pg9(data_dir)
        texts = [split_punctuation(_decode(chars.split(s))) for s in SPLITS]
        info = {"spec": "pg9", "decoded": "utf-8, errors replaced", "punctuation": "split off", "bytes": chars.info}
        return _word_corpus("pg9", texts, info)
    return _load_word_path(spec)


def load_word_split(spec: str, split: str, data_dir: str | os.PathLike | None = None) -> str:
    """The text of one split of word corpus ``spec``. For WikiText, when the archive cannot be had, the split's
    ``wiki.SPLIT.tokens`` in ``shared/data/wikitext-N`` (this machine has WikiText-2 valid and test) is used,
    found like PG-9's folder."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    if spec in WORD_DOWNLOADS:
        try:
            return load_word_corpus(spec, data_dir).split(split)
        except DataError:
            try:
                local = _find_pg9_folder(None).parent / spec / f"wiki.{split}.tokens"
            except DataError:
                local = None
            if local is None or not local.is_file():
                raise
            return _read_bytes(local).decode("utf-8")
    return load_word_corpus(spec, data_dir).split(split)


# ---------------------------------------------------------------------------------------------- helpers


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _sha256(arr: np.ndarray) -> str:
    return hashlib.sha256(memoryview(np.ascontiguousarray(arr))).hexdigest()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _split_90_5_5(data: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bytes ``[0, 90%)``, ``[90%, 95%)``, ``[95%, 100%)`` of ``data`` (floors of the boundaries)."""
    n = len(data)
    if n == 0:
        raise DataError(f"corpus {what} is empty: pass a non-empty text file or folder")
    if n < MIN_CORPUS_BYTES:
        raise DataError(
            f"corpus {what} has {n:,} bytes, too few to split 90/5/5 (each split needs at least "
            f"{MIN_SPLIT_BYTES} bytes): pass a text of at least {MIN_CORPUS_BYTES:,} bytes"
        )
    a, b = n * 90 // 100, n * 95 // 100
    return data[:a], data[a:b], data[b:]


def _split_bytes(*splits: np.ndarray) -> dict[str, int]:
    return {name: int(len(s)) for name, s in zip(SPLITS, splits, strict=True)}


def _unreadable(path: str | Path, e: OSError) -> DataError:
    return DataError(f"cannot read corpus path '{path}' ({_one_line(e)}): check that it is readable")


def _memmap(path: Path) -> np.ndarray:
    """Read-only ``uint8`` memmap of ``path`` (an in-memory empty array for an empty file)."""
    try:
        if path.stat().st_size == 0:
            return np.zeros(0, dtype=np.uint8)
        return np.memmap(path, dtype=np.uint8, mode="r")
    except OSError as e:
        raise _unreadable(path, e) from e


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise _unreadable(path, e) from e


# ---------------------------------------------------------------------------------------------- default


def _load_default() -> Corpus:
    try:
        from pydoc_data.topics import topics
    except ImportError as e:
        raise DataError(
            "this Python lacks pydoc_data, which the default corpus is made from: "
            "pass a text file or folder, or one of pg9, enwik8, text8"
        ) from e
    text = "\n\n".join(topics[k] for k in sorted(topics))
    data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    train, valid, test = _split_90_5_5(data, "'default'")
    info = {
        "spec": "default",
        "source": "pydoc_data.topics.topics of CPython, joined in sorted-key order with '\\n\\n', as UTF-8",
        "python_version": sys.version.split()[0],
        "sha256": _sha256(data),
        "bytes": int(len(data)),
        "split_bytes": _split_bytes(train, valid, test),
    }
    return Corpus("default", train, valid, test, info)


# ---------------------------------------------------------------------------------------------- pg9


def _find_pg9_folder(data_dir: str | os.PathLike | None) -> Path:
    """``data_dir`` (or its ``gutenberg/`` subfolder), else ``$MEMTX_DATA_DIR/gutenberg``, else the first
    ``shared/data/gutenberg`` found walking up from the cwd and from this file."""
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        return root / "gutenberg" if (root / "gutenberg").is_dir() else root
    env = os.environ.get("MEMTX_DATA_DIR")
    if env:
        return Path(env).expanduser() / "gutenberg"
    for start in (Path.cwd().resolve(), Path(__file__).resolve().parent):
        for folder in (start, *start.parents):
            candidate = folder / "shared" / "data" / "gutenberg"
            if candidate.is_dir():
                return candidate
    raise DataError(
        "PG-9 folder shared/data/gutenberg not found above the current directory: pass "
        "--data.data-dir PATH/TO/gutenberg or set MEMTX_DATA_DIR to the folder that holds gutenberg/"
    )


def _load_pg9(data_dir: str | os.PathLike | None) -> Corpus:
    folder = _find_pg9_folder(data_dir)
    fix = "pass --data.data-dir PATH/TO/gutenberg or set MEMTX_DATA_DIR to the folder that holds gutenberg/"
    if not folder.is_dir():
        raise DataError(f"PG-9 folder '{folder}' does not exist: {fix}")
    try:
        names = sorted(p.name for p in folder.iterdir() if p.is_file())
    except OSError as e:
        raise _unreadable(folder, e) from e
    books: dict[int, Path] = {}  # ebook number -> file, in file-name order
    for num in PG9_BOOKS:
        matches = [n for n in names if re.match(rf"pg{num}(?!\d).*\.txt$", n)]
        if len(matches) != 1:
            found = "missing" if not matches else f"ambiguous ({', '.join(matches)})"
            raise DataError(f"PG-9 folder '{folder}': book pg{num}*.txt is {found}: {fix}")
        books[num] = folder / matches[0]
    books = dict(sorted(books.items(), key=lambda kv: kv[1].name))
    parts = {num: _read_bytes(path) for num, path in books.items()}
    for num, path in books.items():
        size, digest = PG9_BOOKS[num]
        if len(parts[num]) != size or hashlib.sha256(parts[num]).hexdigest() != digest:
            raise DataError(
                f"PG-9 book '{path}' is not the expected file ({size:,} bytes, sha256 {digest[:16]}...): "
                "restore the original (shared/data/SHA256SUMS lists every file)"
            )
    train_nums = [n for n in books if n not in (PG9_VALID, PG9_TEST)]
    train = np.frombuffer(b"".join(parts[n] for n in train_nums), dtype=np.uint8)
    valid, test = _memmap(books[PG9_VALID]), _memmap(books[PG9_TEST])
    info = {
        "spec": "pg9",
        "folder": str(folder.resolve()),
        "files": [{"name": p.name, "bytes": len(parts[n]), "sha256": PG9_BOOKS[n][1]} for n, p in books.items()],
        "train_files": [books[n].name for n in train_nums],
        "valid_file": books[PG9_VALID].name,
        "test_file": books[PG9_TEST].name,
        "split_bytes": _split_bytes(train, valid, test),
    }
    return Corpus("pg9", train, valid, test, info)


# ---------------------------------------------------------------------------------------------- downloads


def _cache_dir(data_dir: str | os.PathLike | None) -> Path:
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get("MEMTX_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "memtx"


def _make_cache(data_dir: str | os.PathLike | None) -> Path:
    cache = _cache_dir(data_dir)
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(
            f"cannot create cache folder '{cache}' ({_one_line(e)}): pass --data.data-dir or set MEMTX_CACHE "
            "to a writable folder"
        ) from e
    return cache


def _request(url: str) -> urllib.request.Request:
    return urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})


def _download(url: str, dest: Path, sha256: str, size: int) -> None:
    """Download ``url`` to a temp file beside ``dest``, check size and sha256, then rename it to ``dest``."""
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    tmp = Path(tmp_name)
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            with urllib.request.urlopen(_request(url), timeout=60) as resp:
                total = int(resp.headers.get("Content-Length") or size)
                with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, leave=False, disable=None) as bar:
                    while chunk := resp.read(_CHUNK):
                        out.write(chunk)
                        h.update(chunk)
                        bar.update(len(chunk))
        got_size, got = tmp.stat().st_size, h.hexdigest()
        if got != sha256:
            raise DataError(
                f"downloaded {dest.name} from {url} has sha256 {got} ({got_size:,} bytes), expected {sha256} "
                f"({size:,} bytes): the download is corrupt or the file changed upstream; run again, or "
                f"fetch it by hand into {dest.parent}"
            )
        os.replace(tmp, dest)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
        raise DataError(
            f"could not download {url} to {dest.parent} ({_one_line(e)}): check the network and the folder, "
            f"or fetch it by hand into {dest.parent}"
        ) from e
    finally:
        tmp.unlink(missing_ok=True)


def _extract(zip_path: Path, member: str, dest: Path) -> None:
    """Extract ``member`` of ``zip_path`` to a temp file beside ``dest``, then rename it to ``dest``."""
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, zipfile.ZipFile(zip_path) as zf, zf.open(member) as src:
            while chunk := src.read(_CHUNK):
                out.write(chunk)
        os.replace(tmp, dest)
    except (zipfile.BadZipFile, KeyError, OSError) as e:
        raise DataError(f"cannot extract {member!r} from '{zip_path}' ({_one_line(e)}): delete it and run again") from e
    finally:
        tmp.unlink(missing_ok=True)


def _load_download(name: str, data_dir: str | os.PathLike | None) -> Corpus:
    entry = DOWNLOADS[name]
    cache = _make_cache(data_dir)
    raw = cache / entry["member"]
    zip_path = cache / f"{entry['member']}.zip"
    if not raw.is_file():
        if not zip_path.is_file() or _file_sha256(zip_path) != entry["zip_sha256"]:
            _download(entry["url"], zip_path, entry["zip_sha256"], entry["zip_bytes"])
        _extract(zip_path, entry["member"], raw)
    data = _memmap(raw)
    digest = _sha256(data)
    if len(data) != entry["bytes"] or digest != entry["sha256"]:
        raise DataError(
            f"'{raw}' has sha256 {digest} ({len(data):,} bytes), expected {entry['sha256']} "
            f"({entry['bytes']:,} bytes): delete it and run again to re-extract it"
        )
    train, valid, test = _split_90_5_5(data, repr(name))
    info = {
        "spec": name,
        "url": entry["url"],
        "zip_sha256": entry["zip_sha256"],
        "path": str(raw),
        "sha256": digest,
        "bytes": int(len(data)),
        "split_bytes": _split_bytes(train, valid, test),
    }
    return Corpus(name, train, valid, test, info)


# ---------------------------------------------------------------------------------------------- paths


def _walk_error(e: OSError) -> None:
    raise _unreadable(e.filename, e) from e


def _read_path(spec: str, named: Sequence[str]) -> tuple[Path, np.ndarray, list[dict]]:
    """Bytes of a file (memmap) or of a folder's files in sorted relative-path order, and the file list."""
    path = Path(spec).expanduser()
    if not spec.strip() or not path.exists():
        raise DataError(
            f"corpus path '{spec}' does not exist: pass an existing text file or folder, or one of {', '.join(named)}"
        )
    if path.is_file():
        data = _memmap(path)
        return path, data, [{"path": str(path.resolve()), "bytes": int(len(data))}]
    if not path.is_dir():
        raise DataError(f"corpus path '{spec}' is not a regular file or folder: pass a text file or folder")
    found = (Path(root, f) for root, _, fs in os.walk(path, onerror=_walk_error) for f in fs)
    rels = sorted(p.relative_to(path).as_posix() for p in found if p.is_file())
    if not rels:
        raise DataError(f"corpus folder '{spec}' has no files: pass a folder that holds text files")
    parts = [_read_bytes(path / r) for r in rels]
    files = [{"path": r, "bytes": len(p)} for r, p in zip(rels, parts, strict=True)]
    return path, np.frombuffer(b"".join(parts), dtype=np.uint8), files


def _load_path(spec: str) -> Corpus:
    path, data, files = _read_path(spec, NAMED_SPECS)
    train, valid, test = _split_90_5_5(data, f"'{spec}'")
    info = {
        "spec": spec,
        "path": str(path.resolve()),
        "files": files,
        "sha256": _sha256(data),
        "bytes": int(len(data)),
        "split_bytes": _split_bytes(train, valid, test),
    }
    return Corpus(path.name or spec, train, valid, test, info)


# ---------------------------------------------------------------------------------------------- word corpora


def _decode(data: np.ndarray | bytes) -> str:
    return bytes(data).decode("utf-8", errors="replace")


def _count_lines(text: str) -> int:
    """Lines as ``memtx.data.word.split_lines`` counts them (universal newlines; a last unterminated line counts)."""
    ends = text.count("\n") + text.count("\r") - text.count("\r\n")
    return ends + (1 if text and not text.endswith(("\n", "\r")) else 0)


_PUNCTUATION = re.compile(r"([^\w\s])")


def split_punctuation(text: str) -> str:
    """WikiText-like tokens for raw prose: every character that is neither a word character nor a space becomes a
    token of its own ("Well, he's here." -> "Well , he ' s here ."); line breaks are kept."""
    return "\n".join(" ".join(_PUNCTUATION.sub(r" \1 ", line).split()) for line in text.split("\n"))


def _word_corpus(name: str, texts: Sequence[str], info: dict) -> WordCorpus:
    info = {
        **info,
        "split_chars": {s: len(t) for s, t in zip(SPLITS, texts, strict=True)},
        "split_lines": {s: _count_lines(t) for s, t in zip(SPLITS, texts, strict=True)},
    }
    return WordCorpus(name, *texts, info)


def _file_sha1(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _download_any(urls: Sequence[str], dest: Path, sha256: str, size: int) -> str:
    """Download the first of ``urls`` that serves the file with the right sha256; returns that URL."""
    if len(urls) == 1:
        _download(urls[0], dest, sha256, size)
        return urls[0]
    failures = []
    for url in urls:
        try:
            _download(url, dest, sha256, size)
            return url
        except DataError as e:
            failures.append(f"{url}: {_one_line(e.__cause__) if e.__cause__ else 'wrong sha256'}")
    raise DataError(
        f"could not download {dest.name} ({'; '.join(failures)}): check the network, or fetch it by hand "
        f"(sha256 {sha256}) into {dest.parent}"
    )


def _wikitext_folder(cache: Path, entry: dict) -> Path:
    """``cache`` itself when it already holds the three split files, else ``cache/<folder>``."""
    names = [Path(member).name for member, _ in entry["splits"].values()]
    return cache if all((cache / n).is_file() for n in names) else cache / entry["folder"]


def _load_wikitext(name: str, data_dir: str | os.PathLike | None) -> WordCorpus:
    entry = WORD_DOWNLOADS[name]
    cache = _make_cache(data_dir)
    folder = _wikitext_folder(cache, entry)
    paths = {s: folder / Path(member).name for s, (member, _) in entry["splits"].items()}
    stale = [s for s, (_, sha1) in entry["splits"].items() if not paths[s].is_file() or _file_sha1(paths[s]) != sha1]
    url = None
    if stale:
        zip_path = cache / entry["zip_name"]
        if not zip_path.is_file() or _file_sha256(zip_path) != entry["zip_sha256"]:
            url = _download_any(entry["urls"], zip_path, entry["zip_sha256"], entry["zip_bytes"])
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DataError(f"cannot create '{folder}' ({_one_line(e)}): pass a writable --data.data-dir") from e
        for s in stale:
            member, sha1 = entry["splits"][s]
            _extract(zip_path, member, paths[s])
            if _file_sha1(paths[s]) != sha1:
                raise DataError(
                    f"'{member}' in '{zip_path}' has not the expected sha1 {sha1}: delete the zip and run again"
                )
    texts = [_read_bytes(paths[s]).decode("utf-8") for s in SPLITS]
    info = {
        "spec": name,
        "url": url,
        "zip_sha256": entry["zip_sha256"],
        "files": {s: {"path": str(paths[s]), "sha1": entry["splits"][s][1]} for s in SPLITS},
    }
    return _word_corpus(name, texts, info)


def _load_word_path(spec: str) -> WordCorpus:
    path = Path(spec).expanduser()
    if path.is_dir():
        for names in WORD_SPLIT_FILES:
            if all((path / n).is_file() for n in names):
                raw = [_read_bytes(path / n) for n in names]
                texts = [_decode(r) for r in raw]
                files = [
                    {"split": s, "path": n, "bytes": len(r), "sha256": hashlib.sha256(r).hexdigest()}
                    for s, n, r in zip(SPLITS, names, raw, strict=True)
                ]
                return _word_corpus(path.name, texts, {"spec": spec, "path": str(path.resolve()), "files": files})
    path, data, files = _read_path(spec, NAMED_WORD_SPECS)
    lines = _split_keep_ends(_decode(data))
    n = len(lines)
    a, b = n * 90 // 100, n * 95 // 100
    if min(a, b - a, n - b) == 0:
        raise DataError(
            f"corpus '{spec}' has {n:,} lines, too few to split 90/5/5 by line: pass a text of at least 20 lines"
        )
    texts = ["".join(lines[:a]), "".join(lines[a:b]), "".join(lines[b:])]
    info = {
        "spec": spec,
        "path": str(path.resolve()),
        "files": files,
        "sha256": _sha256(data),
        "split": "90/5/5 by line",
    }
    return _word_corpus(path.name or spec, texts, info)


def _split_keep_ends(text: str) -> list[str]:
    """Lines with their ends (universal newlines), so that ``"".join`` gives ``text`` back."""
    return [m.group() for m in _LINE_WITH_END.finditer(text)]


_LINE_WITH_END = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")
