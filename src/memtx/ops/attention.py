"""Relative-position attention over a sliding window, with optional extra (persistent) keys/values.

The layout follows the official All-attention / adaptive-span code: scores are kept in *relative* coordinates
(one column per distance inside the span), so the position term ``q . p_d`` is a plain matmul with the shared
position table and the softmax only touches the span. Two index maps move between coordinates:

* ``band_view``: absolute scores (T, W+T) -> relative scores (T, W), a zero-copy strided view;
* ``band_scatter``: relative probabilities (T, W) -> absolute (T, W+T) for the value matmul (zeros, then one
  strided copy through ``band_view``).

The band path (``_BandAttention``) goes block by block: a few batch rows by ``chunk`` queries at a time, it scores
the block, takes the softmax, applies the span mask and dropout and mixes the values before the next block, so no
(B, H, T, W+T) tensor is ever written (on the CPU a block's temporaries stay in the caches), and block ``[a, b)``
scores only keys ``a .. b+W`` (W + b - a of them) rather than all W + T.

Query ``i`` of the segment sits at key index ``W+i`` of ``[window ; segment]`` and attends to key indices
``i+1 .. i+W`` (distances ``W-1 .. 0``: itself and the W-1 tokens before it). Relative column ``r`` is distance
``W-1-r``; the last column is the token itself. The official code excludes the token itself (it attends to the W
tokens *before* it); memtx includes it, so that no query ever has an empty context (the first byte of a stream
with an empty cache) and a segmented pass is exactly a causal band-masked full pass. Compute is the same.

Without any key in the window (no cache: a one-window model, every memory-token segment, a first segment), the
band's first W key columns are all absent: ``_CausalRelative`` then works in absolute coordinates over the segment
alone, (T, T) instead of (T, 2T) key columns (1.5-2.1x faster attention, forward and backward, at T = 128-224),
span and recency masks included (shifted into absolute coordinates like the positions); dropout keeps the band.

The slow, obviously correct twin is ``memtx.memory.reference.reference_attention``.
"""

from __future__ import annotations

import threading

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

RENORM_EPS = 1e-8  # as in the official adaptive-span code
# CPU band blocks: queries per block, and a budget for one block's scores (rows x H x queries x (W + queries + N)
# floats) that keeps it in the caches; measured at the 8x256 shapes (B 16, H 4, T 256, W 512, N 256)
QUERY_BLOCK = 128
BLOCK_BYTES = 6 << 20


def band_view(scores: Tensor, window: int) -> Tensor:
    """(..., T, W+T) contiguous absolute scores -> (..., T, W) view with ``out[i, r] = scores[i, i+1+r]``."""
    *lead, t, s = scores.shape
    if not scores.is_contiguous():
        scores = scores.contiguous()
    stride = list(scores.stride()[:-2]) + [s + 1, 1]
    return scores.as_strided((*lead, t, window), stride, scores.storage_offset() + 1)


def band_scatter(probs: Tensor, scratch: bool = False) -> Tensor:
    """(..., T, W) relative -> (..., T, W+T) absolute with ``out[i, i+1+r] = probs[i, r]``, zeros elsewhere.

    scratch: on CPU, write into this thread's cached buffer of that shape (valid until the next scratch call of the
    same shape), whose off-band zeros stay from its first use: one pass over the band instead of zero-filling the
    whole (T, W+T) each time (memory-bound on CPU). For temporaries consumed at once (a matmul operand)."""
    *lead, t, w = probs.shape
    shape = (*lead, t, w + t)
    if scratch and probs.device.type == "cpu":
        cache = _SCRATCH.__dict__
        key = (shape, probs.dtype)
        out = cache.get(key)
        if out is None:
            if len(cache) >= _SCRATCH_SHAPES:  # e.g. growing segments while generating: keep only the recent ones
                cache.clear()
            out = cache[key] = probs.new_zeros(shape)
    else:
        out = probs.new_zeros(shape)
    band_view(out, w).copy_(probs)
    return out


_SCRATCH = threading.local()  # band_scatter's per-thread buffers, keyed by (shape, dtype)
_SCRATCH_SHAPES = 4


