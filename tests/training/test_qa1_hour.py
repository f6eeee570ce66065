"""benchmarks/qa1_hour.py's choices, with its training phases faked: which As are probed, which goes on, and B's
clock (the real phases take an hour: the script's runs are in benchmarks/results/babilong)."""

import importlib.util
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location("qa1_hour", Path(__file__).parents[2] / "benchmarks/qa1_hour.py")
qa1_hour = importlib.util.module_from_spec(spec)
spec.loader.exec_module(qa1_hour)

SECONDS = {"A": 240.0, "probe": 330.0, "fill": 0.0, "B": 2000.0}


def run(a_accs: dict[int, float], probe_accs: dict[int, float], *flags: str):
    """The route over fake phases that take SECONDS each; returns (chosen seed, [phase names], B's args)."""
    clock = [0.0]
    calls: list[tuple[str, list[str]]] = []

    def phase(name: str, args: list[str], run: Path) -> float:
        calls.append((name, args))
        kind = name.split()[0]
        clock[0] += SECONDS[kind]
        seed = int(name.split()[-1]) if kind in ("A", "probe") else -1
        return {"A": a_accs.get(seed, 0.0), "probe": probe_accs.get(seed, 0.0)}.get(kind, 0.9)

    chosen = qa1_hour.route(qa1_hour.parse_args(["--out", "x", *flags]), Path("x"), phase, lambda: clock[0])
    return chosen, [name for name, _ in calls], calls[-1][1], clock[0]


def test_under_a_min_is_not_probed_and_the_first_good_probe_goes_on():
    chosen, names, b_args, _ = run({0: 0.4, 1: 0.6, 2: 0.7}, {1: 0.8, 2: 0.95}, "--a-min", "0.5")
    assert names == ["A seed 0", "A seed 1", "probe 1", "A seed 2", "probe 2", "B"]
    assert chosen == 2
    assert b_args[b_args.index("--init-from") + 1] == str(Path("x/fill2"))
    assert b_args[b_args.index("--max-steps") + 1] == "665"
    # B's clock: the hour less what the tries took (240*3 + 330*2 s) and B's margin outside --max-time
    assert int(b_args[b_args.index("--max-time") + 1]) == int(3600 - (3 * 240 + 2 * 330) - qa1_hour.B_MARGIN_S)


def test_tries_stop_while_b_still_fits_and_the_best_probe_goes_on():
    chosen, names, _, _ = run({s: 0.6 for s in range(10)}, {0: 0.7, 1: 0.85, 2: 0.6})
    # each try 570 s; B needs b_seconds(500) (~33 min with its margin): after two tries a third would not leave it
    assert names == ["A seed 0", "probe 0", "A seed 1", "probe 1", "B"]
    assert chosen == 1
    assert 2 * 570 + 570 + qa1_hour.b_seconds(500) > 3600 >= 570 + 570 + qa1_hour.b_seconds(500)


def test_when_no_a_reaches_a_min_the_best_a_is_probed_and_goes_on():
    chosen, names, _, _ = run({0: 0.3, 1: 0.45, 2: 0.2, 3: 0.1, 4: 0.1, 5: 0.1}, {1: 0.5}, "--a-min", "0.5")
    # As alone (240 s, a try counted as 2.3x that) until one more would not leave B its time: seeds 0-4
    assert names == [f"A seed {s}" for s in range(5)] + ["probe 1", "B"]
    assert chosen == 1


def test_a_longer_probe_runs_the_fill_to_its_end_before_b():
    _, names, _, _ = run({0: 0.9}, {0: 0.95}, "--probe-steps", "500", "--fill-steps", "1000")
    assert names == ["A seed 0", "probe 0", "fill", "B"]


@pytest.mark.parametrize("steps", [250, 500, 665])
def test_b_seconds_counts_segments_of_the_curriculum(steps):
    segs = 50 * (1 + 2 + 4 + 8 + 16) + 32 * (steps - 250)
    assert qa1_hour.b_seconds(steps) == pytest.approx(qa1_hour.B_SEGMENT_S * segs + qa1_hour.B_MARGIN_S)
