"""Picture grids (ir | vi | fused) for docs/results.md, a few pairs per test set.

    python benchmarks/make_grids.py --test .data/test --fused fused --out docs/images
"""
from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

SETS = {  # set -> (ir folder, vi folder, fused folder name)
    "TNO25": ("TNO25/ir", "TNO25/vi", "TNO25"),
    "RoadScene50": ("RoadScene50/ir", "RoadScene50/vi", "RoadScene50"),
    "MSRS36": ("MSRS36/ir", "MSRS36/vi", "MSRS36"),
    "MRI_CT": ("Medical/MRI_CT/MRI", "Medical/MRI_CT/CT", "MRI_CT"),
    "MRI_PET": ("Medical/MRI_PET/MRI", "Medical/MRI_PET/PET", "MRI_PET"),
    "MRI_SPECT": ("Medical/MRI_SPECT/MRI", "Medical/MRI_SPECT/SPECT", "MRI_SPECT"),
}


def grid(rows, height: int = 200) -> Image.Image:
    """rows: list of (ir, vi, fused) images -> one RGB image, each row scaled to ``height``."""
    scaled = []
    for trio in rows:
        ims = [im.convert("RGB") for im in trio]
        w = round(ims[0].width * height / ims[0].height)
        scaled.append([im.resize((w, height), Image.BICUBIC) for im in ims])
    width = max(sum(im.width for im in r) + 4 * (len(r) - 1) for r in scaled)
    out = Image.new("RGB", (width, len(scaled) * (height + 4) - 4), "white")
    y = 0
    for r in scaled:
        x = 0
        for im in r:
            out.paste(im, (x, y))
            x += im.width + 4
        y += height + 4
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--test", type=Path, required=True)
    ap.add_argument("--fused", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--per-set", type=int, default=3)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, (ir_dir, vi_dir, fused_dir) in SETS.items():
        fused = sorted((args.fused / fused_dir).glob("*"))
        if not fused:
            continue
        step = max(1, len(fused) // args.per_set)
        rows = []
        for f in fused[::step][: args.per_set]:
            ir = next((args.test / ir_dir).glob(f.stem + ".*"))
            vi = next((args.test / vi_dir).glob(f.stem + ".*"))
            rows.append((Image.open(ir), Image.open(vi), Image.open(f)))
        grid(rows).save(args.out / f"grid_{name}.jpg", quality=88)


if __name__ == "__main__":
    main()
