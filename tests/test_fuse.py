"""diffmf fuse: sizes, colour, file formats, failures, no-overwrite, tiling, OOM fall-back, Python API."""
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import diffmf
from diffmf.cli.main import main as cli
from diffmf.data.color import rgb_to_ycbcr
from diffmf.data.synthetic import synthetic_pair
from diffmf.engine.checkpoint import export_weights
from diffmf.engine.fuse import Fuser, minmax_stretch
from diffmf.engine.tiling import tile_starts, tiled_apply

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DIFFMF_SHARED", REPO.parent / "shared"))


pytestmark = pytest.mark.usefixtures("one_thread")

# Tiled vs whole-image fusion of a trained network (with its tolerance): tests/test_train.py.


@pytest.fixture(scope="module")
def model():
    from diffmf.model import build_model

    torch.manual_seed(0)
    return build_model("diffmf_tiny").eval()


@pytest.fixture(scope="module")
def weights(model, tmp_path_factory):
    return export_weights(model, tmp_path_factory.mktemp("w") / "tiny.safetensors")


def u8(a):
    return np.clip(np.rint(a * 255), 0, 255).astype(np.uint8)


def write_pair(folder: Path, name: str, h: int, w: int, *, rgb=True, seed=0, vi_ext=".png"):
    ir, vi = synthetic_pair(h, w, seed, rgb)
    vi = 0.35 + 0.3 * vi  # moderate colours: no clipping when the chroma is restored
    (folder / "ir").mkdir(parents=True, exist_ok=True)
    (folder / "vi").mkdir(parents=True, exist_ok=True)
    Image.fromarray(u8(ir)).save(folder / "ir" / f"{name}.png")
    Image.fromarray(u8(vi)).save(folder / "vi" / f"{name}{vi_ext}")
    return folder / "ir" / f"{name}.png", folder / "vi" / f"{name}{vi_ext}"


def test_odd_sizes_and_rgb_colour_from_the_visible_image(tmp_path, weights):
    ir, vi = write_pair(tmp_path / "in", "odd", 23, 37)
    out = tmp_path / "out"
    assert cli(["fuse", "--ir", str(ir), "--vi", str(vi), "-o", str(out), "--weights", str(weights), "--quiet"]) == 0
    fused = Image.open(out / "odd.png")
    assert fused.size == (37, 23) and fused.mode == "RGB"
    f = rgb_to_ycbcr(np.asarray(fused) / 255.0)
    v = rgb_to_ycbcr(np.asarray(Image.open(vi)) / 255.0)
    np.testing.assert_allclose(f[..., 1:], v[..., 1:], atol=2.5 / 255)  # Cb, Cr kept (8-bit rounding)
    assert cli(["fuse", "--ir", str(ir), "--vi", str(vi), "-o", str(tmp_path / "g.png"), "--weights", str(weights), "--gray"]) == 0
    assert Image.open(tmp_path / "g.png").mode == "L"


