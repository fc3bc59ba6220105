"""CUDA-graph replay of an inference call, one graph per input shape.

At batch 1 the network launches several hundred kernels per pair (about 15 Triton launches per
selective scan, 17 scans, plus the convolutions, norms and element-wise ops), and below
~1 megapixel the GPU waits on the host issuing them (docs/benchmarks-log.md: 256x256 took as long
as 512x512). A CUDA graph records the launches once and replays them with one call.

:class:`GraphedCall` wraps ``fn(*tensors) -> tensor`` (run under ``torch.no_grad`` by the
caller). Per input signature (shapes, dtypes, device) the first ``eager_runs`` calls run
eagerly (they compile the Triton kernels and pick cuDNN algorithms); the next one captures a
graph on static copies of the inputs; later calls copy their inputs into the static tensors,
replay and return a clone of the output. All graphs share one memory pool, which is safe here
because replays are sequential and every output is cloned before the next replay. If a
capture fails, the failure is logged once and every later call runs eagerly.

The plain twin is ``fn`` itself: results are the same kernels on the same inputs
(``benchmarks/bench_model.py`` compares them on the GPU).
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Callable, Dict, Hashable, Tuple

import torch
from torch import Tensor

logger = logging.getLogger(__name__)


def recover_from_failed_capture(device: torch.device) -> None:
    """Undo what a capture that raised leaves behind, so the process can go on eagerly.

    When the capture body raises, ``cudaStreamEndCapture`` fails in ``capture_end`` before
    PyTorch closes the capture of the CUDA random generator, which then refuses every later
    random draw ("Offset increment outside graph capture encountered unexpectedly"). A
    successful capture of one tiny op closes it again (checked in tests/test_graphed_step.py).
    """
    torch.cuda.synchronize(device)
    scratch = torch.zeros(1, device=device)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        scratch.add_(1)
    del graph
    torch.cuda.synchronize(device)


class GraphedCall:
    """``fn(*inputs)`` replayed from CUDA graphs, one per input signature.

    Args:
        fn: a function of CUDA tensors returning one tensor; it must not synchronise with the
            host or change behaviour between calls with inputs of the same shapes.
        eager_runs: eager calls per signature before its graph is captured (>= 1: the first
            call compiles kernels, which must not happen during a capture).
        max_graphs: graphs kept (least recently used dropped first).
    """

    def __init__(self, fn: Callable[..., Tensor], *, eager_runs: int = 1, max_graphs: int = 8) -> None:
        if eager_runs < 1:
            raise ValueError(f"eager_runs must be >= 1 (kernels compile on the first call), got {eager_runs}")
        self.fn = fn
        self.eager_runs = int(eager_runs)
        self.max_graphs = int(max_graphs)
        self.enabled = True
        self._seen: Dict[Hashable, int] = {}
        self._graphs: "OrderedDict[Hashable, Tuple[torch.cuda.CUDAGraph, Tuple[Tensor, ...], Tensor]]" = OrderedDict()
        self._pool = None
        self.replays = 0
        self.captures = 0

    @staticmethod
    def _key(args: Tuple[Tensor, ...]) -> Hashable:
        return tuple((tuple(a.shape), a.dtype, a.device, a.stride()) for a in args)

    def __call__(self, *args: Tensor) -> Tensor:
        if not self.enabled or not all(isinstance(a, Tensor) and a.is_cuda for a in args):
            return self.fn(*args)
        key = self._key(args)
        entry = self._graphs.get(key)
        if entry is None:
            seen = self._seen.get(key, 0)
            if seen < self.eager_runs:
                self._seen[key] = seen + 1
                return self.fn(*args)
            entry = self._capture(key, args)
            if entry is None:
                return self.fn(*args)
        else:
            self._graphs.move_to_end(key)
        graph, static_in, static_out = entry
        for s, a in zip(static_in, args):
            s.copy_(a)
        graph.replay()
        self.replays += 1
        return static_out.clone()

    def _capture(self, key: Hashable, args: Tuple[Tensor, ...]):
        static_in = tuple(a.clone() for a in args)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        try:
            torch.cuda.synchronize(args[0].device)
            with torch.cuda.graph(graph, pool=self._pool):
                static_out = self.fn(*static_in)
        except Exception as exc:  # noqa: BLE001 - any capture failure: run eagerly from now on
            self.enabled = False
            self._graphs.clear()
            logger.warning("CUDA graph capture failed (%s: %s); running eagerly from now on",
                           type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
            recover_from_failed_capture(args[0].device)
            return None
        if not isinstance(static_out, Tensor):
            self.enabled = False
            logger.warning("CUDA graphs need a function returning one tensor, got %s; running eagerly", type(static_out).__name__)
            return None
        self._graphs[key] = (graph, static_in, static_out)
        self.captures += 1
        while len(self._graphs) > self.max_graphs:
            self._graphs.popitem(last=False)
        return self._graphs[key]

    def clear(self) -> None:
        """Drop every graph (and with them the shared pool's memory)."""
        self._graphs.clear()
        self._seen.clear()
        self._pool = None
