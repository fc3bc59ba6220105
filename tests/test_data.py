"""Data pipeline: reading, colour, pairing by name, augmentation, sampler."""
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffmf.data import (ImageReadError, PairedImageDataset, PairingError, ResumableSampler, collect_pairs,
                         find_modality_dirs, merge_luma, read_image, rgb_to_ycbcr, split_luma, ycbcr_to_rgb)
from diffmf.data.synthetic import make_synthetic_pairs

SHARED = Path(os.environ.get("DIFFMF_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
DATA = SHARED / "data"


def save(path: Path, arr, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode=mode).save(path)
    return path


def gray(h=8, w=10, v=0):
    return np.full((h, w), v, np.uint8)


# ----------------------------------------------------------------------------- reading
def test_read_8bit_gray_rgb_and_three_channel_gray(tmp_path):
    g = np.arange(80, dtype=np.uint8).reshape(8, 10)
    assert np.array_equal(read_image(save(tmp_path / "g.png", g)), g / np.float32(255))
    rgb = np.random.default_rng(0).integers(0, 256, (8, 10, 3), dtype=np.uint8)
    out = read_image(save(tmp_path / "c.bmp", rgb))
    assert out.shape == (8, 10, 3) and out.dtype == np.float32
    same = np.repeat(g[..., None], 3, axis=2)  # infrared stored as 3 identical channels -> gray
    assert read_image(save(tmp_path / "s.png", same)).shape == (8, 10)


def test_read_16bit_tiff(tmp_path):
    raw = np.array([[0, 1000], [30000, 65535]], dtype=np.uint16)
    p = tmp_path / "thermal.tif"
    Image.fromarray(raw).save(p)
    np.testing.assert_allclose(read_image(p), raw / 65535.0, rtol=1e-6)
    np.testing.assert_allclose(read_image(p, stretch16=True), raw / 65535.0, rtol=1e-6)  # already full range
    narrow = np.array([[7000, 7500], [8000, 9000]], dtype=np.uint16)
    Image.fromarray(narrow).save(p)
    np.testing.assert_allclose(read_image(p, stretch16=True), (narrow - 7000) / 2000.0, rtol=1e-6)


def test_corrupt_and_missing_files_name_the_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    with pytest.raises(ImageReadError, match="broken.png"):
        read_image(bad)
    with pytest.raises(ImageReadError, match="nope.png"):
        read_image(tmp_path / "nope.png")


# ----------------------------------------------------------------------------- colour
def test_ycbcr_matches_pil_and_round_trips():
    rng = np.random.default_rng(1)
    rgb8 = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    ours = rgb_to_ycbcr(rgb8 / 255.0) * 255.0
    pil = np.asarray(Image.fromarray(rgb8).convert("YCbCr"), dtype=np.float64)
    assert np.abs(ours - pil).max() <= 1.01  # PIL uses 8-bit integer arithmetic
    rgb = rng.random((16, 16, 3))
    np.testing.assert_allclose(ycbcr_to_rgb(rgb_to_ycbcr(rgb)), rgb, atol=2e-3)  # (clipping of Cb/Cr aside)
    y, cbcr = split_luma(rgb.astype(np.float32))
    np.testing.assert_allclose(y, rgb @ np.array([0.299, 0.587, 0.114]), atol=1e-6)
    np.testing.assert_allclose(merge_luma(y, cbcr), rgb, atol=2e-3)
    assert split_luma(y)[1] is None and merge_luma(y, None).shape == y.shape


# ----------------------------------------------------------------------------- pairing
@pytest.mark.parametrize("ir_name,vi_name", [("ir", "vi"), ("IR", "VI"), ("Infrared", "Visible"), ("lwir", "VI_Y"),
                                             ("MRI", "PET"), ("mri", "SPECT"), ("MRI", "CT")])
def test_folder_aliases(tmp_path, ir_name, vi_name):
    (tmp_path / ir_name).mkdir()
    (tmp_path / vi_name).mkdir()
    ir, vi = find_modality_dirs(tmp_path)
    assert (ir.name, vi.name) == (ir_name, vi_name)


def test_missing_modality_folder_is_explained(tmp_path):
    (tmp_path / "ir").mkdir()
    (tmp_path / "thermal_rgb").mkdir()
    with pytest.raises(PairingError, match="no visible folder.*thermal_rgb"):
        find_modality_dirs(tmp_path)


def test_pairs_by_stem_not_sort_order_and_lists_unmatched(tmp_path):
    # Sort order would pair a<->b and b<->c; by name only b and c pair, a and d are orphans.
    for s in ("a", "b", "c"):
        save(tmp_path / "ir" / f"{s}.png", gray())
    for s in ("b", "c", "d"):
        save(tmp_path / "vi" / f"{s}.jpg", np.zeros((8, 10, 3), np.uint8))
    with pytest.raises(PairingError, match=r"2 file\(s\) have no partner.*a\.png.*d\.jpg"):
        collect_pairs([tmp_path])
    pairs = collect_pairs([tmp_path], strict=False)
    assert [(p.name, p.ir.name, p.vi.name) for p in pairs] == [("b", "b.png", "b.jpg"), ("c", "c.png", "c.jpg")]


def test_mixed_extensions_several_roots_and_size_mismatch(tmp_path):
    r1 = make_synthetic_pairs(tmp_path / "r1", 2, (8, 12), ir_ext=".bmp", vi_ext=".jpg")
    r2 = make_synthetic_pairs(tmp_path / "r2", 3, (10, 8), ir_ext=".tif", vi_ext=".png")
    pairs = collect_pairs([r1, r2])
    assert len(pairs) == 5 and pairs[0].name == "r1/pair_000" and pairs[-1].name == "r2/pair_002"
    save(r2 / "ir" / "pair_000.tif", gray(9, 8))
    with pytest.raises(PairingError, match=r"pair_000\.tif is 8x9 but .*pair_000\.png is 8x10"):
        collect_pairs([r1, r2])


def test_duplicate_stems_are_an_error(tmp_path):
    save(tmp_path / "ir" / "x.png", gray())
    save(tmp_path / "ir" / "x.jpg", gray())
    save(tmp_path / "vi" / "x.png", gray())
    with pytest.raises(PairingError, match="share a name"):
        collect_pairs([tmp_path])


# ----------------------------------------------------------------------------- dataset
def test_dataset_crops_flips_and_determinism(tmp_path):
    root = make_synthetic_pairs(tmp_path, 3, (20, 24))
    ds = PairedImageDataset([root], crop_size=16)
    a, b = ds[(1, 123)], ds[(1, 123)]
    assert a["ir"].shape == (1, 16, 16) and a["vi"].shape == (1, 16, 16) and a["name"] == "pair_001"
    assert torch.equal(a["ir"], b["ir"]) and torch.equal(a["vi"], b["vi"])
    assert any(not torch.equal(ds[(1, s)]["ir"], a["ir"]) for s in range(5))
    small = PairedImageDataset([root], crop_size=32)[0]  # smaller than the crop: reflect-padded
    assert small["ir"].shape == (1, 32, 32)
    full = PairedImageDataset([root], crop_size=0, augment=False)[2]
    assert full["ir"].shape == (1, 20, 24) and 0.0 <= float(full["vi"].min()) and float(full["vi"].max()) <= 1.0


def test_sampler_shards_and_resumes():
    s0 = ResumableSampler(10, seed=3, rank=0, world_size=2)
    s1 = ResumableSampler(10, seed=3, rank=1, world_size=2)
    a, b = [i for i, _ in s0], [i for i, _ in s1]
    assert len(a) == len(b) == 5 and sorted(a + b) == list(range(10))
    full = list(s0)
    s0.set_start(2)
    assert list(s0) == full[2:]
    s0.set_start(0)
    s0.set_epoch(1)
    assert list(s0) != full
    assert len({seed for _, seed in full}) == len(full)


# ----------------------------------------------------------------------------- shared data
@pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data not found at {DATA} (set DIFFMF_SHARED)")
def test_shared_sets_pair_completely():
    assert len(collect_pairs([DATA / "test" / "TNO25"])) == 25
    med = collect_pairs([DATA / "test" / "Medical" / "MRI_PET"])
    assert len(med) == 42 and med[0].ir.parent.name == "MRI" and med[0].vi.parent.name == "PET"
    ds = PairedImageDataset([DATA / "train" / "MSRS8"], crop_size=128)
    assert ds[(0, 0)]["vi"].shape == (1, 128, 128)