def test_process_entry_point_exit_codes_and_flushed_log(tmp_path, weights):
    """`python -m diffmf fuse` in its own process: the entry point ends it with os._exit after
    fuse (no interpreter teardown), so check what must survive that: the outputs on disk, the
    final log line, and the exit code (0 all fused; 1 when a pair failed; 2 bad arguments)."""
    src = tmp_path / "in"
    write_pair(src, "a", 16, 20)
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), TRITON_INTERPRET="0")
    run = lambda *extra: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "diffmf", "fuse", "--ir", str(src / "ir"), "--vi", str(src / "vi"), "--weights", str(weights),
         "--device", "cpu", "--quiet", *extra], capture_output=True, text=True, timeout=300, env=env)
    proc = run("-o", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "fused 1 of 1 pair(s)" in proc.stderr
    assert Image.open(tmp_path / "out" / "a.png").size == (20, 16)
    Image.fromarray(np.zeros((16, 20), np.uint8)).save(src / "ir" / "lonely.png")
    proc = run("-o", str(tmp_path / "out2"))
    assert proc.returncode == 1 and "lonely" in proc.stderr and (tmp_path / "out2" / "a.png").is_file()
    assert run("-o", str(src / "vi")).returncode == 2  # would write over the inputs


def test_folder_with_16bit_tiff_gray_visible_and_failures(tmp_path, weights, caplog):
    src = tmp_path / "in"
    write_pair(src, "good_rgb", 20, 24, seed=1, vi_ext=".jpg")
    write_pair(src, "gray_vi", 20, 24, rgb=False, seed=2)
    # 16-bit thermal TIFF with a gray visible partner
    Image.fromarray((np.random.default_rng(3).random((18, 22)) * 65535).astype(np.uint16)).save(src / "ir" / "thermal16.tif")
    Image.fromarray(np.full((18, 22), 120, np.uint8)).save(src / "vi" / "thermal16.png")
    # failures: missing partner, corrupt file, size mismatch
    Image.fromarray(np.zeros((20, 24), np.uint8)).save(src / "ir" / "lonely.png")
    write_pair(src, "corrupt", 20, 24)
    (src / "vi" / "corrupt.png").write_bytes(b"not an image at all")
    write_pair(src, "mismatch", 20, 24)
    Image.fromarray(np.zeros((21, 24), np.uint8)).save(src / "ir" / "mismatch.png")
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO):
        rc = cli(["fuse", "--ir", str(src / "ir"), "--vi", str(src / "vi"), "-o", str(out), "--weights", str(weights)])
    assert rc == 1
    assert sorted(p.name for p in out.iterdir()) == ["good_rgb.jpg", "gray_vi.png", "thermal16.png"]
    assert Image.open(out / "good_rgb.jpg").mode == "RGB" and Image.open(out / "gray_vi.png").mode == "L"
    assert Image.open(out / "thermal16.png").size == (22, 18)
    text = caplog.text
    assert "3 failure(s)" in text
    assert "lonely.png: no visible image with the same name" in text
    assert "corrupt.png: cannot read image" in text
    assert "size mismatch" in text and "mismatch.png is 24x21" in text


def test_never_overwrites_inputs(tmp_path, weights):
    ir, vi = write_pair(tmp_path, "x", 16, 16)
    before = vi.read_bytes()
    args = ["fuse", "--ir", str(tmp_path / "ir"), "--vi", str(tmp_path / "vi"), "--weights", str(weights)]
    assert cli(args + ["-o", str(tmp_path / "vi")]) == 2
    assert cli(["fuse", "--ir", str(ir), "--vi", str(vi), "-o", str(vi), "--weights", str(weights)]) == 2
    assert cli(["fuse", "--ir", str(ir), "--vi", str(vi), "-o", str(tmp_path / "vi"), "--weights", str(weights)]) == 2
    assert vi.read_bytes() == before


def test_missing_default_weights_is_explained(tmp_path, caplog, monkeypatch):
    import diffmf.weights as weights_mod
    from diffmf.weights import DEFAULT

    # an install without the weights file (the shipped one stays untouched)
    monkeypatch.setattr(weights_mod, "WEIGHTS_DIR", tmp_path / "no-weights-here")
    ir, vi = write_pair(tmp_path, "x", 16, 16)
    assert cli(["fuse", "--ir", str(ir), "--vi", str(vi), "-o", str(tmp_path / "o")]) == 2
    assert f"weights '{DEFAULT}' (the default) are not included" in caplog.text and "--weights" in caplog.text


def test_tile_blending_is_exact_for_a_local_operation():
    g = torch.Generator().manual_seed(0)
    ir, vi = torch.rand(1, 1, 70, 53, generator=g), torch.rand(1, 1, 70, 53, generator=g)
    fn = lambda a, b: 0.3 * a + 0.7 * b ** 2  # noqa: E731 - pointwise: tiles must reproduce it exactly
    for kind in ("cosine", "linear"):
        torch.testing.assert_close(tiled_apply(fn, ir, vi, 24, 8, kind), fn(ir, vi), rtol=0, atol=1e-6)
    assert tile_starts(70, 24, 8) == [0, 16, 32, 46] and tile_starts(20, 24, 8) == [0]


def test_out_of_memory_falls_back_to_tiles(model, caplog):
    class Greedy(torch.nn.Module):  # runs out of "memory" above 32x32 pixels
        def __init__(self, inner):
            super().__init__()
            self.inner, self.config = inner, inner.config

        def forward(self, ir, vi):
            if ir.shape[-1] * ir.shape[-2] > 32 * 32:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 GiB")
            return self.inner(ir, vi)

    fuser = Fuser(Greedy(model))
    fuser.oom_tiles = (48, 32)  # 48-pixel tiles still fail, 32 fit
    fuser_ok = Fuser(model, tile=32, tile_overlap=8)  # the fall-back's tiling
    ir, vi = torch.rand(1, 1, 60, 52), torch.rand(1, 1, 60, 52)
    with caplog.at_level(logging.WARNING):
        out = fuser.fuse_y(ir, vi)
    assert out.shape == (1, 1, 60, 52) and "retrying in 32-pixel tiles" in caplog.text
    assert torch.equal(out, fuser_ok.fuse_y(ir, vi))