def query_blocks(t: int, chunk: int) -> list[tuple[int, int]]:
    """[a, b) row blocks of at most ``chunk`` queries covering 0 .. t."""
    return [(a, min(a + chunk, t)) for a in range(0, t, max(1, chunk))]


def missing_key_mask(t: int, window: int, n_pad: int, device: torch.device) -> Tensor:
    """(T, W) bool, True where relative column r of query i points at one of the n_pad absent window keys."""
    i = torch.arange(t, device=device).unsqueeze(1)
    r = torch.arange(window, device=device)
    return (i + 1 + r) < n_pad


def relative_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    pos: Tensor,
    *,
    n_pad: int = 0,
    extra_k: Tensor | None = None,
    extra_v: Tensor | None = None,
    span_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    training: bool = False,
    chunk: int = 0,
    group: int = 0,
) -> Tensor:
    """Attention of a segment over ``[window ; segment]`` with relative positions and an optional extra prefix.

    Shapes: q (B, H, T, Dh); k, v (B, H, W+T, Dh) where the first ``n_pad`` window positions are absent
    (masked); pos (Dh, W) position embeddings, column r = distance W-1-r; extra_k, extra_v (H, N, Dh)
    persistent vectors (no position term, same softmax); span_mask (H, 1, W) soft adaptive-span mask in [0, 1]
    that multiplies the context probabilities, which are then renormalised jointly with the persistent ones;
    chunk, group = queries and batch rows per band block (0: chosen for the device; any value gives the same
    result). Returns (B, H, T, Dh).
    """
    if torch.amp.is_autocast_available(q.device.type) and torch.is_autocast_enabled(q.device.type):
        # bf16 autocast: the projections ran in bf16; scores, softmax and the mix stay in fp32
        with torch.autocast(q.device.type, enabled=False):
            f = [x.float() if x is not None else None for x in (q, k, v, pos, extra_k, extra_v, span_mask)]
            return relative_attention(*f[:4], n_pad=n_pad, extra_k=f[4], extra_v=f[5], span_mask=f[6],
                                      dropout_p=dropout_p, training=training, chunk=chunk, group=group)  # fmt: skip
    b, h, t, _ = q.shape
    window = pos.shape[-1]
    if k.shape[-2] != window + t:
        raise ValueError(f"keys cover {k.shape[-2]} positions, expected window {window} + segment {t}")
    q = q * q.shape[-1] ** -0.5  # the softmax temperature, applied to q (T x Dh) rather than the logits (T x W+N)
    if causal_applies(t, window, n_pad, span_mask, dropout_p, training):
        return _CausalRelative.apply(q, k[..., window:, :], v[..., window:, :], pos, extra_k, extra_v, span_mask)
    missing = missing_key_mask(t, window, n_pad, q.device) if n_pad > 0 else None
    n = extra_k.shape[-2] if extra_k is not None else 0
    qblock = chunk or (QUERY_BLOCK if q.device.type == "cpu" else 2 * QUERY_BLOCK)
    group = group or _rows_per_block(b, h, min(qblock, t), window, n, q)
    p = dropout_p if training else 0.0
    # head-major copies, once per layer: every block's slices are then views the batched matmuls read in place
    # (slices of the projections' head-interleaved layout were copied block by block, forward and backward)
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    return _BandAttention.apply(q, k, v, pos, extra_k, extra_v, span_mask, missing, p, group, qblock)


