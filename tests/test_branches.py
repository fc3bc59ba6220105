"""Independent network branches on CUDA streams (diffmf.ops.branches)."""
from __future__ import annotations

import pytest
import torch

import diffmf
from diffmf.ops import branches
from diffmf.ops.branches import branch_streams_enabled, run_branches, set_branch_streams

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture
def switch():
    yield set_branch_streams
    set_branch_streams(None)


def test_switch_follows_setting_then_environment(switch, monkeypatch):
    monkeypatch.delenv(branches.ENV_VAR, raising=False)
    assert branch_streams_enabled()
    monkeypatch.setenv(branches.ENV_VAR, "0")
    assert not branch_streams_enabled()
    switch(True)
    assert branch_streams_enabled()
    switch(False)
    monkeypatch.setenv(branches.ENV_VAR, "1")
    assert not branch_streams_enabled()


def test_cpu_branches_run_in_order_on_the_current_thread():
    calls = []

    def branch(i):
        def fn():
            calls.append(i)
            return torch.full((2,), float(i))
        return fn

    with torch.no_grad():
        outs = run_branches([branch(i) for i in range(3)], torch.device("cpu"))
    assert calls == [0, 1, 2]
    assert [o[0].item() for o in outs] == [0.0, 1.0, 2.0]


class _FakeStream:
    """Records the fork / join calls run_branches makes (a CPU stand-in for torch.cuda.Stream)."""

    def __init__(self, name, log):
        self.name, self.log = name, log

    def wait_stream(self, other):
        self.log.append(("wait", self.name, other.name))


def _fake_cuda(monkeypatch):
    """torch.cuda's stream API replaced by recorders; returns the event log."""
    import contextlib

    log, made, current = [], [], ["main"]
    main = _FakeStream("main", log)

    def new_stream(device=None):
        s = _FakeStream(f"side{len(made)}", log)
        made.append(s)
        return s

    @contextlib.contextmanager
    def on(stream):
        current.append(stream.name)
        try:
            yield
        finally:
            current.pop()

    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: main)
    monkeypatch.setattr(torch.cuda, "Stream", new_stream)
    monkeypatch.setattr(torch.cuda, "stream", on)
    return log, current


def test_forks_before_the_branches_and_joins_after_them(switch, monkeypatch):
    log, current = _fake_cuda(monkeypatch)
    branches._free.clear()
    dev = torch.device("cuda", 0)

    def branch(i):
        return lambda: log.append(("run", i, current[-1])) or i

    switch(True)
    with torch.no_grad():
        assert run_branches([branch(i) for i in range(3)], dev) == [0, 1, 2]
    assert log == [
        ("wait", "side0", "main"), ("wait", "side1", "main"),  # fork: sides wait for the main stream
        ("run", 0, "main"), ("run", 1, "side0"), ("run", 2, "side1"),  # branch 0 on the main stream
        ("wait", "main", "side0"), ("wait", "main", "side1"),  # join
    ]
    log.clear()

    def failing():
        raise RuntimeError("boom")

    with torch.no_grad(), pytest.raises(RuntimeError, match="boom"):
        run_branches([branch(0), failing, branch(2)], dev)
    assert ("wait", "main", "side0") in log and ("wait", "main", "side1") in log  # joined anyway
    assert sorted(s.name for s in branches._free[0]) == ["side0", "side1"]  # returned, reused
    branches._free.clear()


