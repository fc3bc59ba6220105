"""Fast selective scan in plain PyTorch: chunks of bounded decay, closed form inside each chunk.

Inside a chunk [s, e) the recurrence has the closed form

    h_t = P_t * ( exp(A R) h_{s-1} + sum_{s<=r<=t} b_r / P_r ),   P_t = exp(A (S_t - R))

with S_t = sum_{s<=r<=t} delta_r, b_r = delta_r u_r B_r and any reference R: one
exponential per state element (the floor), a cumulative sum and a few element-wise
products, all vectorised over (batch, channels, state, chunk). Dividing by P_r is exact but
overflows when the decay inside a chunk is large, so the decay is bounded: every exponent
|A (S_t - R)| stays below ``max_decay`` (e^60 ~ 1e26 fits float32 with room for the drive
and the sum).

Two implementations of that closed form:

* Inference (no autograd needed: ``torch.no_grad``/``inference_mode`` or no input requiring
  grad). Fixed chunks of ``chunk`` steps (default 32) with R at the middle of each chunk's
  decay, processed a block of chunks at a time (about 2^20 state elements, sized for the
  caches) in preallocated buffers with in-place ops, ``exp2`` (the fastest exponential in
  PyTorch's CPU kernels) and one cumulative sum along the contiguous chunk axis. The state
  is carried from chunk to chunk by h_k = exp(A sum_k delta) h_{k-1} + P_end (sum_k b/P), one
  small fused op per chunk. Chunks whose decay span exceeds 2 * ``max_decay`` (checked for
  all chunks of a stretch at once) are re-run with half the chunk length, down to single
  steps, which are always exact.
* Autograd (training on CPU): chunks cut adaptively where the accumulated worst-case decay
  max_{d,n} |A_dn| sum delta reaches ``max_decay`` (R at the chunk start), stepped in Python,
  differentiated by autograd; ``exp(-cum)`` instead of a division so the backward does not
  square P. The Triton kernels have their own backward.
"""
from __future__ import annotations

import math
import threading
from typing import Optional, Tuple

import torch
from torch import Tensor

from diffmf.ops.dispatch import needs_grad
from diffmf.ops.scan_ref import prepare_delta

MAX_DECAY: float = 60.0
_TARGET_ELEMENTS: int = 1 << 18  # autograd path: per-chunk working set (floats), sized for L2 cache
INFERENCE_CHUNK: int = 32  # inference path: steps per chunk
_BLOCK_ELEMENTS: int = 1 << 20  # inference path: state elements (B*G*D*N*positions) per block
_BLOCK_ELEMENTS_1T: int = 1 << 19  # the same for a scan running on one thread (one core's caches)
_SUPER_BLOCKS: int = 32  # inference path: blocks whose per-position work is prepared together (a stretch)
_LOG2E: float = 1.0 / math.log(2.0)


def _compute_dtype(*tensors: Tensor) -> torch.dtype:
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def selective_scan_torch(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Optional[Tensor] = None,
    delta_bias: Optional[Tensor] = None,
    delta_softplus: bool = True,
    return_last_state: bool = False,
    chunk: Optional[int] = None,
    max_decay: float = MAX_DECAY,
):
    """Same contract and result as :func:`diffmf.ops.scan_ref.selective_scan_ref`, fast.

    Shapes: u, delta (B, G*D, L); A (G*D, N); B, C (B, G, N, L); D, delta_bias (G*D,).
    Computes in float32 (float64 if any input is float64); returns y (B, G*D, L).
    Without autograd (no grad mode, or no input requiring grad) runs the inference path.
    """
    if needs_grad(u, delta, A, B, C, D, delta_bias):
        return _scan_autograd(u, delta, A, B, C, D, delta_bias, delta_softplus, return_last_state, chunk, max_decay)
    return _scan_inference(u, delta, A, B, C, D, delta_bias, delta_softplus, return_last_state, chunk, max_decay)


# ----------------------------------------------------------------------------- inference path


_SCRATCH = threading.local()


