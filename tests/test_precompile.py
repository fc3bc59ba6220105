"""Parallel compilation of the Triton kernels (:mod:`diffmf.ops.triton.precompile`).

On the CPU: the thread setting, the recorder's contract with Triton's ``jit_cache_hook`` (called
here the way ``JITFunction._do_compile`` calls it), and the Fuser calling it once per input
size. The GPU tests compile for real: the dry pass records the network's kernels and the real
pass then compiles nothing (on a GPU: ``TRITON_INTERPRET=0 python -m pytest tests/test_precompile.py``).
"""
import os

import numpy as np
import pytest
import torch

triton = pytest.importorskip("triton")

import diffmf  # noqa: E402
from diffmf.engine.fuse import Fuser  # noqa: E402
from diffmf.ops.triton import precompile as P  # noqa: E402

cuda = pytest.mark.skipif(
    not torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1",
    reason="compiling needs a CUDA GPU (on a GPU: TRITON_INTERPRET=0 python -m pytest tests/test_precompile.py)",
)


@pytest.mark.parametrize("text, want", [("0", 0), ("1", 1), ("12", 12)])
def test_threads_from_the_environment(monkeypatch, text, want):
    monkeypatch.setenv(P.ENV_THREADS, text)
    assert P.compile_threads() == want


def test_default_threads_follow_the_cpus(monkeypatch):
    monkeypatch.delenv(P.ENV_THREADS, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(100)), raising=False)
    assert P.compile_threads() == P.MAX_THREADS
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3}, raising=False)
    assert P.compile_threads() == 1


@pytest.mark.parametrize("text", ["two", "-1"])
def test_bad_thread_settings_say_what_is_wrong(monkeypatch, text):
    monkeypatch.setenv(P.ENV_THREADS, text)
    with pytest.raises(ValueError, match=P.ENV_THREADS):
        P.compile_threads()


def test_describe_says_how_and_why(monkeypatch):
    monkeypatch.setenv(P.ENV_THREADS, "0")
    assert P.describe() == f"one kernel at a time, at its first launch (${P.ENV_THREADS}: 0)"
    monkeypatch.setenv(P.ENV_THREADS, "6")
    want = f"6 threads compile the kernels of each new input size before it runs (${P.ENV_THREADS})"
    assert P.describe() == (want if P.unsupported() is None else f"one kernel at a time, at its first launch: {P.unsupported()}")
    monkeypatch.setenv(P.ENV_THREADS, "x")
    assert P.describe().startswith("invalid setting:") and P.ENV_THREADS in P.describe()


def test_markers_skip_the_calls_precompiled_before(monkeypatch, tmp_path):
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))
    if P.unsupported() is not None:
        pytest.skip(P.unsupported())
    ran = []
    P._mark("x")
    stats = P.precompile(lambda: ran.append("x"), lambda: ran.append("y"), threads=2, markers=["x", "y"])
    assert ran == ["y"] and stats.done_before == 1 and stats.skipped is None
    assert P.marker_path("y").exists() and P.marker_path("y").parent.parent == tmp_path
    again = P.precompile(lambda: ran.append("x"), lambda: ran.append("y"), threads=2, markers=["x", "y"])
    assert ran == ["y"] and again.done_before == 2 and again.recorded == 0
    monkeypatch.setenv("DIFFMF_SOMETHING", "1")  # another setting: another marker
    assert not P.marker_path("y").exists()
    with pytest.raises(ValueError, match="markers"):
        P.precompile(lambda: None, threads=2, markers=[])


def test_no_marker_when_a_kernel_failed(monkeypatch, tmp_path):
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))
    if P.unsupported() is not None:
        pytest.skip(P.unsupported())
    monkeypatch.setattr(P, "compile_all", lambda requests, threads: 1)
    stats = P.precompile(lambda: None, threads=2, markers=["z"])
    assert stats.failed == 1 and not P.marker_path("z").exists()


def test_one_thread_runs_nothing():
    calls = []
    stats = P.precompile(lambda: calls.append(1), threads=1)
    assert calls == [] and stats.skipped == "threads=1" and stats.recorded == 0


class _Info:  # triton.runtime.jit.JitFunctionInfo's field the recorder reads
    def __init__(self, fn):
        self.jit_function = fn