def test_large_branches_run_in_order_to_bound_the_allocator_cache(switch, monkeypatch):
    """Side streams only up to the pixel limit: by default half the device's memory over the
    measured footprint per pixel, or $DIFFMF_BRANCH_MAX_PIXELS (a count or 'none')."""
    import types

    log, current = _fake_cuda(monkeypatch)
    branches._free.clear()
    monkeypatch.setattr(branches, "_auto_limit", {})
    gib = 2**30
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(total_memory=24 * gib))
    monkeypatch.delenv(branches.MAX_PIXELS_ENV, raising=False)
    dev = torch.device("cuda", 0)
    limit = branches.branch_max_pixels(dev)
    assert limit == 12 * gib // branches.STREAM_BYTES_PER_PIXEL
    assert 640 * 480 <= limit < 1024 * 768  # a 24 GB card: 640x480 concurrent, 1024x768 in order

    def forked(pixels):
        log.clear()
        with torch.no_grad():
            assert run_branches([lambda: current[-1], lambda: current[-1]], dev, pixels=pixels) in (
                ["main", "side0"], ["main", "main"])
        return any(e[0] == "wait" for e in log)

    switch(True)
    assert forked(limit) and forked(None)  # None: size unknown, streams as before
    assert not forked(limit + 1)
    for text, expect in (("1000", 1000), ("none", None), ("auto", limit), ("0", 0)):
        monkeypatch.setenv(branches.MAX_PIXELS_ENV, text)
        assert branches.branch_max_pixels(dev) == expect
    monkeypatch.setenv(branches.MAX_PIXELS_ENV, "none")
    assert forked(10**12)
    monkeypatch.setenv(branches.MAX_PIXELS_ENV, "0")
    assert not forked(1)
    for bad in ("-1", "lots"):
        monkeypatch.setenv(branches.MAX_PIXELS_ENV, bad)
        with pytest.raises(ValueError, match=branches.MAX_PIXELS_ENV):
            branches.branch_max_pixels(dev)
    branches._free.clear()
    monkeypatch.delenv(branches.MAX_PIXELS_ENV)  # what `diffmf doctor` says
    assert f"at most {limit:,} pixels (auto: 0.5 of the GPU's memory" in branches.describe(dev)
    monkeypatch.setenv(branches.MAX_PIXELS_ENV, "none")
    assert "of any size ($DIFFMF_BRANCH_MAX_PIXELS)" in branches.describe(dev)
    switch(False)
    assert branches.describe(dev).startswith("in order (switched off")


def _model(device):
    torch.manual_seed(0)
    model = diffmf.build_model("diffmf_tiny").to(device).eval()
    for p in model.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    return model


@cuda
def test_side_streams_give_the_sequential_result_and_are_reused(switch):
    dev = torch.device("cuda", torch.cuda.current_device())
    branches._free.clear()
    x = torch.randn(1 << 20, device=dev)
    fns = [lambda: (x * 2).sum(), lambda: (x + 1).exp(), lambda: {"m": x.max(), "t": (x, x.abs())}]
    with torch.no_grad():
        switch(False)
        ref = run_branches(fns, dev)
        assert not branches._free  # no side stream taken
        switch(True)
        out = run_branches(fns, dev)
        pool = list(branches._free[dev.index])
        assert len(pool) == 2 and torch.cuda.current_stream(dev) not in pool
        run_branches(fns, dev)
        assert {id(s) for s in branches._free[dev.index]} == {id(s) for s in pool}  # reused, not made per call
    assert torch.equal(out[0], ref[0]) and torch.equal(out[1], ref[1])
    assert torch.equal(out[2]["m"], ref[2]["m"]) and torch.equal(out[2]["t"][1], ref[2]["t"][1])
    with torch.enable_grad():  # recording autograd: in order on the current stream
        branches._free.clear()
        run_branches([lambda: x.sum(), lambda: x.sum()], dev)
        assert not branches._free


@cuda
@pytest.mark.parametrize("amp", [False, True])
def test_network_is_bitwise_the_same_with_branch_streams(switch, amp):
    dev = torch.device("cuda")
    model = _model(dev)
    ir, vi = torch.rand(1, 1, 36, 52, device=dev), torch.rand(1, 1, 36, 52, device=dev)

    def run(a=ir, b=vi):
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            return model(a, b).clone()

    switch(False)
    ref = run()
    switch(True)
    assert torch.equal(run(), ref)
    from diffmf.engine.graphs import GraphedCall

    graphed = GraphedCall(run, eager_runs=1)
    for _ in range(3):  # eager, capture, replay
        assert torch.equal(graphed(ir, vi), ref)
