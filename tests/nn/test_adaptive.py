import copy
import math

import pytest
import torch
import torch.nn.functional as F

from memtx.nn.adaptive import (
    TRANSFORMER_XL_WT103_CUTOFFS,
    WIKITEXT103_CUTOFFS,
    WIKITEXT103_VOCAB_SIZE,
    AdaptiveHead,
    AdaptiveInput,
    band_widths,
)

V, D, CUTOFFS = 40, 16, (8, 20)  # bands [0, 8) [8, 20) [20, 40), widths 16, 4, 1
B, T = 3, 5


def tied_pair(tie_projections: bool = True, dropout: float = 0.0) -> tuple[AdaptiveInput, AdaptiveHead]:
    torch.manual_seed(0)
    inp = AdaptiveInput(V, D, CUTOFFS)
    return inp, AdaptiveHead(D, V, CUTOFFS, tie_to=inp, tie_projections=tie_projections, dropout=dropout)


def make_head(tied: bool) -> AdaptiveHead:
    if tied:
        return tied_pair()[1]
    torch.manual_seed(0)
    return AdaptiveHead(D, V, CUTOFFS)


def every_target(n_rows: int = 2) -> torch.Tensor:
    """(n_rows, V): every word of every band as a target."""
    return torch.arange(V).repeat(n_rows, 1)


def reference_log_prob(h: torch.Tensor, head_w: torch.Tensor, tails: list[tuple[torch.Tensor, torch.Tensor]]):
    """Slow twin: the two-level softmax written out from weight matrices. h (N, D) -> (N, V)."""
    bounds = (0, *CUTOFFS, V)
    head = torch.log_softmax(h @ head_w.T, dim=-1)  # (N, cutoffs[0] + n_clusters)
    cols = [head[:, : bounds[1]]]
    for i, (down, out) in enumerate(tails):  # down (d_b, D), out (V_b, d_b)
        cols.append(head[:, bounds[1] + i, None] + torch.log_softmax(h @ down.T @ out.T, dim=-1))
    return torch.cat(cols, dim=1)


def head_weights(head: AdaptiveHead) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
    return head.asm.head.weight, [(tail[0].weight, tail[-1].weight) for tail in head.asm.tail]


# ---------------------------------------------------------------------------------------------- input


def test_wikitext103_constants() -> None:
    assert WIKITEXT103_VOCAB_SIZE == 267_735
    assert WIKITEXT103_CUTOFFS == (20_000, 60_000)  # bands of 20K, 40K, ~208K (fairseq transformer_lm_wiki103)
    assert TRANSFORMER_XL_WT103_CUTOFFS == (20_000, 40_000, 200_000)
    assert band_widths(512, 3, 4.0) == (512, 128, 32)


def test_input_shapes_and_band_formula() -> None:
    inp = AdaptiveInput(V, D, CUTOFFS)
    assert inp.widths == (16, 4, 1)
    assert [e.weight.shape for e in inp.embeddings] == [(8, 16), (12, 4), (20, 1)]
    assert [p.shape for p in inp.projections] == [(16, D), (4, D), (1, D)]
    tokens = torch.tensor([[0, 7, 8, 19], [20, 39, 3, 25]])
    out = inp(tokens)
    assert out.shape == (2, 4, D)
    for b, lo in enumerate((0, 8, 20)):
        for r, c in zip(*torch.nonzero((tokens >= lo) & (tokens < (8, 20, 40)[b]), as_tuple=True)):
            expected = inp.embeddings[b].weight[tokens[r, c] - lo] @ inp.projections[b] * math.sqrt(D)
            torch.testing.assert_close(out[r, c], expected)
    unscaled = AdaptiveInput(V, D, CUTOFFS, scale=False)
    unscaled.load_state_dict(inp.state_dict())
    torch.testing.assert_close(unscaled(tokens) * math.sqrt(D), out)


def test_input_rejects_out_of_range_ids() -> None:
    inp = AdaptiveInput(V, D, CUTOFFS)
    for bad in (-1, V):
        with pytest.raises(IndexError):
            inp(torch.tensor([1, bad]))


def test_input_init_and_grads() -> None:
    torch.manual_seed(0)
    inp = AdaptiveInput(1000, 64, (100, 400))
    for emb in inp.embeddings:
        assert abs(emb.weight.std().item() - emb.embedding_dim**-0.5) < 0.1 * emb.embedding_dim**-0.5
    tokens = torch.tensor([5, 150, 900])  # one token per band
    inp(tokens).sum().backward()
    for emb, proj in zip(inp.embeddings, inp.projections):
        assert emb.weight.grad.abs().sum() > 0 and proj.grad.abs().sum() > 0


@pytest.mark.parametrize("bad", [(), (20, 8), (8, 8), (0, 8), (8, V)])
def test_bad_cutoffs(bad) -> None:
    with pytest.raises(ValueError, match="cutoffs"):
        AdaptiveInput(V, D, bad)
    with pytest.raises(ValueError, match="cutoffs"):
        AdaptiveHead(D, V, bad)