def test_python_api_types(model):
    ir, vi = synthetic_pair(20, 28, 7)
    out = diffmf.fuse(u8(ir), u8(vi), model=model)
    assert out.dtype == np.uint8 and out.shape == (20, 28, 3)
    pil = diffmf.fuse(Image.fromarray(u8(ir)), Image.fromarray(u8(vi)), model=model)
    assert isinstance(pil, Image.Image) and pil.mode == "RGB" and pil.size == (28, 20)
    t = diffmf.fuse(torch.from_numpy(ir), torch.from_numpy(vi).permute(2, 0, 1), model=model)
    assert isinstance(t, torch.Tensor) and t.shape == (3, 20, 28) and 0 <= float(t.min()) and float(t.max()) <= 1
    g = diffmf.fuse(ir, vi, model=model, gray=True)
    assert g.shape == (20, 28) and g.dtype == np.float32
    np.testing.assert_allclose(np.asarray(pil, dtype=np.float64), out.astype(np.float64), atol=1)


def test_minmax_normalize_is_a_per_image_affine_stretch_onto_0_1(model):
    g = torch.Generator().manual_seed(3)
    ir, vi = torch.rand(2, 1, 29, 41, generator=g), torch.rand(2, 1, 29, 41, generator=g)
    plain = Fuser(model).fuse_y(ir, vi)
    for tile in (0, 16):  # whole image, and tiles: the stretch uses the min/max of the assembled image
        base = Fuser(model, tile=tile, tile_overlap=4).fuse_y(ir, vi)
        out = Fuser(model, tile=tile, tile_overlap=4, normalize="minmax").fuse_y(ir, vi)
        for b in range(2):  # each image on its own min..max
            lo, hi = base[b].min(), base[b].max()
            assert hi - lo > 0.01  # the test must see a real stretch
            torch.testing.assert_close(out[b], (base[b] - lo) / (hi - lo), rtol=0, atol=1e-6)
            assert float(out[b].min()) == 0.0 and float(out[b].max()) == 1.0
    assert not torch.equal(plain, Fuser(model, normalize="minmax").fuse_y(ir, vi))
    flat = torch.full((1, 1, 5, 6), 0.4)
    assert torch.equal(minmax_stretch(flat), flat)  # a constant image is left as is, not NaN
    with pytest.raises(ValueError, match="normalize"):
        Fuser(model, normalize="max")


def test_minmax_normalize_cli_and_api_keep_colour(tmp_path, weights, model):
    ir, vi = write_pair(tmp_path / "in", "c", 21, 30)
    base = ["fuse", "--ir", str(ir), "--vi", str(vi), "--weights", str(weights), "--quiet"]
    assert cli(base + ["-o", str(tmp_path / "plain.png"), "--gray"]) == 0
    assert cli(base + ["-o", str(tmp_path / "mm.png"), "--gray", "--normalize", "minmax"]) == 0
    plain = np.asarray(Image.open(tmp_path / "plain.png"), dtype=np.float64)
    mm = np.asarray(Image.open(tmp_path / "mm.png"), dtype=np.float64)
    assert mm.min() == 0 and mm.max() == 255 and (plain.min() > 0 or plain.max() < 255)
    expect = (plain - plain.min()) / (plain.max() - plain.min()) * 255  # same stretch, up to 8-bit rounding
    assert np.abs(mm - expect).max() <= 255 / (plain.max() - plain.min()) + 1
    assert cli(base + ["-o", str(tmp_path / "mmc.png"), "--normalize", "minmax"]) == 0
    rgb = np.asarray(Image.open(tmp_path / "mmc.png"))
    f, v = rgb_to_ycbcr(rgb / 255.0), rgb_to_ycbcr(np.asarray(Image.open(vi)) / 255.0)
    inside = ((rgb > 0) & (rgb < 255)).all(-1)  # at Y = 0 or 1 any chroma is out of gamut and clipped
    assert inside.mean() > 0.5
    np.testing.assert_allclose(f[inside][:, 1:], v[inside][:, 1:], atol=2.5 / 255)  # chroma still the visible's
    i, w = synthetic_pair(20, 28, 7, False)
    y = diffmf.fuse(i, w, model=model, normalize="minmax")
    assert float(y.min()) == 0.0 and float(y.max()) == 1.0