def scratch(name: str, shape: Tuple[int, ...], like: Tensor) -> Tensor:
    """A reusable buffer of ``shape`` (dtype and device of ``like``), uninitialised.

    Buffers are kept per thread and per name and grown on demand, so repeated scans reuse
    their memory instead of faulting in fresh pages each call. Never hand one to a caller:
    the next scan overwrites it. :func:`clear_scratch` releases them.
    """
    pool = getattr(_SCRATCH, "pool", None)
    if pool is None:
        pool = _SCRATCH.pool = {}
    key = (name, like.dtype, like.device)
    numel = math.prod(shape)
    buf = pool.get(key)
    if buf is None or buf.numel() < numel:
        pool[key] = None  # free the old one first
        with torch.inference_mode(False):  # a normal tensor: usable in and out of inference mode
            buf = pool[key] = torch.empty(max(numel, 1), dtype=like.dtype, device=like.device)
    return buf[:numel].view(shape)


def clear_scratch() -> None:
    """Release the buffers kept by :func:`scratch` in this thread."""
    _SCRATCH.pool = {}


class _Workspace:
    """Named scratch buffers of one recursion level."""

    def __init__(self, like: Tensor, depth: int) -> None:
        self.like, self.prefix = like, f"scan{depth}."

    def get(self, name: str, shape: Tuple[int, ...]) -> Tensor:
        return scratch(self.prefix + name, shape, self.like)


