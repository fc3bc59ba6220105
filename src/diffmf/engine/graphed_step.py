"""The forward, loss and backward of a training step replayed from one CUDA graph.

Why: a training step of the paper preset issues a few thousand kernels (17 selective scans
with about 37 Triton launches each, the layer norms, convolutions, the loss), and at 128x128
crops the host cannot issue them as fast as the GPU runs them (docs/benchmarks-log.md: the step
took 244 / 235 / 220 ms at batch 16 / 8 / 4 against 165 ms of kernels). A CUDA graph records
the launches once; each step then copies the batch into static inputs and replays.

What is captured: ``fused = net(ir, vi)`` under autocast, ``loss, parts = loss_fn(fused, ir,
vi)`` and ``loss.backward()``. The gradients are written into tensors that belong to the
graph (``param.grad`` keeps pointing at them, so nothing may set them to ``None`` later).
Gradient all-reduce (several processes), clipping, the optimiser, the LR schedule and the
EMA stay eager: a few multi-tensor launches each, and the optimiser state and checkpoints
stay exactly what the eager trainer writes.

The plain twin is :meth:`GraphedTrainStep.eager`, the same three calls without a graph
(used for the warm-up runs, for any batch whose shape differs from the captured one, for every
step after a failed capture, and for every step with ``graphs=False``: the trainer's eager
path, DDP-wrapped under ``torchrun``). Replays run the same kernels on the same data, so a
graphed run matches an eager run step for step (``tests/test_graphed_step.py`` checks it on
a GPU with deterministic algorithms).

First call on CUDA: the step's Triton kernels are compiled on several CPU threads from one dry
run (:mod:`diffmf.ops.triton.precompile`; its gradients and the random states are put back).
Then ``warmup`` eager forward + backward runs on a side stream (they compile the Triton
kernels and pick the cuDNN algorithms, which must not happen during a capture; their
gradients are discarded), then the capture. The CPU and CUDA random states are restored
afterwards, so a graphed run consumes randomness exactly like a run that starts replaying at
once: interrupted and resumed runs stay bit-identical.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Callable, Dict, Hashable, List, Optional, Tuple, Union

import torch
import torch.nn as nn
from torch import Tensor

from diffmf.engine.graphs import recover_from_failed_capture

logger = logging.getLogger(__name__)

LossFn = Callable[[Tensor, Tensor, Tensor], Tuple[Tensor, Dict[str, Tensor]]]


class GraphedTrainStep:
    """``step(ir, vi) -> (parts, fused, ir, vi)``: forward, loss and backward, replayed from a graph.

    Args:
        net: the network (not wrapped in DDP: gradients are all-reduced by the caller).
        loss_fn: ``(fused, ir, vi) -> (loss, parts)``, ``parts`` a dict of detached scalars.
        params: the parameters whose gradients the step produces.
        autocast: ``None`` or the autocast dtype; the autocast weight cache is disabled
            inside the graph (a cached cast would outlive the capture).
        scale: ``loss -> loss`` applied before ``backward`` (the fp16 grad scaler's ``scale``).
        warmup: eager runs before the capture (>= 1).
        strict: raise if the capture fails (``train.cuda_graph=on``) instead of logging a
            warning and running eagerly from then on (``auto``).
        graphs: False runs every step as the eager twin (``train.cuda_graph=off``, CPU).
        precompile: on CUDA, compile the Triton kernels of each new input shape on several
            threads first (``DIFFMF_COMPILE_THREADS``; not for a DDP-wrapped ``net``).

    Inputs: ``ir``, ``vi`` ``(B, 1, H, W)`` float in [0, 1], on any device (copied into the
    static inputs; pinned CPU tensors are copied asynchronously). Outputs: the loss parts, the
    fused batch and the inputs on the device, all **static**: valid until the next call.
    """

    def __init__(self, net: nn.Module, loss_fn: LossFn, params: List[nn.Parameter], *,
                 autocast: Optional[torch.dtype], scale: Callable[[Tensor], Tensor] = lambda t: t,
                 warmup: int = 2, strict: bool = False, graphs: bool = True, precompile: bool = True) -> None:
        if warmup < 1:
            raise ValueError(f"warmup must be >= 1 (kernels compile on the first run), got {warmup}")
        self.net, self.loss_fn, self.params = net, loss_fn, list(params)
        self.autocast, self.scale, self.warmup, self.strict = autocast, scale, int(warmup), bool(strict)
        self.graphs = bool(graphs)  # asked for (the caller all-reduces gradients itself then)
        self.enabled = self.graphs  # still capturing / replaying (False after a failed capture)
        self.replays = 0
        self._key: Optional[Hashable] = None
        self._graph: Optional[torch.cuda.CUDAGraph] = None
        self._static: Tuple[Tensor, ...] = ()
        self._out: Tuple[Dict[str, Tensor], Tensor] = ({}, torch.empty(0))
        self._warned_shape = False
        self.precompile = bool(precompile)
        self._precompiled: set = set()  # input keys whose kernels were compiled ahead

    def _autocast(self, cache: bool):
        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(self.params[0].device.type, dtype=self.autocast, cache_enabled=cache)

    def _forward_backward(self, ir: Tensor, vi: Tensor, cache: bool) -> Tuple[Dict[str, Tensor], Tensor]:
        with self._autocast(cache):
            fused = self.net(ir, vi)
        loss, parts = self.loss_fn(fused, ir, vi)
        self.scale(loss).backward()
        return parts, fused

    def eager(self, ir: Tensor, vi: Tensor) -> Tuple[Dict[str, Tensor], Tensor]:
        """The plain twin: zero the gradients (to ``None``), forward, loss, backward."""
        for p in self.params:
            p.grad = None
        return self._forward_backward(ir, vi, cache=True)

    def _precompile(self, key: Hashable, ir: Tensor, vi: Tensor, dev: torch.device) -> None:
        """Before the first step of an input key (and before any capture): compile the step's
        Triton kernels on several threads from a dry run of :meth:`eager`, then put back what that
        run changed (the gradients, to ``None``; the CPU and CUDA random states). Not for a
        DDP-wrapped net: its dry backward would all-reduce, and a rank whose dry run stopped early
        would leave the others waiting."""
        self._precompiled.add(key)
        if isinstance(self.net, nn.parallel.DistributedDataParallel):
            return
        from diffmf.ops.dispatch import triton_status

        if triton_status(dev) is not None:
            return
        from diffmf.ops.triton.precompile import module_description, precompile

        ir, vi = ir.to(dev), vi.to(dev)
        cpu_rng, cuda_rng = torch.get_rng_state(), torch.cuda.get_rng_state(dev)
        try:
            stats = precompile(lambda: self.eager(ir, vi), markers=[
                f"train {module_description(self.net)} {type(self.loss_fn).__qualname__} {key} autocast={self.autocast}"])
        finally:
            torch.set_rng_state(cpu_rng)
            torch.cuda.set_rng_state(cuda_rng, dev)
            for p in self.params:
                p.grad = None
        if stats.skipped is not None:
            logger.debug("no parallel compilation: %s", stats.skipped)
            self.precompile = False
        elif stats.recorded:
            logger.info("compiled %d Triton kernels of the training step in %.1f s on %d threads",
                        stats.recorded - stats.failed, stats.seconds, stats.threads)

    def __call__(self, ir: Tensor, vi: Tensor) -> Tuple[Dict[str, Tensor], Tensor, Tensor, Tensor]:
        """One step's forward, loss and backward -> ``(parts, fused, ir, vi)`` on the device."""
        dev = self.params[0].device
        key = (tuple(ir.shape), tuple(vi.shape), ir.dtype, vi.dtype)
        if self.precompile and self._graph is None and dev.type == "cuda" and key not in self._precompiled:
            self._precompile(key, ir, vi, dev)
        if self.enabled and dev.type == "cuda":
            if self._graph is None:
                self._capture(key, ir, vi, dev)
            if self._graph is not None and key == self._key:
                s_ir, s_vi = self._static
                s_ir.copy_(ir, non_blocking=True)
                s_vi.copy_(vi, non_blocking=True)
                self._graph.replay()
                self.replays += 1
                return (*self._out, s_ir, s_vi)
            if self._graph is not None and not self._warned_shape:
                logger.warning("training batch of shape %s differs from the captured %s: running it eagerly", key, self._key)
                self._warned_shape = True
        ir, vi = ir.to(dev, non_blocking=True), vi.to(dev, non_blocking=True)
        if self._graph is not None:
            # The graph's gradient tensors must stay the ones ``param.grad`` points at: zero
            # and accumulate into them instead of replacing them.
            for p in self.params:
                if p.grad is not None:
                    p.grad.zero_()
            return (*self._forward_backward(ir, vi, cache=True), ir, vi)
        return (*self.eager(ir, vi), ir, vi)

    def _capture(self, key: Hashable, ir: Tensor, vi: Tensor, dev: torch.device) -> None:
        cpu_rng, cuda_rng = torch.get_rng_state(), torch.cuda.get_rng_state(dev)
        s_ir = torch.empty(ir.shape, dtype=ir.dtype, device=dev)
        s_vi = torch.empty(vi.shape, dtype=vi.dtype, device=dev)
        s_ir.copy_(ir, non_blocking=True)
        s_vi.copy_(vi, non_blocking=True)
        graph = torch.cuda.CUDAGraph()
        try:
            side = torch.cuda.Stream(dev)
            side.wait_stream(torch.cuda.current_stream(dev))
            with torch.cuda.stream(side):
                for _ in range(self.warmup):
                    self.eager(s_ir, s_vi)
            torch.cuda.current_stream(dev).wait_stream(side)
            for p in self.params:
                p.grad = None  # the capture allocates the gradients in the graph's pool
            torch.cuda.synchronize(dev)
            with torch.cuda.graph(graph):
                parts, fused = self._forward_backward(s_ir, s_vi, cache=False)
                out = (parts, fused.detach())  # keeping the autograd graph alive would pin its nodes
        except Exception as exc:  # noqa: BLE001 - any capture failure: eager from now on, or raise
            recover_from_failed_capture(dev)
            for p in self.params:
                p.grad = None
            self.enabled = False
            msg = f"CUDA-graph capture of the training step failed ({type(exc).__name__}: " \
                  f"{str(exc).splitlines()[0] if str(exc) else ''})"
            if self.strict:
                raise RuntimeError(f"{msg}; train.cuda_graph=on asks for it. Use train.cuda_graph=off (or auto, "
                                   f"which falls back to eager steps)") from exc
            logger.warning("%s; training eagerly from now on (train.cuda_graph=off silences this)", msg)
            return
        finally:
            torch.set_rng_state(cpu_rng)
            torch.cuda.set_rng_state(cuda_rng, dev)
        self._graph, self._key, self._static, self._out = graph, key, (s_ir, s_vi), out
        logger.info("training step captured in a CUDA graph (batch %s)", tuple(ir.shape))


def resolve_cuda_graph(spec: Union[bool, str], device: torch.device, *, compiled: bool) -> bool:
    """Whether ``train.cuda_graph`` (``auto`` | ``on`` | ``off``; YAML's booleans for on / off)
    graphs the training step.

    ``auto`` graphs it on CUDA devices unless the network is ``torch.compile``d; ``on`` asks
    for it and fails here, with the reason, where it cannot be done.
    """
    if isinstance(spec, bool):
        spec = "on" if spec else "off"
    if spec not in ("auto", "on", "off"):
        raise ValueError(f"train.cuda_graph must be auto, on or off, got {spec!r}")
    if spec == "off":
        return False
    why = None
    if device.type != "cuda":
        why = f"CUDA graphs need a CUDA device, the run is on {device}"
    elif compiled:
        why = "train.compile=true: torch.compile manages its own graphs"
    if why is None:
        return True
    if spec == "on":
        raise ValueError(f"train.cuda_graph=on: {why}. Use train.cuda_graph=auto or off")
    return False