# ---------------------------------------------------------------------------------------------- head


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_log_prob_normalised_and_equals_slow_twin(tied: bool) -> None:
    head = make_head(tied)
    h = torch.randn(B, T, D)
    lp = head.log_prob(h)
    assert lp.shape == (B, T, V)
    torch.testing.assert_close(lp.logsumexp(-1), torch.zeros(B, T), atol=1e-5, rtol=0)
    torch.testing.assert_close(lp.reshape(-1, V), reference_log_prob(h.reshape(-1, D), *head_weights(head)))


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_nll_consistent_with_log_prob_and_cross_entropy(tied: bool) -> None:
    head = make_head(tied)
    h = torch.randn(2, V, D)
    target = every_target()
    nll = head.nll(h, target)
    assert nll.shape == (2, V) and (nll > 0).all()
    lp = head.log_prob(h)
    torch.testing.assert_close(nll, -lp.gather(-1, target[..., None]).squeeze(-1))
    # A full softmax over the head's log-probs (a proper distribution) gives the same cross-entropy.
    ce = F.cross_entropy(lp.reshape(-1, V), target.reshape(-1), reduction="none")
    torch.testing.assert_close(nll.reshape(-1), ce)
    torch.testing.assert_close(head(h, target), nll)
    one = head.nll(h[:1, 30], target[:1, 30])  # a single row in a tail cluster
    torch.testing.assert_close(one, nll[:1, 30])


def test_ignore_index() -> None:
    head = make_head(tied=False)
    h = torch.randn(2, V, D, requires_grad=True)
    target = every_target()
    ignored = torch.zeros_like(target, dtype=torch.bool)
    ignored[0, ::3] = True
    ignored[1, 25:] = True
    masked = target.masked_fill(ignored, -100)
    nll = head.nll(h, masked)
    assert (nll[ignored] == 0).all()
    torch.testing.assert_close(nll[~ignored], head.nll(h, target)[~ignored])
    ce = F.cross_entropy(head.log_prob(h).reshape(-1, V), masked.reshape(-1), reduction="sum")
    torch.testing.assert_close(nll.sum(), ce)
    nll.sum().backward()
    assert (h.grad[ignored] == 0).all() and (h.grad[~ignored].abs().sum(-1) > 0).all()
    everything_ignored = head.nll(h, torch.full_like(target, -100))
    assert (everything_ignored == 0).all() and everything_ignored.requires_grad


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_gradients_reach_every_parameter(tied: bool) -> None:
    if tied:
        inp, head = tied_pair()
        model = torch.nn.ModuleDict({"inp": inp, "head": head})
        tokens = torch.arange(V).repeat(2, 1)
        loss = head.nll(inp(tokens), every_target().roll(1, dims=1)).mean()
    else:
        model = head = make_head(tied=False)
        loss = head.nll(torch.randn(2, V, D), every_target()).mean()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_tied_head_shares_the_input_storage() -> None:
    inp, head = tied_pair()
    head_w, tails = head_weights(head)
    assert head_w[:8].data_ptr() != inp.embeddings[0].weight.data_ptr()  # cat() copies; the values are the input's
    torch.testing.assert_close(head_w[:8], inp.embeddings[0].weight)
    for i, (down, out) in enumerate(tails):
        assert out is inp.embeddings[i + 1].weight
        assert down is inp.projections[i + 1]  # (d_b, D): input e @ P, softmax h @ P.T
    # Registered once, in the input: the head owns only the cluster logits' weights.
    assert list(head.state_dict()) == ["asm.head.cluster_weight"]
    model = torch.nn.ModuleDict({"inp": inp, "head": head})
    ptrs = [t.data_ptr() for t in model.state_dict().values()]
    assert len(ptrs) == len(set(ptrs))  # no shared tensors: safetensors save_file accepts the state dict
    n_input = sum(p.numel() for p in inp.parameters())
    assert sum(p.numel() for p in model.parameters()) == n_input + 2 * D
    with torch.no_grad():  # an update of the input is what the head sees
        inp.embeddings[2].weight.add_(1.0)
    torch.testing.assert_close(head_weights(head)[1][1][1], inp.embeddings[2].weight)


def test_tied_embeddings_only() -> None:
    inp, head = tied_pair(tie_projections=False)
    _, tails = head_weights(head)
    assert all(out is inp.embeddings[i + 1].weight for i, (_, out) in enumerate(tails))
    assert all(down is not inp.projections[i + 1] for i, (down, _) in enumerate(tails))
    assert sorted(head.state_dict()) == ["asm.head.cluster_weight", "asm.tail.0.0.weight", "asm.tail.1.0.weight"]


def test_tie_survives_deepcopy() -> None:
    inp, head = tied_pair()
    copied = copy.deepcopy(torch.nn.ModuleDict({"inp": inp, "head": head}))
    assert copied["head"].asm.tail[0][-1].weight is copied["inp"].embeddings[1].weight
    assert copied["head"].asm.tail[0][-1].weight is not inp.embeddings[1].weight


def test_tie_must_match() -> None:
    inp = AdaptiveInput(V, D, CUTOFFS)
    with pytest.raises(ValueError, match="must match"):
        AdaptiveHead(D, V, (8, 21), tie_to=inp)


def test_tail_dropout_only_in_training() -> None:
    _, head = tied_pair(dropout=0.5)
    h, target = torch.randn(4, D), torch.tensor([1, 10, 30, 39])
    head.eval()
    torch.testing.assert_close(head.nll(h, target), head.nll(h, target))
    head.train()
    torch.manual_seed(1)
    a = head.nll(h, target)
    assert not torch.equal(a[1:], head.nll(h, target)[1:])  # tail words change, the shortlist word does not
    torch.testing.assert_close(a[0], head.nll(h, target)[0])


def test_autocast_keeps_float32_log_probs() -> None:
    inp, head = tied_pair()
    tokens, target = torch.arange(V).repeat(2, 1), every_target()
    exact = head.nll(inp(tokens), target)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = inp(tokens)
        nll = head.nll(h, target)
        lp = head.log_prob(h)
    assert h.dtype == torch.bfloat16 and nll.dtype == torch.float32 and lp.dtype == torch.float32
    torch.testing.assert_close(nll, exact, atol=0.1, rtol=0.02)
