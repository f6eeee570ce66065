"""Recurrence is only a rewrite: segmented with the cache == one full pass under the band mask; incremental
generation == the full forward; the cache is detached and truncated."""

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from memtx.memory.reference import reference_attention
from memtx.models.config import ModelConfig
from memtx.models.generation import generate
from memtx.models.transformer_lm import TransformerLM

CONFIGS = {
    "allattn": dict(block="allattn", n_persistent=4),
    "transformer": dict(block="transformer", n_persistent=0, d_ff=8),
    "allattn-adaptive": dict(block="allattn", n_persistent=4, adaptive_span=True, span_init=0.3, span_ramp=2),
    "transformer-adaptive": dict(block="transformer", n_persistent=0, d_ff=8, adaptive_span=True, span_init=0.5),
    "allattn-pre": dict(block="allattn", n_persistent=4, norm="pre"),
    "transformer-pre": dict(block="transformer", n_persistent=2, d_ff=8, norm="pre"),
    "allattn-smear": dict(block="allattn", n_persistent=4, smear_keys=True),
    "transformer-pre-smear": dict(block="transformer", n_persistent=2, d_ff=8, norm="pre", smear_keys=True),
    "allattn-recency": dict(block="allattn", n_persistent=4, recency_bias=True),
    "transformer-recency-adaptive": dict(
        block="transformer", n_persistent=0, d_ff=8, recency_bias=True, adaptive_span=True, span_init=0.5
    ),
}


def tiny(name, span=6, seed=0):
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=32, n_layers=2, d_model=16, n_heads=2, span=span, **CONFIGS[name])
    model = TransformerLM(cfg).double()
    if cfg.smear_keys:  # each head its own mix, away from the initial half and half
        with torch.no_grad():
            for block in model.blocks:
                block.attn.smear.copy_(torch.randn_like(block.attn.smear))
    if cfg.recency_bias:  # slopes of either sign's size, not ALiBi's fixed ladder
        with torch.no_grad():
            for block in model.blocks:
                block.recency.raw.copy_(torch.randn_like(block.recency.raw))
    return model


def segmented_logits(model, x, seg):
    state, outs = None, []
    for s in range(0, x.shape[1], seg):
        out = model(x[:, s : s + seg], state)
        state = out.state
        outs.append(out.logits)
    return torch.cat(outs, dim=1), state


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("seg", [1, 3, 4, 9])
def test_segmented_equals_full_pass(name, seg):
    model = tiny(name)
    x = torch.randint(0, 32, (2, 23))
    full = model(x).logits
    torch.testing.assert_close(segmented_logits(model, x, seg)[0], full, rtol=1e-10, atol=1e-10)


def test_pre_norm_is_the_residual_around_normalised_inputs():
    """norm='pre', written out by hand with the slow attention: h + Attn(LN(h)), then h + FFN(LN(h)), a final LN
    before the head; the post-norm twin of the same weights gives other logits."""
    model = tiny("transformer-pre")
    for p in model.parameters():  # move the LayerNorms off their identity initialisation
        p.data.add_(0.1 * torch.randn_like(p))
    x = torch.randint(0, 32, (2, 9))
    pad = model.cfg.span  # no cache: the whole window is absent
    h = model.embed(x)
    for block in model.blocks:
        a = block.attn
        n = F.pad(block.norm_attn(h), (0, 0, pad, 0))  # the absent window positions (masked: any value does)
        k, v = a.project_kv(n)
        pk, pv = block.persistent()
        out = reference_attention(a._heads(a.q(n[:, pad:])), k, v, model.pos, n_pad=pad, extra_k=pk, extra_v=pv)
        h = h + a.o(out.transpose(1, 2).flatten(2))
        h = h + block.ff(block.norm_ff(h))
    expected = model.head(model.final_norm(h))
    torch.testing.assert_close(model(x).logits, expected, rtol=1e-10, atol=1e-10)
    post = TransformerLM(replace(model.cfg, norm="post")).double()
    post.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("final_norm")})
    assert not torch.allclose(post(x).logits, expected)