def test_authors_test_command(tmp_path, weights):
    data = tmp_path / "dataset" / "test" / "VIF"
    write_pair(data, "a", 16, 20)
    models = tmp_path / "ckpt" / "models"
    models.mkdir(parents=True)
    (models / "48000_G.safetensors").write_bytes(Path(weights).read_bytes())
    cmd = [sys.executable, str(REPO / "test_DIFFMF.py"), "--model_path=./ckpt", "--iter_number=48000", "--dataset=VIF",
           "--A_dir=ir", "--B_dir=vi", "--device=cpu"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert Image.open(tmp_path / "results" / "DIFFMF_VIF" / "a.png").size == (20, 16)


@pytest.mark.skipif(not (SHARED / "data").is_dir(), reason=f"shared data not found at {SHARED / 'data'} (set DIFFMF_SHARED)")
def test_medical_pet_colour_is_restored(tmp_path, model):
    from diffmf.data import collect_pairs, read_image

    pair = collect_pairs([SHARED / "data" / "test" / "Medical" / "MRI_PET"])[0]  # MRI -> ir slot, PET -> vi slot
    mri, pet = read_image(pair.ir)[96:128, 96:128], read_image(pair.vi)[96:128, 96:128]  # a crop keeps it fast
    assert mri.ndim == 2 and pet.shape == (32, 32, 3)
    fused = diffmf.fuse(mri, pet, model=model)
    assert fused.shape == (32, 32, 3)
    np.testing.assert_allclose(rgb_to_ycbcr(fused)[..., 1:], rgb_to_ycbcr(pet)[..., 1:], atol=0.02)


# ----------------------------------------------------------------------------- fuse_pairs: pipelined I/O
class Blend(torch.nn.Module):
    """A cheap deterministic stand-in for the network."""

    def forward(self, ir, vi):
        return 0.4 * ir + 0.6 * vi.sqrt()


def test_graph_size_limit_picks_which_calls_are_replayed():
    """Only padded sizes within ``graph_max_pixels`` go through the graphed call (default
    GRAPH_MAX_PIXELS; 0: every size); the others run the network directly."""
    from diffmf.engine import fuse as fuse_mod

    def routed(fuser, sizes):
        calls = []
        fuser._graphed = lambda ir, vi: calls.append(tuple(ir.shape[-2:])) or fuser._forward(ir, vi)
        for h, w in sizes:
            x = torch.rand(1, 1, h, w)
            fuser.fuse_y(x, x)
        return calls

    big = (fuse_mod.GRAPH_MAX_PIXELS // 256 + 1, 256)  # one row over the limit
    assert routed(Fuser(Blend()), [(16, 16), big]) == [(16, 16)]
    assert routed(Fuser(Blend(), graph_max_pixels=0), [(16, 16), big]) == [(16, 16), big]
    assert routed(Fuser(Blend(), graph_max_pixels=200), [(10, 20), (10, 21)]) == [(10, 20)]
    assert Fuser(Blend(), cuda_graphs=True)._graphed is None  # the CPU never graphs
    with pytest.raises(ValueError, match="graph_max_pixels"):
        Fuser(Blend(), graph_max_pixels=-1)


def _jobs(src: Path, out: Path, ext=None):
    from diffmf.cli.fuse import plan_jobs

    jobs, missing = plan_jobs(src / "ir", src / "vi", out, ext)
    assert not missing
    return jobs


def _files(folder: Path):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_pipelined_fuse_pairs_is_byte_identical_to_sequential(tmp_path, model):
    from diffmf.engine.fuse import fuse_pairs

    src = tmp_path / "in"
    for i, (ext, rgb) in enumerate([(".png", True), (".jpg", True), (".bmp", False), (".png", False),
                                    (".bmp", True), (".jpg", False), (".png", True)]):
        write_pair(src, f"p{i}", 12 + i, 17 + 2 * i, rgb=rgb, seed=i, vi_ext=ext)
    fuser = Fuser(model)
    reports = {}
    for workers, prefetch in [(0, 0), (2, 2), (1, 0), (3, 5)]:
        out = tmp_path / f"out{workers}{prefetch}"
        jobs = _jobs(src, out)
        # the same output twice: the later job wins, as one after the other
        jobs.append((jobs[1][0], jobs[0][1]))
        rep = fuse_pairs(fuser, jobs, workers=workers, prefetch=prefetch, progress=False)
        assert rep.ok and rep.written == [o for _, o in jobs]
        reports[workers, prefetch] = _files(out)
    ref = reports.pop((0, 0))
    assert len(ref) == 7
    for key, files in reports.items():
        assert files == ref, key


def _failing_folder(src: Path):
    for i in range(6):
        write_pair(src, f"f{i}", 14, 18, seed=i)
    (src / "vi" / "f1.png").write_bytes(b"not an image at all")  # corrupt, in the middle
    Image.fromarray(np.zeros((15, 18), np.uint8)).save(src / "ir" / "f3.png")  # size mismatch


@pytest.mark.parametrize("workers", [0, 2])
def test_failures_in_the_middle_are_reported_and_the_others_written(tmp_path, caplog, workers):
    from diffmf.engine.fuse import fuse_pairs

    src, out = tmp_path / "in", tmp_path / "out"
    _failing_folder(src)
    with caplog.at_level(logging.ERROR):
        rep = fuse_pairs(Fuser(Blend()), _jobs(src, out), workers=workers, progress=False)
    assert [n for n, _ in rep.failed] == ["f1", "f3"]
    assert "cannot read image" in rep.failed[0][1] and "size mismatch" in rep.failed[1][1]
    assert rep.written == [out / f"f{i}.png" for i in (0, 2, 4, 5)]
    assert sorted(p.name for p in out.iterdir()) == ["f0.png", "f2.png", "f4.png", "f5.png"]  # no temporary files
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors[0].startswith("f1: ") and errors[1].startswith("f3: ") and len(errors) == 2


def test_write_error_is_reported_for_that_pair_only(tmp_path):
    from diffmf.engine.fuse import fuse_pairs

    src, out = tmp_path / "in", tmp_path / "out"
    for i in range(5):
        write_pair(src, f"w{i}", 10, 12, seed=i)
    (tmp_path / "blocker").write_text("a file, not a folder")
    jobs = _jobs(src, out)
    jobs[2] = (jobs[2][0], tmp_path / "blocker" / "w2.png")  # its parent is a file
    rep = fuse_pairs(Fuser(Blend()), jobs, workers=2, progress=False)
    assert [n for n, _ in rep.failed] == ["w2"]
    assert rep.written == [out / f"w{i}.png" for i in (0, 1, 3, 4)] and all(p.is_file() for p in rep.written)
    seq = fuse_pairs(Fuser(Blend()), jobs, workers=0, progress=False)
    assert seq.failed == rep.failed and seq.written == rep.written


def test_no_threads_left_and_other_errors_propagate(tmp_path):
    import threading

    from diffmf.engine.fuse import fuse_pairs

    src, out = tmp_path / "in", tmp_path / "out"
    for i in range(6):
        write_pair(src, f"t{i}", 10, 12, seed=i)
    jobs = _jobs(src, out)
    before = threading.active_count()
    assert fuse_pairs(Fuser(Blend()), jobs, workers=3, prefetch=3, progress=False).ok
    assert threading.active_count() == before

    class Broken(Blend):  # a bug (not a pair failure) at the fourth pair
        calls = 0

        def forward(self, ir, vi):
            Broken.calls += 1
            if Broken.calls == 4:
                raise RuntimeError("a bug")
            return super().forward(ir, vi)

    out2 = tmp_path / "out2"
    with pytest.raises(RuntimeError, match="a bug"):
        fuse_pairs(Fuser(Broken()), _jobs(src, out2), workers=2, progress=False)
    assert threading.active_count() == before
    # the pairs fused before the error were written, as one after the other
    assert sorted(p.name for p in out2.iterdir()) == ["t0.png", "t1.png", "t2.png"]


def test_cli_io_threads_zero(tmp_path, weights):
    src = tmp_path / "in"
    write_pair(src, "a", 12, 14)
    write_pair(src, "b", 12, 14, seed=1)
    for n in ("0", "2"):
        assert cli(["fuse", "--ir", str(src / "ir"), "--vi", str(src / "vi"), "-o", str(tmp_path / n),
                    "--weights", str(weights), "--quiet", "--io-threads", n]) == 0
    assert _files(tmp_path / "0") == _files(tmp_path / "2")
