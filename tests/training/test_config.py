"""Property-based tests of configuration parsing: any value either builds a config that round-trips through
config.json, or is refused with a one-line ConfigError — never another exception."""

import dataclasses
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from memtx.cli import parse_train_args
from memtx.errors import ConfigError
from memtx.models.config import ModelConfig
from memtx.training.config import RunConfig

numbers = st.one_of(st.integers(-5, 600), st.floats(-2, 2, allow_nan=True, allow_infinity=True))


@settings(max_examples=200, deadline=None)
@given(
    n_layers=st.integers(-2, 4),
    d_model=st.integers(-4, 64),
    n_heads=st.integers(-1, 9),
    n_persistent=st.integers(-3, 8),
    span=st.integers(-1, 40),
    dropout=st.floats(-1, 2, allow_nan=False),
    span_init=st.floats(-1, 2, allow_nan=False),
    block=st.sampled_from(["allattn", "transformer", "lstm"]),
)
def test_model_config_builds_or_refuses_clearly(**kw):
    try:
        cfg = ModelConfig(**kw)
    except ConfigError as e:
        assert "\n" not in str(e) and str(e)
        return
    assert cfg.d_model % cfg.n_heads == 0 and cfg.n_layers >= 1 and 0 <= cfg.dropout < 1
    run = RunConfig(model=cfg)
    assert RunConfig.from_dict(json.loads(run.to_json())) == run


@settings(max_examples=60, deadline=None)
@given(
    field=st.sampled_from(
        [
            "--max-steps",
            "--batch-size",
            "--model.d-model",
            "--model.span",
            "--optim.lr",
            "--max-time",
            "--model.dropout",
            "--segment-len",
        ]
    ),  # fmt: skip
    value=st.one_of(st.integers(-3, 3000).map(str), st.floats(-1, 5).map(str), st.text(max_size=4)),
)
def test_cli_values_parse_or_refuse_in_one_line(field, value):
    try:
        cmd = parse_train_args([field, value])
    except ConfigError as e:
        assert "\n" not in str(e) and str(e)
        return
    got = dataclasses.asdict(cmd.run)
    for part in field.removeprefix("--").replace("-", "_").split("."):
        got = got[part]
    assert float(got) == float(value)


def test_curriculum_mix_draws_earlier_stages_half_the_time_deterministically():
    cfg = RunConfig(curriculum=(1, 2, 4, 8), stage_steps=1000, curriculum_mix=True, seed=3)
    plain = dataclasses.replace(cfg, curriculum_mix=False)
    assert [cfg.stage_at(s) for s in (0, 999, 1000, 2999, 3000, 10**6)] == [0, 0, 1, 2, 3, 3]
    assert all(cfg.segments_at(s) == 1 for s in range(1000))  # the first stage has nothing earlier
    last = [cfg.segments_at(s) for s in range(3000, 4000)]
    assert set(last) == {1, 2, 4, 8} and 420 < last.count(8) < 580  # half on average, the rest spread
    assert all(110 < last.count(n) < 225 for n in (1, 2, 4))  # ~167 each
    assert last == [cfg.segments_at(s) for s in range(3000, 4000)]  # a function of (seed, step): resumes agree
    assert last != [dataclasses.replace(cfg, seed=4).segments_at(s) for s in range(3000, 4000)]
    assert [plain.segments_at(s) for s in (0, 1000, 2000, 3000, 5000)] == [1, 2, 4, 8, 8]