def _rows_per_block(b: int, h: int, qblock: int, window: int, n: int, q: Tensor) -> int:
    """Batch rows per band block: on the CPU as many as keep a block's scores within ``BLOCK_BYTES``; elsewhere
    the whole batch (accelerators want few, large matmuls)."""
    if q.device.type != "cpu":
        return b
    return max(1, min(b, BLOCK_BYTES // (h * qblock * (window + qblock + n) * q.element_size())))


def causal_applies(t: int, window: int, n_pad: int, span_mask: Tensor | None, dropout_p: float, training: bool) -> bool:
    """Whether ``relative_attention`` takes the causal layout: the window holds no key (no cache: a one-window
    model, memory-token segments, a first segment), so the band's first W key columns are all masked; no dropout
    (the band path keeps it); a segment at most twice the window."""
    return n_pad == window and not (dropout_p > 0.0 and training) and t <= 2 * window


def _pad_columns(mask: Tensor, logits: Tensor) -> Tensor:
    """(T, W) mask over the context columns -> (T, W+N) with the persistent columns never masked."""
    return F.pad(mask, (0, logits.shape[-1] - mask.shape[-1]), value=False)


class _BandAttention(torch.autograd.Function):
    """The band path, fused block by block: for ``group`` batch rows and ``qblock`` queries at a time, the
    (rows, H, queries, W + queries) scores, the softmax over [context ; persistent], the span mask, dropout and the
    mix with the values. Nothing of size (B, H, T, W+T) is ever written (the 8x256 training step's peak memory: 2.4
    -> 1.7 GB, at the same speed as whole-tensor passes), and a block needs only keys ``a .. b+W`` (the masked
    triangle scored is ``qblock`` wide, not T). Backward keeps each block's softmax and recomputes the rest."""

    @staticmethod
    def forward(ctx, q, k, v, pos, extra_k, extra_v, span_mask, missing, dropout_p, group, qblock):
        window = pos.shape[-1]
        out = q.new_empty(q.shape)
        n = extra_k.shape[-2] if extra_k is not None else 0
        ext_logits = _per_head(q, extra_k.transpose(-1, -2)) if n else None  # B,H,T,N in one matmul
        kept: list[Tensor] = []  # per block: softmax, then (span renormaliser), (dropout keep mask)
        for rows, a, b in _blocks(q.shape[0], q.shape[-2], group, qblock):
            qb = q[rows, :, a:b]
            logits = q.new_empty(*qb.shape[:-1], window + n)  # rows,H,t,W+N
            ctx_logits = logits[..., :window]
            torch.mm(qb.reshape(-1, qb.shape[-1]), pos, out=logits.view(-1, logits.shape[-1])[:, :window])
            ctx_logits += band_view(torch.matmul(qb, k[rows, :, a : b + window].transpose(-1, -2)), window)
            if missing is not None:
                ctx_logits.masked_fill_(missing[a:b], float("-inf"))
            if n:
                logits[..., window:] = ext_logits[rows, :, a:b]
            p = torch.softmax(logits, dim=-1)
            kept.append(p)
            weights = p
            if span_mask is not None:
                weights, total = _span_weights(p, span_mask, window)
                kept.append(total)
            if dropout_p > 0.0:
                keep = torch.empty_like(weights, dtype=torch.bool).bernoulli_(1.0 - dropout_p)
                weights = weights * keep / (1.0 - dropout_p)
                kept.append(keep)
            o = torch.matmul(band_scatter(weights[..., :window], scratch=True), v[rows, :, a : b + window])
            if extra_v is not None:
                o += torch.matmul(weights[..., window:], extra_v)  # a block's few rows: broadcasting is cheap
            out[rows, :, a:b] = o
        ctx.setup = (missing, dropout_p, group, qblock)
        ctx.save_for_backward(q, k, v, pos, extra_k, extra_v, span_mask, *kept)
        return out

    @staticmethod
    @once_differentiable  # its band_scatter scratch buffers are not autograd-safe
    def backward(ctx, grad):
        q, k, v, pos, extra_k, extra_v, span_mask, *kept = ctx.saved_tensors
        missing, dropout_p, group, qblock = ctx.setup
        window = pos.shape[-1]
        dq, dk, dv, dpos = torch.empty_like(q), torch.zeros_like(k), torch.zeros_like(v), torch.zeros_like(pos)
        dext_k = torch.zeros_like(extra_k) if extra_k is not None else None
        dext_v = torch.zeros_like(extra_v) if extra_v is not None else None
        dspan = torch.zeros_like(span_mask) if span_mask is not None else None
        n = extra_v.shape[-2] if extra_v is not None else 0
        ext_grad = _per_head(grad, extra_v.transpose(-1, -2)) if n else None  # B,H,T,N in one matmul
        saved = iter(kept)
        for rows, a, b in _blocks(q.shape[0], q.shape[-2], group, qblock):
            p = next(saved)
            weights = normalised = p
            if span_mask is not None:
                total = next(saved)
                weights = normalised = _span_weights(p, span_mask, window, total)[0]
            if dropout_p > 0.0:
                keep = next(saved)
                weights = normalised * keep / (1.0 - dropout_p)
            g, qb = grad[rows, :, a:b], q[rows, :, a:b]
            keys, values = k[rows, :, a : b + window], v[rows, :, a : b + window]
            dw = q.new_empty(weights.shape)  # d weights
            dw[..., :window] = band_view(torch.matmul(g, values.transpose(-1, -2)), window)
            if n:
                dw[..., window:] = ext_grad[rows, :, a:b]
            dv[rows, :, a : b + window] += torch.matmul(band_scatter(weights[..., :window], scratch=True).mT, g)
            if dext_v is not None:
                dext_v += torch.matmul(weights[..., window:].mT, g).sum(0)
            if dropout_p > 0.0:
                dw = dw * keep / (1.0 - dropout_p)
            if span_mask is not None:  # weights = [p_ctx * m ; p_ext] / total
                dw = (dw - (dw * normalised).sum(-1, keepdim=True)) / total
                dspan += (dw[..., :window] * p[..., :window]).sum((0, 2)).unsqueeze(1)
                dw[..., :window] *= span_mask
            dlogits = torch._softmax_backward_data(dw, p, -1, p.dtype)
            d_ctx = dlogits[..., :window]
            d_rows = dlogits.view(-1, dlogits.shape[-1])[:, :window]  # the same as rows of a matrix, no copy
            d_abs = band_scatter(d_ctx, scratch=True)  # rows,H,t,W+t
            dq_b = torch.matmul(d_abs, keys)
            dk[rows, :, a : b + window] += torch.matmul(d_abs.mT, qb)
            dq_b += (d_rows @ pos.transpose(0, 1)).view(dq_b.shape)
            dpos += qb.reshape(-1, qb.shape[-1]).transpose(0, 1) @ d_rows
            if dext_k is not None:
                d_ext = dlogits[..., window:]
                dq_b += torch.matmul(d_ext, extra_k)
                dext_k += torch.matmul(d_ext.mT, qb).sum(0)
            dq[rows, :, a:b] = dq_b
        return dq, dk, dv, dpos, dext_k, dext_v, dspan, None, None, None, None


def _span_weights(p: Tensor, span_mask: Tensor, window: int, total: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """[p_ctx * span_mask ; p_ext] renormalised jointly, and the normaliser (rows, H, t, 1)."""
    masked = p.clone()
    masked[..., :window] *= span_mask
    if total is None:
        total = masked.sum(-1, keepdim=True) + RENORM_EPS
    return masked / total, total


def _blocks(batch: int, t: int, group: int, qblock: int) -> list[tuple[slice, int, int]]:
    """(batch rows, first query, end query) of each block: ``group`` rows by ``qblock`` queries."""
    return [(slice(r, r + group), a, b) for r in range(0, batch, group) for a, b in query_blocks(t, qblock)]


class _CausalRelative(torch.autograd.Function):
    """Relative attention of a segment over itself alone (and the persistent vectors), in absolute coordinates:
    (T, T+N) logits ``q.k + q.p_(i-j)``, the causal band mask, one softmax, (the span mask times the context
    probabilities, renormalised jointly with the persistent ones, as in the band path), probs times ``[v ;
    persistent v]``, where the band layout would compute (T, 2T) key columns, half of them absent. The position
    term is one matmul with the table padded to T+1 columns (column c = distance T-c), whose (T, T+1) result read as
    (T+1, T) rows 1..T is the term in absolute coordinates (Transformer-XL's relative shift, here a view, not a
    copy); the span mask takes the same shift."""

    @staticmethod
    def forward(ctx, q, k, v, pos, extra_k, extra_v, span_mask):
        *lead, t, _ = q.shape
        window = pos.shape[-1]
        pos_pad = F.pad(pos, (t + 1 - window, 0))  # distances >= window: zero (masked); a window > T+1: cropped
        shifted = torch.matmul(q, pos_pad).view(*lead, t + 1, t)[..., 1:, :]  # [i, j] = q_i . p_(i-j)
        if extra_k is not None:
            k = torch.cat([k, extra_k.expand(*lead, -1, -1)], dim=-2)
            v = torch.cat([v, extra_v.expand(*lead, -1, -1)], dim=-2)
        logits = torch.matmul(q, k.transpose(-1, -2))
        logits[..., :t] += shifted
        logits[..., :t].masked_fill_(_causal_band_mask(t, window, q.device), float("-inf"))  # persistent: never
        probs = torch.softmax(logits, dim=-1)
        weights, total = probs, None
        if span_mask is not None:  # [p_ctx * mask ; p_ext] / total, as _span_weights does in relative columns
            weights = probs.clone()
            weights[..., :t] *= _absolute(span_mask, t)
            total = weights.sum(-1, keepdim=True) + RENORM_EPS
            weights /= total
        ctx.window = window
        ctx.save_for_backward(q, k, v, pos_pad, probs, span_mask, total)
        return torch.matmul(weights, v)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        q, k, v, pos_pad, probs, span_mask, total = ctx.saved_tensors
        *lead, t, dh = q.shape
        dw = torch.matmul(grad, v.transpose(-1, -2))
        dspan = None
        if span_mask is None:
            dv = torch.matmul(probs.transpose(-1, -2), grad)
        else:
            mask = _absolute(span_mask, t)
            normalised = probs.clone()
            normalised[..., :t] *= mask
            normalised /= total
            dv = torch.matmul(normalised.transpose(-1, -2), grad)
            dw = (dw - (dw * normalised).sum(-1, keepdim=True)) / total
            dspan = _relative_sum((dw[..., :t] * probs[..., :t]).flatten(0, -4).sum(0), ctx.window)
            dw[..., :t] *= mask
        dlogits = torch._softmax_backward_data(dw, probs, -1, probs.dtype)
        dq = torch.matmul(dlogits, k)
        dk = torch.matmul(dlogits.transpose(-1, -2), q)
        dshift = dlogits.new_empty(*lead, t + 1, t)  # the gradient of the (T, T+1) position term, read as rows
        dshift[..., 0, :] = 0
        dshift[..., 1:, :] = dlogits[..., :t]
        dshift = dshift.view(*lead, t, t + 1)
        dq += torch.matmul(dshift, pos_pad.transpose(0, 1))
        dpos = torch.matmul(q.reshape(-1, dh).transpose(0, 1), dshift.reshape(-1, t + 1))
        dpos = F.pad(dpos, (ctx.window - t - 1, 0))  # back to the table's W columns
        dextra_k = dextra_v = None
        if k.shape[-2] > t:  # persistent vectors: their gradient summed over the batch
            dextra_k = dk[..., t:, :].flatten(0, -4).sum(0)
            dextra_v = dv[..., t:, :].flatten(0, -4).sum(0)
            dk, dv = dk[..., :t, :], dv[..., :t, :]
        return dq, dk, dv, dpos, dextra_k, dextra_v, dspan


def _absolute(span_mask: Tensor, t: int) -> Tensor:
    """(H, 1, W) mask over relative columns (last = distance 0) -> (H, T, T) with ``[h, i, j]`` = the column of
    distance i - j for j <= i (by the relative shift of ``_CausalRelative``; above the diagonal: any finite value,
    where the probabilities are 0); distances past the table: 0."""
    h = span_mask.shape[0]
    padded = F.pad(span_mask, (t + 1 - span_mask.shape[-1], 0)).expand(h, t, t + 1).contiguous()
    return padded.view(h, t + 1, t)[:, 1:]


def _relative_sum(d_abs: Tensor, window: int) -> Tensor:
    """The gradient of ``_absolute``: (H, T, T) absolute-coordinate gradients (0 above the diagonal) summed per
    distance -> (H, 1, W)."""
    h, t, _ = d_abs.shape
    rows = d_abs.new_zeros(h, t + 1, t)
    rows[:, 1:] = d_abs
    return F.pad(rows.view(h, t, t + 1).sum(1), (window - t - 1, 0)).unsqueeze(1)


def _causal_band_mask(t: int, window: int, device: torch.device) -> Tensor:
    """(T, T) bool, True where query i may not see key j (j > i or i - j >= window)."""
    i = torch.arange(t, device=device).unsqueeze(1)
    j = torch.arange(t, device=device)
    return (j > i) | (i - j >= window)


def relative_attention_step(
    q: Tensor,
    keys: Tensor,
    values: Tensor,
    pos2: Tensor,
    n_prefix: int,
    filled: int,
    newest: int,
    span2: Tensor | None = None,
    extra_k: Tensor | None = None,
    extra_v: Tensor | None = None,
) -> Tensor:
    """``relative_attention`` for one new position per stream (generation), over a ring of keys: no index maps,
    no copy of the window, three matmuls and a softmax.

    q (B, H, Dh), already multiplied by 1/sqrt(Dh); keys, values (B, H, N + W, Dh): N prefix (persistent)
    positions, then W ring slots of which 0 .. filled-1 hold keys and ``newest`` is the query's own (slot s is at
    distance (newest - s) mod W); pos2 (Dh, 2W) the position table twice side by side, so that the columns of
    the slots in ring order are one slice; span2 (H, 1, 2W) the span mask likewise, or None; extra_k, extra_v
    (H, N, Dh) a prefix shared by the batch rather than copied into each row's keys (read once for all rows: at
    batch 16 the copies would be a third of the bytes each token reads). Returns (B, H, Dh).
    """
    b, h, dh = q.shape
    first = pos2.shape[1] // 2 - 1 - newest  # column of slot 0: distance newest (mod W) is column W-1-newest
    end = n_prefix + filled
    q3 = q.reshape(b * h, 1, dh)
    logits = torch.bmm(q3, keys.view(b * h, -1, dh)[:, :end].transpose(1, 2))  # BH,1,N+filled
    logits[:, 0, n_prefix:] += torch.mm(q3.view(b * h, dh), pos2[:, first : first + filled])
    if extra_k is not None:
        shared = _per_head(q.unsqueeze(2), extra_k.transpose(-1, -2)).reshape(b * h, 1, -1)
        logits = torch.cat([logits, shared], dim=-1)
    probs = torch.softmax(logits, dim=-1)
    if span2 is not None:  # the context part times the span mask, renormalised jointly with the prefix
        probs.view(b, h, 1, -1)[..., n_prefix:end] *= span2[..., first : first + filled]
        probs = probs / (probs.sum(-1, keepdim=True) + RENORM_EPS)
    out = torch.bmm(probs[..., :end], values.view(b * h, -1, dh)[:, :end]).view(b, h, dh)
    if extra_v is not None:
        out = out + _per_head(probs[..., end:].view(b, h, 1, -1), extra_v).view(b, h, dh)
    return out


def smear_keys(k: Tensor, mix: Tensor, n_pad: int = 0) -> Tensor:
    """Smeared keys (Olsson et al. 2022): key j of head h becomes s k_j + (1 - s) k_{j-1}, s = sigmoid(mix[h]).

    k (B, H, S, Dh) the keys of ``[window ; segment]`` whose first n_pad positions are absent; mix (H, 1, 1). The
    first present key's predecessor is zero (nothing came before it). Key 0 has no predecessor here, but no query
    of the segment reads it (query i sees keys i+1 .. i+W), so the smeared keys the attention reads are exact."""
    previous = F.pad(k[:, :, :-1], (0, 0, 1, 0))
    if n_pad:
        previous[:, :, : n_pad + 1] = 0.0
    return torch.lerp(previous, k, torch.sigmoid(mix).to(k.dtype))  # bf16 keys under autocast: mix in their dtype


def doubled(table: Tensor) -> Tensor:
    """(..., W) -> (..., 2W) = [table, table]: any W consecutive columns are the table rotated."""
    return torch.cat([table, table], dim=-1)


def _per_head(x: Tensor, w: Tensor) -> Tensor:
    """x (B, H, T, a) @ w (H, a, b) -> (B, H, T, b) as H matmuls of (B*T, a) rows: broadcasting w over the batch
    would copy it B times (8 MB per layer and token for the persistent vectors at B=16; 1.5x faster eager batch-16
    generation without the copy)."""
    b, h, t, _ = x.shape
    return torch.matmul(x.transpose(0, 1).reshape(h, b * t, -1), w).view(h, b, t, -1).transpose(0, 1)
