"""Byte corpora with contiguous train/valid/test splits.

``load_corpus(spec)`` understands ``default`` (CPython's embedded pydoc topics, always available),
``pg9`` (nine local Project Gutenberg novels, whole books held out), ``enwik8`` / ``text8``
(downloaded once into a cache and verified by sha256) and any path to a text file or folder.
Every split is a 1-D ``uint8`` array (a read-only memmap where the bytes come straight from one file).
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


def _download(url: str, dest: Path, sha256: str, size: int) -> None:
    """Download ``url`` to a temp file beside ``dest``, check size and sha256, then rename it to ``dest``."""
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    tmp = Path(tmp_name)
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            with urllib.request.urlopen(url, timeout=60) as resp:
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
    cache = _cache_dir(data_dir)
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(
            f"cannot create cache folder '{cache}' ({_one_line(e)}): pass --data.data-dir or set MEMTX_CACHE "
            "to a writable folder"
        ) from e
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


def _load_path(spec: str) -> Corpus:
    path = Path(spec).expanduser()
    if not spec.strip() or not path.exists():
        raise DataError(
            f"corpus path '{spec}' does not exist: pass an existing text file or folder, "
            f"or one of {', '.join(NAMED_SPECS)}"
        )
    if path.is_file():
        data = _memmap(path)
        files = [{"path": str(path.resolve()), "bytes": int(len(data))}]
    elif path.is_dir():
        found = (Path(root, f) for root, _, fs in os.walk(path, onerror=_walk_error) for f in fs)
        rels = sorted(p.relative_to(path).as_posix() for p in found if p.is_file())
        if not rels:
            raise DataError(f"corpus folder '{spec}' has no files: pass a folder that holds text files")
        parts = [_read_bytes(path / r) for r in rels]
        data = np.frombuffer(b"".join(parts), dtype=np.uint8)
        files = [{"path": r, "bytes": len(p)} for r, p in zip(rels, parts, strict=True)]
    else:
        raise DataError(f"corpus path '{spec}' is not a regular file or folder: pass a text file or folder")
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
