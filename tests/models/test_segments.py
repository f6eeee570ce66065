"""The one segment loop with every memory mechanism: truncated BPTT depth is exact, generation equals the
segmented forward, and a single RMT segment is a plain forward on [read ; tokens ; write]."""

import pytest
import torch

from memtx.models.config import ModelConfig
from memtx.models.generation import generate
from memtx.models.segments import segments
from memtx.models.transformer_lm import TransformerLM

MECHANISMS = ["xl", "rmt", "armt"]


def _model(memory, block="allattn", seed=0):
    torch.manual_seed(seed)
    cfg = ModelConfig(
        n_layers=2,
        d_model=16,
        n_heads=2,
        n_persistent=3,
        span=24,
        block=block,
        d_ff=8,
        memory=memory,
        mem_tokens=3,
        mem_dim=8,
        mem_heads=2,
    )
    model = TransformerLM(cfg).double()
    with torch.no_grad():  # ARMT's value projection starts at zero: perturb so memory paths carry gradient
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def _segment_input_grads(model, x, segment_len, bptt_depth):
    """Gradient of the LAST segment's loss with respect to each segment's embedded input."""
    embedded = []

    def keep(module, args, out):
        out.retain_grad()
        embedded.append(out)

    handle = model.embed.register_forward_hook(keep)
    outs = [out for _, out in segments(model, x, None, segment_len, bptt_depth)]
    handle.remove()
    outs[-1].logits.logsumexp(-1).sum().backward()
    return [e.grad for e in embedded]


@pytest.mark.parametrize("block", ["allattn", "transformer"])
@pytest.mark.parametrize("memory", ["rmt", "armt"])
@pytest.mark.parametrize("depth", [0, 1, 2, 4, -1])
def test_gradients_reach_exactly_the_last_k_segments(memory, block, depth):
    model = _model(memory, block)
    n_segments, t = 5, 4
    x = torch.randint(0, 256, (2, n_segments * t))
    grads = _segment_input_grads(model, x, t, depth)
    k = n_segments - 1 if depth < 0 else depth
    for i, g in enumerate(grads):
        reached = g is not None and g.abs().max() > 0
        assert reached == (i >= n_segments - 1 - k), f"segment {i}: gradient {'present' if reached else 'absent'}"


def test_xl_cache_never_carries_gradient_across_segments():
    grads = _segment_input_grads(_model("xl"), torch.randint(0, 256, (2, 12)), 4, -1)
    assert [g is not None and bool(g.abs().max() > 0) for g in grads] == [False, False, True]


@pytest.mark.parametrize("memory", MECHANISMS)
@pytest.mark.parametrize("prompt_len", [1, 4, 6, 9])
def test_greedy_generation_equals_segmented_forward(memory, prompt_len):
    model = _model(memory)
    prompt = torch.randint(0, 256, (2, prompt_len))
    out = generate(model, prompt, 10, temperature=0, segment_len=4)
    full = torch.cat([prompt, out], dim=1)
    with torch.no_grad():
        logits = torch.cat([o.logits for _, o in segments(model.eval(), full, None, 4)], dim=1)
    assert torch.equal(logits.argmax(-1)[:, prompt_len - 1 : -1], out)


@pytest.mark.parametrize("block", ["allattn", "transformer"])
def test_rmt_segment_is_a_plain_forward_on_read_tokens_write(block):
    model = _model("rmt", block).eval()
    x = torch.randint(0, 256, (2, 5))
    out = model(x)
    mem = model.memory.initial.unsqueeze(0).expand(2, -1, -1)
    h = torch.cat([mem, model.embed(x), mem], dim=1)
    for b in model.blocks:
        h = b(h, None, model.pos)
    assert torch.allclose(out.logits, model.head(h[:, 3:-3]), atol=1e-12)
    assert torch.allclose(out.state.memory, h[:, -3:], atol=1e-12)
    # the next segment reads (and writes) that memory
    x2 = torch.randint(0, 256, (2, 5))
    h2 = torch.cat([out.state.memory, model.embed(x2), out.state.memory], dim=1)
    for b in model.blocks:
        h2 = b(h2, None, model.pos)
    assert torch.allclose(model(x2, out.state).logits, model.head(h2[:, 3:-3]), atol=1e-12)


@pytest.mark.parametrize("memory", MECHANISMS)
def test_state_round_trips_through_tensors(memory):
    from memtx.models.transformer_lm import memory_from_tensors

    model = _model(memory)
    x = torch.randint(0, 256, (2, 8))
    state = model(x[:, :4]).state
    again = memory_from_tensors(state.detach().to_tensors())
    assert torch.equal(model(x[:, 4:], state).logits, model(x[:, 4:], again).logits)


@pytest.mark.parametrize("memory", MECHANISMS)
def test_prefill_in_chunks_then_generate_equals_generate_on_the_whole_prompt(memory):
    from memtx.models.generation import prefill

    model = _model(memory)
    prompt = torch.randint(0, 256, (2, 23))
    whole = generate(model, prompt, 8, temperature=0, segment_len=4)
    cuts = [[(0, 3), (3, 4), (4, 17), (17, 23)], [(0, 11), (11, 12), (12, 23)]]  # rows chunked differently
    rows = [[prompt[i, a:b].tolist() for a, b in row] for i, row in enumerate(cuts)]
    state, tail = prefill(model, rows, 4)
    assert tail.shape[0] == 2 and 1 <= tail.shape[1] <= 4
    assert torch.equal(generate(model, tail, 8, temperature=0, segment_len=4, state=state), whole)
    with pytest.raises(ValueError, match="equal lengths"):
        prefill(model, [[[1] * 9], [[1] * 10]], 4)