def test_full_pass_is_banded():
    """A token's logits do not depend on tokens more than span-1 positions back (per layer: L*(span-1))."""
    model = tiny("allattn", span=3)
    x = torch.randint(0, 32, (1, 12))
    y = x.clone()
    y[0, 0] = (x[0, 0] + 1) % 32
    a, b = model(x).logits, model(y).logits
    reach = 2 * (3 - 1)  # two layers
    torch.testing.assert_close(a[:, reach + 1 :], b[:, reach + 1 :])
    assert not torch.allclose(a[:, reach], b[:, reach])


def test_cache_is_detached_and_truncated_to_span():
    model = tiny("allattn", span=5).float()
    x = torch.randint(0, 32, (2, 3))
    state = model(x).state
    assert [h.shape[1] for h in state.hidden] == [3, 3]
    for _ in range(3):
        out = model(x, state)
        state = out.state
    assert [h.shape for h in state.hidden] == [torch.Size([2, 5, 16])] * 2
    assert all(not h.requires_grad for h in state.hidden)
    out.logits.sum().backward()  # gradients stop at the segment boundary: nothing reaches the cache
    assert all(h.grad is None for h in state.hidden)


def test_adaptive_span_cache_trimmed_to_learned_span():
    torch.manual_seed(0)
    cfg = ModelConfig(
        vocab_size=32,
        n_layers=1,
        d_model=16,
        n_heads=2,
        span=256,
        n_persistent=2,
        adaptive_span=True,
        span_init=0.0,
        span_ramp=32,
    )
    model = TransformerLM(cfg)
    block = model.blocks[0]
    assert block.adaptive_span.window() == 64  # reach 32 rounded up to the 64 granularity
    assert block.cache_len() == 128  # plus the official 64 margin
    state = None
    for _ in range(5):
        state = model(torch.randint(0, 32, (1, 50)), state).state
    assert state.hidden[0].shape[1] == 128


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("prefix", [0, 1, 4, 11])
@pytest.mark.parametrize("batch", [1, 2])  # the persistent vectors inside each row's keys at batch 1, shared else
def test_kv_decode_equals_full_forward(name, prefix, batch):
    """Reading `prefix` tokens with the hidden-state cache, projecting it to K/V, then decoding one token at a
    time gives the full forward's logits at every position, while each layer's ring of keys goes round several
    times (written in place: the same buffers throughout)."""
    model = tiny(name).eval()
    x = torch.randint(0, 32, (batch, 40))
    full = model(x).logits
    state = model(x[:, :prefix]).state if prefix else None
    kv = model.kv_cache(state, batch)
    buffers = [r.keys for r in kv.rings]
    for t in range(prefix, 40):
        logits, kv = model.decode(x[:, t : t + 1], kv)
        torch.testing.assert_close(logits, full[:, t], rtol=1e-10, atol=1e-10)
    for ring, block, buffer in zip(kv.rings, model.blocks, buffers, strict=True):
        assert ring.keys is buffer and ring.window == block.window() and ring.length >= 3 * ring.window
        n = block.persistent.key.shape[1] if block.persistent is not None else 0
        assert ring.n_prefix == (n if batch == 1 else 0) and (ring.shared is not None) == (n > 0 and batch > 1)


@pytest.mark.parametrize("name", ["allattn", "transformer-adaptive"])
def test_incremental_decoding_equals_full_forward(name):
    model = tiny(name).eval()
    x = torch.randint(0, 32, (2, 15))
    full = model(x).logits
    inc, _ = segmented_logits(model, x, 1)
    torch.testing.assert_close(inc, full, rtol=1e-10, atol=1e-10)
    # generate (prompt in segments, then token by token) continues exactly as greedy decoding of the full forward
    out = generate(model, x[:, :5], 6, temperature=0, segment_len=2)
    seq = x[:, :5]
    for _ in range(6):
        nxt = model(seq).logits[:, -1].argmax(-1, keepdim=True)
        seq = torch.cat([seq, nxt], dim=1)
    assert torch.equal(out, seq[:, 5:])


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 2])  # batch 1 takes the compiled row products of memtx.nn.linear
def test_compiled_generation_equals_eager(batch):
    """torch.compile of the per-token step changes nothing but speed: the same greedy tokens while the rings go
    round, and no recompilation per token (an integer index into the ring would be specialised on)."""
    from torch._dynamo.utils import counters

    model = tiny("allattn-adaptive").eval()
    prompt = torch.randint(0, 32, (batch, 5))
    eager = generate(model, prompt, 30, temperature=0, segment_len=4)
    counters.clear()
    assert torch.equal(generate(model, prompt, 30, temperature=0, segment_len=4, compile=True), eager)
    assert counters["stats"]["unique_graphs"] <= 2  # the first call's static graph, then one dynamic one


