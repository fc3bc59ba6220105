"""benchmarks/peer_mamba_ssm.py: the comparison with mamba-ssm's compiled scan must run the same
function as diffmf's scan, and its source patching must fail loudly on another version.

The compiled peer itself needs nvcc and a GPU (the script's ``build`` / ``bench``); here its
scan is replaced by the PyTorch oracle of the same signature, so what is tested is the wiring
around it: VMamba's CrossScan / CrossMerge and the low-rank drop-in the network benchmark
patches into :mod:`diffmf.model.vss`."""
from __future__ import annotations

import pytest
import torch

from diffmf.ops.cross_scan import FrameMaps
from diffmf.ops.selective_scan import selective_scan, selective_scan_2d, selective_scan_2d_lowrank

import benchmark_scripts  # tests/benchmark_scripts.py


@pytest.fixture(scope="module")
def peer():
    return benchmark_scripts.load("peer_mamba_ssm")


def _oracle_scan(u, delta, A, B, C, D, delta_bias):
    """The peer's call signature on diffmf's float64-exact loop."""
    return selective_scan(u, delta, A, B, C, D, delta_bias, True, backend="ref")


def _inputs(b=2, k=4, d=3, n=4, h=5, w=7, r=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(b, d, h, w, generator=g)
    dts = torch.randn(b, k, r, h, w, generator=g)
    dt_w = torch.randn(k, d, r, generator=g) * 0.5
    A = -torch.rand(k * d, n, generator=g) * 2 - 0.1
    B = torch.randn(b, k, n, h, w, generator=g)
    C = torch.randn(b, k, n, h, w, generator=g)
    D = torch.randn(k * d, generator=g)
    bias = torch.randn(k * d, generator=g) * 0.3
    return u, dts, dt_w, A, B, C, D, bias


def test_peer_ss2d_is_the_2d_scan(peer):
    u, dts, dt_w, A, B, C, D, bias = _inputs()
    delta = torch.einsum("bkrhw,kdr->bkdhw", dts, dt_w)
    got = peer.peer_ss2d(_oracle_scan, u, delta, A, B, C, D, bias)
    want = selective_scan_2d(u, delta, A, B, C, D, bias, True, backend="ref")
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


def test_peer_lowrank_drop_in_matches_lowrank_scan(peer):
    u, dts, dt_w, A, B, C, D, bias = _inputs(h=6, w=4, seed=1)
    lowrank = peer.peer_lowrank(_oracle_scan)
    frames = FrameMaps(B[:, 0::2], B[:, 1::2])  # the layout x_proj hands the scan on a GPU
    got = lowrank(u, dts, dt_w, A, frames, C, D, bias, True, merge=False)
    want = selective_scan_2d_lowrank(u, dts, dt_w, A, B, C, D, bias, True, backend="ref")
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="softplus"):
        lowrank(u, dts, dt_w, A, B, C, D, bias, False)


def test_prepare_sources_patches_and_refuses_other_versions(peer, tmp_path):
    csrc = tmp_path / "csrc"
    csrc.mkdir()
    texts = {f: "" for f in peer.SOURCES + peer.HEADERS}
    for f, old, _ in peer.PATCHES:
        texts[f] += old + "\n"
    for f, text in texts.items():
        (csrc / f).write_text(text)
    out = peer.prepare_sources(csrc, tmp_path / "src")
    assert [p.name for p in out] == list(peer.SOURCES)
    fwd = (tmp_path / "src" / "selective_scan_fwd_kernel.cuh").read_text()
    assert "FIXED_SWITCH(params.z_ptr != nullptr, kHasZ, false," in fwd and "BOOL_SWITCH(params.z_ptr" not in fwd
    assert "ComplexFloat" not in (tmp_path / "src" / "selective_scan.cpp").read_text()
    (csrc / "selective_scan_bwd_kernel.cuh").write_text("// another version\n")
    with pytest.raises(SystemExit, match="selective_scan_bwd_kernel.cuh"):
        peer.prepare_sources(csrc, tmp_path / "src2")
    (csrc / "reverse_scan.cuh").unlink()
    with pytest.raises(SystemExit, match="missing reverse_scan.cuh"):
        peer.prepare_sources(csrc, tmp_path / "src3")
