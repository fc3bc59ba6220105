"""``diffmf eval``: pairing by stem, problem reports and exit codes, CSV, the mean table."""
from __future__ import annotations

import csv
import logging
import math
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from diffmf.cli.main import main
from diffmf.metrics import PAPER_METRICS, evaluate

SIZE = (48, 60)
STEMS = ["a01", "a02", "b03"]


def _texture(seed: int, shape=SIZE) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = ndimage.gaussian_filter(rng.normal(size=shape), 1.5)
    return np.round(10 + (x - x.min()) / (x.max() - x.min()) * 230).astype(np.uint8)


@pytest.fixture()
def dataset(tmp_path: Path) -> Dict[str, Path]:
    """ir (gray png), vi (png stored as RGB of a gray image), two methods: ``mean`` (png), ``max`` (bmp)."""
    dirs = {k: tmp_path / k for k in ("ir", "vi", "mean", "max")}
    for d in dirs.values():
        d.mkdir()
    for i, stem in enumerate(STEMS):
        ir, vi = _texture(2 * i), _texture(2 * i + 1)
        Image.fromarray(ir).save(dirs["ir"] / f"{stem}.png")
        Image.fromarray(np.repeat(vi[..., None], 3, axis=2)).save(dirs["vi"] / f"{stem}.png")  # RGB of a gray
        Image.fromarray(((ir.astype(int) + vi + 1) // 2).astype(np.uint8)).save(dirs["mean"] / f"{stem}.png")
        Image.fromarray(np.maximum(ir, vi)).save(dirs["max"] / f"{stem}.bmp")
    return dirs


def _read_csv(path: Path) -> List[Dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _args(d: Dict[str, Path], *extra: str) -> List[str]:
    return ["eval", "--ir", str(d["ir"]), "--vi", str(d["vi"]), *extra]


def test_two_methods_table_and_csv_match_the_api(dataset, tmp_path, capsys):
    out = tmp_path / "res" / "scores.csv"
    rc = main(_args(dataset, "--fused", str(dataset["mean"]), str(dataset["max"]), "--csv", str(out), "--metrics", "paper", "Qabf"))
    assert rc == 0
    text = capsys.readouterr().out
    header = next(line for line in text.splitlines() if line.startswith("method"))
    cols = header.split()[1:]
    assert [c.rstrip("\u2191\u2193^v") for c in cols] == list(PAPER_METRICS) + ["Qabf"]
    assert all(c[-1] in "\u2191^" for c in cols)  # all higher-is-better
    rows = _read_csv(out)
    assert [(r["method"], r["image"]) for r in rows] == [(m, s) for m in ("mean", "max") for s in STEMS]
    assert {r["profile"] for r in rows} == {"cdd"}
    # values equal the Python API on the same images
    ir = np.asarray(Image.open(dataset["ir"] / "a02.png"))
    vi = np.asarray(Image.open(dataset["vi"] / "a02.png"))
    fused = np.asarray(Image.open(dataset["max"] / "a02.bmp"))
    want = evaluate(ir, vi, fused, list(PAPER_METRICS) + ["Qabf"])
    got = next(r for r in rows if r["method"] == "max" and r["image"] == "a02")
    for name, v in want.items():
        assert float(got[name]) == pytest.approx(v, rel=1e-12)
    # the printed means are the CSV means; the best method per column is starred
    table = {line.split()[0]: line.split()[1:] for line in text.splitlines() if line.split()[:1] in (["mean"], ["max"])}
    for j, name in enumerate(list(PAPER_METRICS) + ["Qabf"]):
        for method in ("mean", "max"):
            mean = np.mean([float(r[name]) for r in rows if r["method"] == method])
            assert float(table[method][j].rstrip("*")) == pytest.approx(mean, rel=1e-3)
        starred = [m for m in ("mean", "max") if table[m][j].endswith("*")]
        assert len(starred) == 1


def test_repeated_fused_and_profile(dataset, capsys):
    rc = main(_args(dataset, "--fused", str(dataset["mean"]), "--fused", str(dataset["max"]), "--profile", "tang", "--metrics", "MI,AG"))
    assert rc == 0
    text = capsys.readouterr().out
    assert "tang" in text and "MI in bits" in text
    assert sum(line.split()[:1] in (["mean"], ["max"]) for line in text.splitlines()) == 2


def test_missing_and_mismatched_files_are_reported_and_the_rest_evaluated(dataset, tmp_path, caplog, capsys):
    (dataset["mean"] / "a02.png").unlink()
    Image.fromarray(_texture(99, (40, 60))).save(dataset["max"] / "b03.bmp")  # overwrite with a wrong size
    Image.fromarray(_texture(98)).save(dataset["max"] / "zz9.png")  # no sources
    out = tmp_path / "s.csv"
    with caplog.at_level(logging.ERROR):
        rc = main(_args(dataset, "--fused", str(dataset["mean"]), str(dataset["max"]), "--csv", str(out), "--metrics", "EN,VIF"))
    assert rc == 1
    log = caplog.text
    assert "'a02' is missing" in log
    assert "b03.bmp: size mismatch" in log and "60x40" in log
    assert "zz9.png: no matching ir/vi pair" in log
    rows = _read_csv(out)
    assert sorted((r["method"], r["image"]) for r in rows) == [("max", "a01"), ("max", "a02"), ("mean", "a01"), ("mean", "b03")]
    assert "mean" in capsys.readouterr().out


def test_source_without_partner_and_unreadable_file(dataset, caplog):
    (dataset["vi"] / "b03.png").unlink()
    (dataset["mean"] / "a01.png").write_bytes(b"not a png")
    with caplog.at_level(logging.ERROR):
        rc = main(_args(dataset, "--fused", str(dataset["mean"]), "--metrics", "EN"))
    assert rc == 1
    assert "b03.png: no matching vi image" in caplog.text
    assert "a01.png: cannot read" in caplog.text


def test_16bit_fused_refused_unless_scaled(dataset, caplog):
    for stem in STEMS:
        f = np.asarray(Image.open(dataset["mean"] / f"{stem}.png")).astype(np.uint16) * 257
        (dataset["mean"] / f"{stem}.png").unlink()
        Image.fromarray(f).save(dataset["mean"] / f"{stem}.png")
    with caplog.at_level(logging.ERROR):
        assert main(_args(dataset, "--fused", str(dataset["mean"]), "--metrics", "EN")) == 1
    assert "8-bit" in caplog.text
    assert main(_args(dataset, "--fused", str(dataset["mean"]), "--metrics", "EN", "--16bit", "scale")) == 0


def test_usage_errors_exit_2(dataset, tmp_path, caplog):
    with caplog.at_level(logging.ERROR):
        assert main(_args(dataset, "--fused", str(dataset["mean"]), "--metrics", "EN,BOGUS")) == 2
        assert "unknown metric" in caplog.text
        assert main(_args(dataset, "--fused", str(tmp_path / "nope"))) == 2
        empty = tmp_path / "empty"
        empty.mkdir()
        assert main(["eval", "--ir", str(empty), "--vi", str(empty), "--fused", str(empty)]) == 2


def test_parallel_jobs_give_the_same_csv(dataset, tmp_path):
    one, two = tmp_path / "1.csv", tmp_path / "2.csv"
    assert main(_args(dataset, "--fused", str(dataset["max"]), "--csv", str(one), "--metrics", "paper")) == 0
    assert main(_args(dataset, "--fused", str(dataset["max"]), "--csv", str(two), "--metrics", "paper", "-j", "2")) == 0
    assert _read_csv(one) == _read_csv(two)


def test_nan_values_are_left_out_of_the_mean_with_a_note(dataset, tmp_path, capsys):
    # MS-SSIM (5 levels) is undefined below 161 px: every value NaN, the mean NaN, and a note
    rc = main(_args(dataset, "--fused", str(dataset["max"]), "--metrics", "MS_SSIM,EN"))
    assert rc == 0
    text = capsys.readouterr().out
    assert "MS_SSIM undefined (NaN) for 3 image(s)" in text
    assert math.isnan(float(text.splitlines()[3].split()[2]))