def test_loss_is_cross_entropy_of_logits():
    model = tiny("allattn")
    x = torch.randint(0, 32, (2, 10))
    logits = model(x[:, :-1]).logits
    manual = -torch.log_softmax(logits, -1).gather(-1, x[:, 1:, None]).mean()
    torch.testing.assert_close(F.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten()), manual)


@pytest.mark.parametrize("memory", ["xl", "rmt", "armt"])
def test_scoring_only_the_targets_rows_gives_the_same_nats_hits_gradients_and_state(memory):
    """scores="targets" (a task's few answers: the head on their rows alone) equals the full head's nats, argmax
    hits and every gradient; scores="none" hands on the same state and computes no head."""
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=32, n_layers=2, d_model=16, n_heads=2, span=6, block="transformer", d_ff=8,
                      n_persistent=0, memory=memory, mem_tokens=0 if memory == "xl" else 2, mem_dim=4)  # fmt: skip
    model = TransformerLM(cfg).double()
    x = torch.randint(0, 32, (3, 7))
    y = torch.full_like(x, -100)
    y[0, 2], y[1, 6], y[2, 0], y[2, 5] = 3, 4, 5, 6
    outs, grads = {}, {}
    for scores in ("all", "targets"):
        model.zero_grad()
        outs[scores] = out = model(x, None, y, scores)
        (out.nll.sum() + sum(t.sum() for t in out.state.to_tensors().values())).backward()
        grads[scores] = [p.grad.clone() for p in model.parameters()]
    assert outs["targets"].logits is None
    torch.testing.assert_close(outs["targets"].nll, outs["all"].nll, rtol=1e-6, atol=1e-7)  # float32 nats
    assert torch.equal(outs["targets"].hits, outs["all"].hits)
    assert torch.equal(outs["all"].hits, (outs["all"].logits.argmax(-1) == y) & (y != -100))
    for a, b in zip(grads["all"], grads["targets"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    bare = model(x, None, scores="none")
    assert bare.logits is None
    for k, v in outs["all"].state.to_tensors().items():
        torch.testing.assert_close(bare.state.to_tensors()[k], v, rtol=0, atol=0)
    for targets, scores in ((None, "targets"), (y, "none"), (y, "some")):
        with pytest.raises(ValueError, match="scores"):
            model(x, None, targets, scores)


def test_adaptive_span_mask_matches_official_formula():
    from memtx.nn.adaptive_span import AdaptiveSpan

    span = AdaptiveSpan(n_heads=2, span=100, ramp=10, init=0.0, loss_coef=2e-6, trim_cache=True)
    with torch.no_grad():
        span.z.copy_(torch.tensor([0.2, 0.5]).view(2, 1, 1))
    m = span.mask(100)
    d = torch.arange(99, -1, -1, dtype=torch.float32)  # column r is distance 99 - r
    expected = ((torch.tensor([0.2, 0.5]).view(2, 1, 1) * 100 - d) / 10 + 1).clamp(0, 1)
    torch.testing.assert_close(m, expected)
    torch.testing.assert_close(span.penalty(), torch.tensor(2e-6 * 100 * 0.35))
    with torch.no_grad():
        span.z.add_(1.0)
    span.clamp_()
    assert torch.all(span.z == 1.0)
    assert span.window() == 100