def _launch(fn, key, device=0):
    """What JITFunction._do_compile does on a cache miss: ask the hook, skip if it says so."""
    hook = triton.knobs.runtime.jit_cache_hook
    skip = hook is not None and hook(key=key, repr=f"{fn}[{key}]", fn=_Info(fn),
                                     compile={"key": key, "device": device, "specialization_data": f"{fn}:{key}"},
                                     is_manual_warmup=False, already_compiled=False)
    return None if skip else "compiled"


def test_record_keeps_each_new_kernel_once_and_skips_every_launch():
    results = []

    def call():
        for fn, key in [("a", "k1"), ("b", "k1"), ("a", "k1"), ("a", "k2")]:
            results.append(_launch(fn, key))

    requests = P.record(call)
    assert results == [None] * 4  # no compilation, no launch in the dry pass
    assert [(fn, data) for fn, _, data in requests] == [("a", "a:k1"), ("b", "b:k1"), ("a", "a:k2")]
    assert all(device == 0 for _, device, _ in requests)
    assert triton.knobs.runtime.jit_cache_hook is None
    assert _launch("a", "k1") == "compiled"  # hook gone: launches compile again


def test_launches_of_other_threads_are_not_skipped():
    import threading

    other = []

    def call():
        t = threading.Thread(target=lambda: other.append(_launch("b", "k9")))
        t.start()
        t.join()
        _launch("a", "k1")

    requests = P.record(call)
    assert other == ["compiled"] and [data for _, _, data in requests] == ["a:k1"]


def test_record_restores_the_previous_hook_after_an_error(monkeypatch):
    def previous(**kw):
        return False

    monkeypatch.setattr(triton.knobs.runtime, "jit_cache_hook", previous)

    def call():
        _launch("a", "k1")
        raise torch.cuda.OutOfMemoryError("dry pass too big")

    requests = P.record(call)
    assert [data for _, _, data in requests] == ["a:k1"]
    assert triton.knobs.runtime.jit_cache_hook is previous


@pytest.fixture
def cpu_fuser_as_on_cuda(monkeypatch):
    """A CPU Fuser that takes the CUDA path of the precompile step, with ``precompile`` faked:
    returns the fuser and the list of dry-pass shapes each ``precompile`` call was given."""
    fuser = Fuser(diffmf.build_model("diffmf_tiny"), "cpu")
    assert fuser.precompile is False  # nothing to compile on the CPU
    fuser.precompile = True
    calls = []

    def fake(*dry_calls, markers=None, **kw):
        calls.append([c.args[0] for c in dry_calls])
        assert markers is not None and len(markers) == len(dry_calls)
        assert all(str(c.args[0]) in m and "amp=False" in m for c, m in zip(dry_calls, markers))
        for c in dry_calls:
            c()
        return P.PrecompileStats(recorded=len(dry_calls), threads=2)

    monkeypatch.setattr("diffmf.ops.dispatch.resolve_backend", lambda device, requested=None: "triton")
    monkeypatch.setattr(P, "precompile", fake)
    return fuser, calls


def test_fuser_precompiles_each_input_size_once(cpu_fuser_as_on_cuda):
    fuser, calls = cpu_fuser_as_on_cuda
    for h, w in [(32, 40), (32, 40), (24, 40), (32, 40)]:
        fuser.fuse_y(torch.rand(1, 1, h, w), torch.rand(1, 1, h, w))
    assert fuser.window_shape(24, 40) != fuser.window_shape(32, 40)
    assert calls == [[(1, 1, *fuser.window_shape(32, 40))], [(1, 1, *fuser.window_shape(24, 40))]]


def test_sizes_are_padded_tiled_and_compiled_together(cpu_fuser_as_on_cuda):
    fuser, calls = cpu_fuser_as_on_cuda
    m = fuser.multiple
    up = lambda n: n + (-n) % m  # noqa: E731
    fuser.tile = 64
    assert fuser.window_shape(30, 41) == (up(30), up(41))
    assert fuser.window_shape(200, 41) == (64, up(41))  # tiles: at most 64 per side
    stats = fuser.precompile_sizes([(30, 41), (up(30), up(41)), (200, 300), (90, 70)])
    assert calls == [[(1, 1, up(30), up(41)), (1, 1, 64, 64)]]  # one batch, each shape once
    assert stats.recorded == 2
    assert fuser.precompile_sizes([(64, 64), (30, 41)]) is None  # all seen
    fuser.fuse_y(torch.rand(1, 1, 30, 41), torch.rand(1, 1, 30, 41))
    assert len(calls) == 1