class InferenceScan:
    """No-grad chunked scan over (B, G, D, L)-shaped stretches, the state carried between calls.

    ``scan(raw_delta, u, B, C, h, y)`` scans one stretch: raw_delta, u, y (B, G, D, Ls) and
    B, C (B, G, N, Ls), each with a contiguous last dimension (views are fine); writes
    y = C . h (without the D skip) and returns the state after the stretch (B, G, D, N), a
    view into a workspace valid until the next call. Call it on consecutive stretches in
    order; the 1-D op and the fused 2-D cross-scan both feed it.
    """

    def __init__(
        self,
        A: Tensor,
        groups: int,
        batch: int,
        delta_bias: Optional[Tensor],
        delta_softplus: bool,
        chunk: Optional[int] = None,
        max_decay: float = MAX_DECAY,
        block_elements: Optional[int] = None,
    ) -> None:
        gd, n = A.shape
        g, d = groups, gd // groups
        self.g, self.d, self.n, self.batch = g, d, n, batch
        self.A2 = (A * _LOG2E).view(g, d, n)  # exp(A x) = exp2(A2 x)
        self.A2_6 = self.A2.view(1, g, d, n, 1, 1)
        self.amax = A.abs().amax(1).view(1, g, d, 1)
        self.bias = None if delta_bias is None else delta_bias.to(A.dtype).view(1, g, d, 1)
        self.softplus = delta_softplus
        self.chunk = max(1, int(chunk or INFERENCE_CHUNK))
        self.bound = 2.0 * max_decay  # span allowed with the reference in the middle
        per_position = batch * g * d * n
        elements = block_elements or _BLOCK_ELEMENTS
        self.block = max(self.chunk, elements // max(1, per_position) // self.chunk * self.chunk)
        self.stretch = self.block * _SUPER_BLOCKS  # preferred stretch length for callers
        self._levels: list = []

    def _ws(self, depth: int, like: Tensor) -> _Workspace:
        while len(self._levels) <= depth:
            self._levels.append(_Workspace(like, len(self._levels)))
        return self._levels[depth]

    def scan(self, raw: Tensor, u: Tensor, B: Tensor, C: Tensor, h: Tensor, y: Tensor, chunk: Optional[int] = None, depth: int = 0) -> Tensor:
        t = chunk or self.chunk
        length = raw.shape[-1]
        full = length - length % t
        if full:
            h = self._aligned(raw[..., :full], u[..., :full], B[..., :full], C[..., :full], h, y[..., :full], t, depth)
        if full < length:  # the tail: one chunk of its own length
            s = slice(full, length)
            h = self._aligned(raw[..., s], u[..., s], B[..., s], C[..., s], h, y[..., s], length - full, depth)
        return h

    def _aligned(self, raw: Tensor, u: Tensor, B: Tensor, C: Tensor, h: Tensor, y: Tensor, t: int, depth: int) -> Tensor:
        """A stretch whose length is a multiple of the chunk length t."""
        ws = self._ws(depth, raw)
        bt, g, d, length = raw.shape
        n, chunks = self.n, length // t
        shape4 = (bt, g, d, chunks, t)
        # per-position work for the whole stretch: delta, delta*u, within-chunk sums of delta
        dl = ws.get("dl", (bt, g, d, length))
        if self.bias is not None:
            torch.add(raw, self.bias, out=dl)
        else:
            dl.copy_(raw)
        if self.softplus:
            torch.ops.aten.softplus.out(dl, 1, 20, out=dl)
        dl4 = dl.view(shape4)
        S = ws.get("S", shape4)
        torch.cumsum(dl4, -1, out=S)
        first = dl4[..., 0]
        end = ws.get("end", (bt, g, d, chunks))
        end.copy_(S[..., -1])
        R = ws.get("R", (bt, g, d, chunks))
        torch.add(end, first, out=R)
        R.mul_(0.5)  # reference in the middle of each chunk's decay
        bad: set = set()
        if t > 1:  # the decay bound, checked for every chunk of the stretch at once
            span = torch.sub(end, first).mul_(self.amax)  # max_n |A| * (decay after the first step)
            over = span.amax(dim=(0, 1, 2)) > self.bound
            if bool(over.any()):
                bad = set(over.nonzero().flatten().tolist())
        S.sub_(R.unsqueeze(-1))
        du = ws.get("du", shape4)
        torch.mul(dl4, u.view(shape4), out=du)
        E = ws.get("E", (chunks, bt, g, d, n))  # exp(A * sum of delta over the chunk)
        torch.mul(end.permute(3, 0, 1, 2).unsqueeze(-1), self.A2, out=E)
        E.exp2_()
        G = ws.get("G", (chunks, bt, g, d, n))  # exp(A R): carry factor into the chunk
        torch.mul(R.permute(3, 0, 1, 2).unsqueeze(-1), self.A2, out=G)
        G.exp2_()
        Pend = ws.get("Pend", (chunks, bt, g, d, n))  # P at the chunk's last step
        torch.mul((end - R).permute(3, 0, 1, 2).unsqueeze(-1), self.A2, out=Pend)
        Pend.exp2_()
        per_block = max(1, self.block // t)
        for m0 in range(0, chunks, per_block):
            m1 = min(chunks, m0 + per_block)
            s = slice(m0 * t, m1 * t)
            if bad and not bad.isdisjoint(range(m0, m1)):  # re-run with shorter chunks
                h = self.scan(raw[..., s], u[..., s], B[..., s], C[..., s], h, y[..., s], t // 2, depth + 1)
                continue
            m = m1 - m0
            h = self._block(
                S[..., m0:m1, :], du[..., m0:m1, :], B[..., s].view(bt, g, n, m, t), C[..., s].view(bt, g, n, m, t),
                E[m0:m1], G[m0:m1], Pend[m0:m1], h, y[..., s].view(bt, g, d, m, t), ws,
            )
        return h

    def _block(
        self, S: Tensor, du: Tensor, Bv: Tensor, Cv: Tensor, E: Tensor, G: Tensor, Pend: Tensor, h: Tensor, yv: Tensor, ws: _Workspace
    ) -> Tensor:
        bt, g, d, m, t = S.shape
        n = self.n
        shape6 = (bt, g, d, n, m, t)
        X = ws.get("X", shape6)
        torch.mul(S.unsqueeze(3), self.A2_6, out=X)
        X.exp2_()  # P = exp(A (S - R))
        W = ws.get("W", shape6)
        torch.mul(du.unsqueeze(3), Bv.unsqueeze(2), out=W)
        W.div_(X)  # b / P
        W.cumsum_(-1)  # sum_{r<=t} b_r / P_r within each chunk
        # chunk to chunk: h_k = E_k h_{k-1} + P_end,k * (sum over chunk k of b / P), on
        # (chunk, B, G, D, N)-contiguous vectors
        local = ws.get("l", (m, bt, g, d, n))
        torch.mul(W[..., -1].permute(4, 0, 1, 2, 3), Pend, out=local)
        Hs = ws.get("H", (m + 1, bt, g, d, n))
        Hs[0].copy_(h)
        for k in range(m):
            torch.addcmul(local[k], E[k], Hs[k], out=Hs[k + 1])
        carry = ws.get("c", (bt, g, d, n, m, 1))  # carry into chunk k: exp(A R_k) h_{k-1}
        torch.mul(G.permute(1, 2, 3, 4, 0), Hs[:m].permute(1, 2, 3, 4, 0), out=carry[..., 0])
        W.add_(carry)  # h_t / P_t
        X.mul_(W)  # h_t
        X.mul_(Cv.unsqueeze(2))
        torch.sum(X, 3, out=yv)
        return Hs[m]


def _scan_inference(u, delta, A, B, C, D, delta_bias, delta_softplus, return_last_state, chunk, max_decay):
    dtype = _compute_dtype(u, delta, A, B, C)
    u, delta, A, B, C = (t.to(dtype) for t in (u, delta, A, B, C))
    u, delta, B, C = (t if t.stride(-1) == 1 else t.contiguous() for t in (u, delta, B, C))
    batch, gd, length = u.shape
    groups, n = B.shape[1], A.shape[1]
    d = gd // groups
    engine = InferenceScan(A, groups, batch, delta_bias, delta_softplus, chunk, max_decay)
    y = u.new_empty(batch, gd, length)
    h = u.new_zeros(batch, groups, d, n)
    Dv = None if D is None else D.to(dtype).view(1, groups, d, 1)
    step = engine.stretch
    for p0 in range(0, length, step):
        s = slice(p0, min(length, p0 + step))
        ls = s.stop - p0
        u4 = u[..., s].view(batch, groups, d, ls)
        y4 = y[..., s].view(batch, groups, d, ls)
        h = engine.scan(delta[..., s].view(batch, groups, d, ls), u4, B[..., s], C[..., s], h, y4)
        if Dv is not None:
            y4.addcmul_(u4, Dv)
    return (y, h.reshape(batch, gd, n).clone()) if return_last_state else y


# ------------------------------------------------------------------------------ autograd path


def _scan_autograd(u, delta, A, B, C, D, delta_bias, delta_softplus, return_last_state, chunk, max_decay):
    dtype = _compute_dtype(u, delta, A, B, C)
    u, delta, A, B, C = (t.to(dtype) for t in (u, delta, A, B, C))
    delta = prepare_delta(delta, None if delta_bias is None else delta_bias.to(dtype), delta_softplus)
    batch, gd, length = u.shape
    groups, n = B.shape[1], A.shape[1]
    d = gd // groups
    if chunk is None:
        chunk = int(min(256, max(16, 2 ** round(math.log2(max(1, _TARGET_ELEMENTS // max(1, batch * gd * n)))))))
    A4 = A.view(1, groups, d, n, 1)
    u4 = u.view(batch, groups, d, length)
    dt4 = delta.view(batch, groups, d, length)
    du4 = dt4 * u4
    grad = needs_grad(u, delta, A, B, C)
    a_max = A.detach().abs().amax(dim=1).view(1, groups, d, 1)  # worst decay rate per channel
    h = u.new_zeros(batch, groups, d, n)
    ys = []
    s = 0
    while s < length:
        e = min(s + chunk, length)
        dt = dt4[..., s:e]  # (B, G, D, T)
        steps = torch.cumsum(dt, dim=-1) - dt[..., :1]  # sum of delta after the chunk's first step
        worst = (steps.detach() * a_max).amax(dim=(0, 1, 2))  # (T,), non-decreasing
        if float(worst[-1]) > max_decay:  # cut the chunk where exp(-decay) would overflow
            e = s + max(1, int(torch.searchsorted(worst, torch.tensor([max_decay], dtype=worst.dtype), right=True)))
            dt, steps = dt[..., : e - s], steps[..., : e - s]
        cum = steps.unsqueeze(3) * A4  # (B, G, D, N, T), 0 at t = s
        P = torch.exp(cum)
        drive = du4[..., s:e].unsqueeze(3) * B[:, :, None, :, s:e]  # (B, G, D, N, T)
        # b_r / P_r. Under autograd use exp(-cum) (<= e^max_decay): the backward of a division
        # would square P (~e^-60) and overflow.
        w = drive * torch.exp(-cum) if grad else drive / P
        w[..., 0] += torch.exp(dt[..., 0, None] * A4[..., 0]) * h  # carry h_{s-1} in
        hs = P * torch.cumsum(w, dim=-1)
        ys.append((hs * C[:, :, None, :, s:e]).sum(3))  # (B, G, D, T)
        h = hs[..., -1]
        s = e
    y = torch.cat(ys, dim=-1).reshape(batch, gd, length) if ys else u.new_zeros(batch, gd, 0)
    if D is not None:
        y = y + u * D.to(dtype)[:, None]
    return (y, h.reshape(batch, gd, n)) if return_last_state else y
