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
