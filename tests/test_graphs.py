"""CUDA-graph replay (:mod:`diffmf.engine.graphs`): replayed results equal eager ones. The GPU
tests skip without CUDA and under Triton's interpreter, which tests/conftest.py turns on (on a
GPU: ``TRITON_INTERPRET=0 python -m pytest tests/test_graphs.py``)."""
import os

import pytest
import torch

import diffmf
from diffmf.engine.graphs import GraphedCall

cuda = pytest.mark.skipif(
    not torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1",
    reason="CUDA graphs need a CUDA GPU and compiled kernels (on a GPU: TRITON_INTERPRET=0 python -m pytest tests/test_graphs.py)",
)


def test_eager_runs_must_leave_room_for_compilation():
    with pytest.raises(ValueError, match="eager_runs"):
        GraphedCall(lambda x: x, eager_runs=0)


def test_cpu_tensors_run_eagerly():
    calls = []
    g = GraphedCall(lambda x: calls.append(1) or x * 2)
    for _ in range(3):
        assert torch.equal(g(torch.ones(2)), torch.full((2,), 2.0))
    assert len(calls) == 3 and g.captures == 0 and g.replays == 0


@cuda
def test_network_replay_matches_eager_per_shape():
    torch.manual_seed(0)
    model = diffmf.build_model("diffmf_tiny").cuda().eval()
    g = GraphedCall(lambda a, b: model(a, b), max_graphs=2)
    shapes = [(40, 56), (33, 47), (40, 56), (40, 56), (33, 47), (33, 47), (64, 64), (40, 56)]
    with torch.no_grad():
        for h, w in shapes:
            ir, vi = torch.rand(1, 1, h, w, device="cuda"), torch.rand(1, 1, h, w, device="cuda")
            torch.testing.assert_close(g(ir, vi), model(ir, vi), rtol=0, atol=0)
    assert g.captures >= 2 and g.replays >= 3
    assert len(g._graphs) <= 2  # least recently used dropped


@cuda
def test_fuser_with_and_without_graphs_agree():
    torch.manual_seed(0)
    model = diffmf.build_model("diffmf_tiny")
    from diffmf.engine.fuse import Fuser

    a, b = Fuser(model, "cuda", cuda_graphs=True), Fuser(model, "cuda", cuda_graphs=False)
    for _ in range(4):
        ir, vi = torch.rand(1, 1, 37, 45), torch.rand(1, 1, 37, 45)
        torch.testing.assert_close(a.fuse_y(ir, vi), b.fuse_y(ir, vi), rtol=0, atol=0)
    assert a._graphed is not None and a._graphed.captures == 1 and a._graphed.replays >= 1
    # above GRAPH_MAX_PIXELS the network always runs eagerly (no capture)
    from diffmf.engine import fuse as fuse_mod

    big = int(fuse_mod.GRAPH_MAX_PIXELS ** 0.5) + 8
    for _ in range(4):
        ir, vi = torch.rand(1, 1, big, big), torch.rand(1, 1, big, big)
        torch.testing.assert_close(a.fuse_y(ir, vi), b.fuse_y(ir, vi), rtol=0, atol=0)
    assert a._graphed.captures == 1
