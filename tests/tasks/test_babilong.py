"""BABILong generator and scorer: tiny bAbI files and books written by the tests, plus the shared data if present."""

from __future__ import annotations

import tracemalloc
from itertools import islice
from pathlib import Path

import pytest

from memtx.errors import ConfigError, DataError
from memtx.tasks.babilong import (
    SEP,
    TASK_LABELS,
    Babilong,
    NoiseBooks,
    load_babi,
    parse_babi,
    parse_length,
    score,
    split_books,
    split_sentences,
    strip_gutenberg,
)

SHARED = next((d / "shared/data" for d in Path(__file__).resolve().parents if (d / "shared/data/babi").is_dir()), None)
needs_shared = pytest.mark.skipif(SHARED is None, reason="no shared/data with babi/ and gutenberg/ above the tests")

STORY = """1 Mary moved to the bathroom.
2 John went to the hallway.
3 Where is Mary? \tbathroom\t1
4 Daniel went back to the hallway.
5 Sandra moved to the garden.
6 Where is Daniel? \thallway\t4
1 John moved to the office.
2 Where is John? \toffice\t1
"""


def one_line(err: pytest.ExceptionInfo) -> None:
    assert "\n" not in str(err.value) and ": " in str(err.value)


def write_babi(root: Path, n_stories: int = 30) -> Path:
    """qa1 train/test files under root/tasks_1-20_v1-2/en; test stories name Mary/John, train ones Alice/Bob."""
    folder = root / "tasks_1-20_v1-2" / "en"
    folder.mkdir(parents=True)
    rooms = ["bathroom", "bedroom", "garden", "hallway", "kitchen", "office"]
    for split, names in (("test", ["Mary", "John"]), ("train", ["Alice", "Bob"])):
        lines = []
        for s in range(n_stories):
            where = {}
            for i in range(1, 9):
                name, room = names[(s + i) % 2], rooms[(s * 7 + i * 5) % 6]
                where[name] = (i, room)
                lines.append(f"{i} {name} moved to the {room}.")
            name = names[s % 2]
            lines.append(f"9 Where is {name}? \t{where[name][1]}\t{where[name][0]}")
        (folder / f"qa1_single-supporting-fact_{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def book(word: str, n_sentences: int, header: bool = False) -> str:
    """Sentences of 8..16 words, each holding ``word`` (so a sentence names its book), wrapped like a PG text."""
    body = " ".join(
        f"The {word} story went on with part {i}" + " and more" * (i % 5) + ("." if i % 3 else "!")
        for i in range(n_sentences)
    )
    body = "\r\n".join(body[i : i + 70] for i in range(0, len(body), 70))
    if header:
        body = f"Header sentence never used here.\r\n*** START OF THE BOOK ***\r\n{body}\r\n*** END OF IT ***\r\nFoot."
    return body


@pytest.fixture
def data(tmp_path):
    """(babi_dir, noise_dir): noise books a, b, d, g; b.txt (sorted index 1) is the only test book."""
    babi = write_babi(tmp_path / "babi")
    noise = tmp_path / "noise"
    noise.mkdir()
    for word in ("alpha", "beta", "gamma", "delta"):
        (noise / f"{word[0]}.txt").write_text(book(word, 400, header=word == "beta"))
    (noise / "LICENSE.txt").write_text("License text. It is not a book at all.")
    return babi, noise


def gen(data, split="test", **kw) -> Babilong:
    return Babilong("qa1", split, babi_dir=data[0], noise_dir=data[1], **kw)


# ---------------------------------------------------------------------------------------------- parsing


def test_parse_babi_one_sample_per_question():
    qs = parse_babi(STORY, "qa1")
    assert [(q.question, q.answer) for q in qs] == [
        ("Where is Mary?", "bathroom"),
        ("Where is Daniel?", "hallway"),
        ("Where is John?", "office"),
    ]
    assert qs[1].facts == (
        "Mary moved to the bathroom.",
        "John went to the hallway.",
        "Daniel went back to the hallway.",
        "Sandra moved to the garden.",
    )  # the earlier question is not a fact
    assert qs[1].fact_ids == (1, 2, 4, 5) and qs[1].supporting == ("Daniel went back to the hallway.",)
    assert qs[2].facts == ("John moved to the office.",)  # ID 1 starts a new story


@pytest.mark.parametrize("bad", ["x Mary moved.", "1 Where? \tkitchen", "1 Where? \tkitchen\tone", "2 Where? \tx\t7"])
def test_parse_babi_rejects_bad_lines(bad):
    with pytest.raises(DataError, match="<text>:") as err:
        parse_babi("1 Mary moved to the bathroom.\n" + bad)
    one_line(err)


@pytest.mark.parametrize(
    "text,tokens",
    [("0k", 0), ("1k", 1000), ("4K", 4000), ("128k", 128_000), ("512k", 512_000), ("1M", 1_000_000), ("777", 777),
     (4096, 4096)],
)  # fmt: skip
def test_parse_length(text, tokens):
    assert parse_length(text) == tokens


@pytest.mark.parametrize("bad", ["", "k", "1.5k", "-1k", "4kb", "1G", -3, True])
def test_parse_length_rejects(bad):
    with pytest.raises(ConfigError, match="cannot parse length") as err:
        parse_length(bad)
    one_line(err)


def test_split_sentences_and_gutenberg_strip():
    text = 'He said, "Stop!" Then\r\n  she left.  Is it? Yes... the end'
    assert list(split_sentences(text)) == ['He said, "Stop!"', "Then she left.", "Is it?", "Yes..."]
    assert strip_gutenberg("head\n*** START OF X ***\nbody.\n***END OF X***\nfoot") == "\nbody.\n"
    assert strip_gutenberg("no markers.") == "no markers."


# ---------------------------------------------------------------------------------------------- generator


def test_deterministic_for_a_seed(data):
    def run(seed):
        return [(s.question, list(s.chunks())) for s in gen(data).samples("2k", n=5, seed=seed)]

    assert run(3) == run(3)
    assert run(3) != run(4)
    g = gen(data)  # a sample is a pure function of (seed, question, length): not of n or of earlier samples
    assert list(next(g.samples(2000, n=1, seed=3)).chunks()) == run(3)[0][1]


@pytest.mark.parametrize("length", ["1k", "4k", "16k"])
def test_facts_in_order_and_intact_and_length_within_one_sentence(data, length):
    g = gen(data)
    target = parse_length(length)
    for s in g.samples(length, n=8, seed=1):
        chunks = list(s.chunks())
        facts = [c[: -len(SEP)] for c in chunks if c[: -len(SEP)] in s.facts]
        assert facts == list(s.facts)  # every fact is a whole chunk, in story order
        assert len(chunks) == len(s.facts) + s.n_noise and s.n_noise > 0
        assert "".join(chunks) == s.context() and all(c.endswith(SEP) for c in chunks)
        assert s.length == len(s.context().encode()) <= target
        following = next(islice(g.noise.sentences(s.noise_start), s.n_noise, None))
        assert s.length + len((following + SEP).encode()) > target  # one more sentence would overflow


def test_count_tokens_is_the_models(data):
    words = lambda text: len(text.split())  # noqa: E731  (a "tokenizer" with one token per word)
    s = next(gen(data, count_tokens=words).samples(500, seed=0))
    assert 500 - 16 < s.length == sum(words(c) for c in s.chunks()) <= 500  # noise sentences have <= 16 words


def test_facts_spread_among_noise(data):
    gaps = [g for s in gen(data).samples("16k", n=20, seed=0) for g in s.fact_gaps]
    assert min(gaps) < 20 and max(gaps) > 100  # random sorted positions across the whole context


def test_0k_is_facts_only(data):
    s = next(gen(data).samples("0k"))
    assert list(s.chunks()) == [f + SEP for f in s.facts] and s.n_noise == 0 and s.target == 0


def test_train_and_test_are_disjoint(data):
    babi, noise = data
    assert {p.name for p in NoiseBooks(noise, "test").files} == {"b.txt"}
    assert {p.name for p in NoiseBooks(noise, "train").files} == {"a.txt", "d.txt", "g.txt"}
    for split, names, words in (("test", "Mary John", {"beta"}), ("train", "Alice Bob", {"alpha", "gamma", "delta"})):
        for s in gen(data, split).samples("4k", n=5, seed=0):
            assert all(f.split()[0] in names for f in s.facts)
            noise_words = {w for c in s.chunks() if c[:-1] not in s.facts for w in c.split()}
            assert noise_words & {"alpha", "beta", "gamma", "delta"} <= words and noise_words
            assert "Header" not in s.context()  # Project Gutenberg boilerplate cut off


def test_valid_holds_out_the_last_stories_of_the_train_file(data):
    """30 train stories: the first 27 train, the last 3 (whole) are valid, with the train books; nothing shared."""
    train, valid = gen(data, "train"), gen(data, "valid")
    assert sorted({q.story for q in train.questions}) == list(range(1, 28))
    assert sorted({q.story for q in valid.questions}) == [28, 29, 30]
    assert all(f.split()[0] in ("Alice", "Bob") for q in valid.questions for f in q.facts)  # the train file's
    assert valid.noise.files == train.noise.files
    assert {s.question for s in valid.samples("0k", seed=0)} <= {q.question for q in valid.questions}


def test_valid_of_a_one_story_file_is_an_error(tmp_path):
    babi = write_babi(tmp_path, n_stories=1)
    assert len(load_babi("qa1", "train", babi)) == 1  # the one story trains
    with pytest.raises(DataError, match="no valid questions") as err:
        load_babi("qa1", "valid", babi)
    one_line(err)


def test_split_books_rule():
    files = [Path(f"{i:02d}.txt") for i in range(9)]
    split = split_books(files[::-1])
    assert [p.stem for p in split["test"]] == ["01", "05"]
    assert set(split["train"]) | set(split["test"]) == set(files) and not set(split["train"]) & set(split["test"])


def test_skips_questions_that_do_not_fit(data):
    g = gen(data)
    facts_len = len("".join(f + SEP for f in g.questions[0].facts).encode())
    assert g.sample(0, facts_len - 1) is None
    with pytest.raises(ConfigError, match="no qa1 question fits in 10 tokens") as err:
        list(g.samples(10))
    one_line(err)


def test_memory_is_flat_in_the_length(data, tmp_path):
    noise = tmp_path / "big"
    noise.mkdir()
    (noise / "a.txt").write_text(book("alpha", 10))
    (noise / "b.txt").write_text(book("beta", 30_000))  # ~1.4 MB: the only test book
    g = Babilong("qa1", "test", babi_dir=data[0], noise_dir=noise)
    list(g.sample(0, "1k").chunks())  # read the books and warm up lazy imports before measuring

    def peak(length: str) -> tuple[int, int]:
        tracemalloc.start()
        try:
            size = sum(len(c) for c in g.sample(0, length).chunks())
            return tracemalloc.get_traced_memory()[1], size
        finally:
            tracemalloc.stop()

    small, big = peak("10k"), peak("1M")
    assert big[1] > 990_000 and small[1] < 10_001
    assert big[0] < small[0] + 64_000, (small, big)  # peak memory does not grow with the sample (~5 kB here)


# ---------------------------------------------------------------------------------------------- errors


def test_unknown_task(data):
    with pytest.raises(ConfigError, match="unknown bAbI task 'qa21': use qa1 .. qa20") as err:
        Babilong("qa21", babi_dir=data[0])
    one_line(err)


def test_missing_babi_files(data, tmp_path):
    with pytest.raises(DataError, match=r"qa2_\*_test.txt not found") as err:
        Babilong("qa2", babi_dir=data[0])
    one_line(err)
    with pytest.raises(DataError, match="not found"):
        load_babi("qa1", "test", tmp_path / "nowhere")
    assert len(load_babi("qa1", "test", data[0] / "tasks_1-20_v1-2" / "en")) == 30  # the en/ folder itself works


def test_noise_too_small(data):
    with pytest.raises(DataError, match="noise corpus too small.*pass a larger noise folder") as err:
        list(gen(data).samples("1M", n=1))
    one_line(err)


@pytest.mark.parametrize("books", [0, 1])
def test_noise_folder_needs_two_books(tmp_path, books):
    for i in range(books):
        (tmp_path / f"{i}.txt").write_text("One two three.")
    (tmp_path / "README.txt").write_text("Not a book at all.")
    with pytest.raises(DataError, match="at least 2") as err:
        NoiseBooks(tmp_path)
    one_line(err)
    with pytest.raises(DataError, match="does not exist"):
        NoiseBooks(tmp_path / "nowhere")


# ---------------------------------------------------------------------------------------------- scorer


@pytest.mark.parametrize(
    "prediction,answer,task,question,ok",
    [
        ("bathroom", "bathroom", None, "", True),
        ("Bathroom.", "bathroom", None, "", True),
        ("The bathroom", "bathroom", None, "", False),  # exact match only without a task
        ("The answer is the bathroom. It was the kitchen", "bathroom", "qa1", "Where is Mary?", True),
        ("kitchen or bathroom", "bathroom", "qa1", "Where is Mary?", False),  # two labels: ambiguous
        ("garden", "bathroom", "qa1", "Where is Mary?", False),
        ("Mary gave it to Fred", "Fred", "qa5", "Who did Mary give the milk to?", True),  # question labels ignored
        ("none", "none", "qa7", "How many objects is Mary carrying?", True),
        ("There are none of them", "none", "qa7", "How many?", True),  # "none" does not also mention "one"
        ("one", "none", "qa7", "How many?", False),
        ("milk, apple", "apple,milk", "qa8", "What is Mary carrying?", True),
        ("She holds the apple and the milk", "apple,milk", "qa8", "What is Mary carrying?", True),
        ("apple", "apple,milk", "qa8", "What is Mary carrying?", False),
        ("go s,e", "s,e", "qa19", "How do you go from the kitchen to the garden?", True),
        ("bedroom\nQuestion: where is bob? garden", "bedroom", "qa1", "Where is Mary?", True),
        ("", "yes", "qa6", "Is Mary in the office?", False),
    ],
)
def test_score(prediction, answer, task, question, ok):
    assert score(prediction, answer, task, question) is ok


def test_sample_score(data):
    s = next(gen(data).samples("0k"))
    assert s.score(f"In the {s.answer}.") and not s.score("nowhere")


# ---------------------------------------------------------------------------------------------- shared data


@needs_shared
@pytest.mark.parametrize("n", range(1, 21))
def test_shared_babi_parses_and_answers_are_labels(n):
    root = SHARED / "babi"
    train, valid = load_babi(n, "train", root), load_babi(n, "valid", root)
    stories = {q.story for q in train + valid}
    # valid: the last 10% of the train file's stories, whole
    assert {q.story for q in valid} == set(sorted(stories)[-round(len(stories) / 10) :])
    assert not {q.story for q in train} & {q.story for q in valid} and len(train) + len(valid) == 1000
    for qs in (train + valid, load_babi(n, "test", root)):
        assert len(qs) == 1000 and all(q.facts and q.supporting for q in qs)
        labels = TASK_LABELS[f"qa{n}"]
        for q in qs:
            target = q.answer.lower()
            assert target in labels or set(target.split(",")) <= labels, q.answer
            assert score(f"It is {q.answer}. Or not {q.answer}", q.answer, n, q.question), q  # by the label rule


@needs_shared
def test_shared_gutenberg_sample():
    g = Babilong("qa2", "test", babi_dir=SHARED / "babi", noise_dir=SHARED / "gutenberg")
    assert sorted(p.name for p in g.noise.files) == ["pg1342_pride-and-prejudice.txt", "pg2701_moby-dick.txt"]
    train = NoiseBooks(SHARED / "gutenberg", "train")
    assert len(train.files) == 7 and not set(train.files) & set(g.noise.files)
    s = next(g.samples("16k", seed=0))
    assert 16_000 - 1000 < s.length <= 16_000 and "Gutenberg" not in s.context()
    assert [c[:-1] for c in s.chunks() if c[:-1] in s.facts] == list(s.facts)