def test_dry_passes_run_as_fusion_does_without_autograd(cpu_fuser_as_on_cuda):
    fuser, calls = cpu_fuser_as_on_cuda
    seen = []
    fuser._forward = lambda ir, vi: seen.append((torch.is_grad_enabled(), ir.shape, ir.dtype)) or ir
    fuser.precompile_sizes([(24, 32)])  # called outside fuse_y (fuse_pairs does), grad mode on
    assert seen == [(False, (1, 1, *fuser.window_shape(24, 32)), torch.float32)]


def test_fuse_pairs_compiles_the_sizes_of_the_folder_first(cpu_fuser_as_on_cuda, tmp_path):
    from PIL import Image

    from diffmf.data.pairs import Pair
    from diffmf.engine.fuse import fuse_pairs

    fuser, calls = cpu_fuser_as_on_cuda
    jobs = []
    for name, (h, w) in [("a", (24, 32)), ("b", (40, 24)), ("c", (24, 32))]:
        for kind in ("ir", "vi"):
            (tmp_path / kind).mkdir(exist_ok=True)
            Image.fromarray(np.zeros((h, w), np.uint8)).save(tmp_path / kind / f"{name}.png")
        jobs.append((Pair(name, tmp_path / "ir" / f"{name}.png", tmp_path / "vi" / f"{name}.png"), tmp_path / f"{name}.png"))
    (tmp_path / "vi" / "bad.png").write_bytes(b"not an image")
    (tmp_path / "ir" / "bad.png").write_bytes(b"not an image")
    jobs.insert(1, (Pair("bad", tmp_path / "ir" / "bad.png", tmp_path / "vi" / "bad.png"), tmp_path / "bad.png"))
    report = fuse_pairs(fuser, jobs, progress=False)
    sizes = [fuser.window_shape(24, 32), fuser.window_shape(40, 24)]
    assert calls == [[(1, 1, *s) for s in sizes]]  # before the first pair, nothing after
    assert [name for name, _ in report.failed] == ["bad"] and len(report.written) == 3


@cuda
def test_the_real_pass_compiles_nothing_after_precompile():
    torch.manual_seed(0)
    model = diffmf.build_model("diffmf_tiny").cuda().eval()
    h, w = 37, 53  # a size no other test uses: its kernels are not in memory yet
    ir, vi = torch.rand(1, 1, h, w, device="cuda"), torch.rand(1, 1, h, w, device="cuda")
    with torch.no_grad():
        stats = P.precompile(lambda: model(ir, vi), threads=4)
        assert stats.skipped is None and stats.recorded > 0 and stats.failed == 0
        compiled = []
        triton.knobs.runtime.jit_cache_hook = lambda **kw: compiled.append(kw["key"])
        try:
            out = model(ir, vi)
        finally:
            triton.knobs.runtime.jit_cache_hook = None
        assert compiled == []
        assert torch.isfinite(out).all()
        again = P.precompile(lambda: model(ir, vi), threads=4)
    assert again.recorded == 0  # everything is in memory now


@cuda
def test_a_backward_in_the_dry_pass_is_recorded_too():
    from diffmf.ops import selective_scan_2d

    g = torch.Generator().manual_seed(0)
    b, k, d, n, h, w = 1, 4, 3, 16, 19, 23  # a shape no other test uses
    cpu = [torch.randn(b, d, h, w, generator=g), torch.randn(b, k, d, h, w, generator=g) - 1,
           -torch.rand(k * d, n, generator=g), torch.randn(b, k, n, h, w, generator=g),
           torch.randn(b, k, n, h, w, generator=g), torch.randn(k * d, generator=g), torch.randn(k * d, generator=g)]

    def step():
        xs = [t.cuda().requires_grad_() for t in cpu]
        y = selective_scan_2d(*xs, True, backend="triton")
        return torch.autograd.grad(y, xs, torch.ones_like(y))

    stats = P.precompile(step, threads=4)
    assert stats.recorded > 0 and stats.failed == 0
    compiled = []
    triton.knobs.runtime.jit_cache_hook = lambda **kw: compiled.append(kw["key"])
    try:
        grads = step()
    finally:
        triton.knobs.runtime.jit_cache_hook = None
    assert compiled == []  # the backward kernels too were compiled ahead
    assert all(torch.isfinite(gr).all() for gr in grads)
