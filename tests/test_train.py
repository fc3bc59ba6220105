"""Training on synthetic pairs (tiny preset, CPU): loss goes down, exact resume, weights files,
KAIR options."""
import json
from pathlib import Path

import pytest
import torch

from diffmf.data.synthetic import make_synthetic_pairs
from diffmf.engine.checkpoint import WeightsMismatchError, export_weights, load_checkpoint, load_weights, read_weights
from diffmf.engine.config import load_config
from diffmf.engine.kair import kair_to_config, read_kair_json
from diffmf.engine.trainer import Trainer, params_digest

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def pairs_root(tmp_path_factory):
    return make_synthetic_pairs(tmp_path_factory.mktemp("syn"), n=6, size=(24, 28))


def tiny(out: Path, root: Path, *extra: str):
    return load_config("diffmf_tiny", [f"data.roots=[{root}]", f"out_dir={out}", "data.crop_size=16", "data.batch_size=2",
                                       "data.num_workers=0", "train.log_every=1", "train.checkpoint_every=0",
                                       "train.image_every=0", "train.tensorboard=false", *extra])


# Tiled fusion (48x56 image, 32-pixel tiles, 16-pixel blended overlaps) vs whole-image fusion
# with the network trained below, in [0, 1] units: the documented tolerance.
TILE_MEAN_TOL, TILE_MAX_TOL = 0.005, 0.03


@pytest.fixture(scope="module")
def trained(tmp_path_factory, pairs_root):
    out = tmp_path_factory.mktemp("trained") / "run"
    cfg = tiny(out, pairs_root, "train.steps=30", "optim.lr=2e-3", "val.every=30", "val.max_images=1",
               f"val.roots=[{pairs_root}]", "train.image_every=30")
    trainer = Trainer(cfg)
    summary = trainer.fit()
    return trainer, summary, out


def test_thirty_steps_lower_the_loss_and_validate(trained):
    trainer, summary, out = trained
    losses = [h["loss"] for h in trainer.history]
    assert len(losses) == 30 and all(torch.isfinite(torch.tensor(losses)))
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.9 * first, f"loss did not go down: {first:.4f} -> {last:.4f}"
    assert summary["step"] == 30 and not summary["stopped"]
    for name in ("train.log", "config.yaml", "scalars.jsonl", "weights.safetensors", "models/30_G.safetensors",
                 "checkpoints/latest.pt", "checkpoints/step_00000030.pt", "final_state.json"):
        assert (out / name).is_file(), name
    records = [json.loads(line) for line in (out / "scalars.jsonl").read_text().splitlines()]
    val = [r for r in records if "val/EN" in r]
    assert val and val[0]["step"] == 30 and all(k in val[0] for k in ("val/SD", "val/MI", "val/VIF", "val/AG"))
    assert list((out / "samples").glob("*.png"))
    assert "step 30/30" in (out / "train.log").read_text()


def test_tiled_fusion_of_the_trained_network_matches_whole_images(trained):
    from diffmf.data.synthetic import synthetic_pair
    from diffmf.engine.fuse import Fuser

    model = trained[0].model.eval()
    ir, vi = (torch.from_numpy(a)[None, None] for a in synthetic_pair(48, 56, 5, rgb=False))
    whole = Fuser(model).fuse_y(ir, vi)
    tiled = Fuser(model, tile=32, tile_overlap=16).fuse_y(ir, vi)
    diff = (whole - tiled).abs()
    assert whole.std() > 0.05  # the trained network's output depends on its input
    assert diff.mean() < TILE_MEAN_TOL and diff.max() < TILE_MAX_TOL, (diff.mean().item(), diff.max().item())


def _states(run: Path):
    s = load_checkpoint(run / "checkpoints" / "latest.pt")
    return s


def _assert_identical(a, b, where=""):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_identical(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_identical(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def test_interrupted_and_resumed_run_is_bit_identical(tmp_path, pairs_root):
    steps = 6  # 3 steps per epoch: the interruption falls mid-epoch-2 boundary and resumes across epochs
    full = Trainer(tiny(tmp_path / "full", pairs_root, f"train.steps={steps}"))
    full.fit()

    def interrupt(trainer, step):
        if step == 4:
            trainer.request_stop()  # what the SIGINT/SIGTERM handler does

    # The interrupted run uses data-loader workers (2, then 1): the data must not depend on them.
    first = Trainer(tiny(tmp_path / "split", pairs_root, f"train.steps={steps}", "data.num_workers=2"), on_step=interrupt)
    s1 = first.fit()
    assert s1["stopped"] and s1["step"] == 4
    assert load_checkpoint(tmp_path / "split" / "checkpoints" / "latest.pt")["step"] == 4
    second = Trainer(tiny(tmp_path / "split", pairs_root, f"train.steps={steps}", "data.num_workers=1"))  # resume=auto
    assert second.step == 4
    s2 = second.fit()
    assert s2["step"] == steps and not s2["stopped"]
    a, b = _states(tmp_path / "full"), _states(tmp_path / "split")
    for key in ("model", "optimizer", "scheduler", "ema", "step", "epoch", "batch_in_epoch"):
        _assert_identical(a[key], b[key], key)
    assert params_digest(full.model) == params_digest(second.model)


def test_resume_takes_an_extended_schedule_from_the_config(tmp_path, pairs_root):
    """A finished cosine run, resumed with more steps and a warm restart where it ended, is the
    run that had that schedule from the start (the checkpoint's schedule does not win)."""
    sched = ("optim.scheduler=cosine", "optim.warmup_steps=1", "optim.min_lr_ratio=0.1")
    longer = (*sched, "train.steps=6", "optim.restarts=[3]", "optim.restart_lr_ratio=0.5")
    whole = Trainer(tiny(tmp_path / "whole", pairs_root, *longer))
    whole.fit()
    first = Trainer(tiny(tmp_path / "split", pairs_root, *sched, "train.steps=3"))
    assert first.fit()["step"] == 3
    assert first.optimizer.param_groups[0]["lr"] == pytest.approx(first.cfg.optim.lr * 0.1)
    second = Trainer(tiny(tmp_path / "split", pairs_root, *longer))
    assert second.step == 3
    assert second.optimizer.param_groups[0]["lr"] == pytest.approx(second.cfg.optim.lr * 0.5)  # one warm-up step to the restart peak
    second.fit()
    assert [h["lr"] for h in second.history] == [h["lr"] for h in whole.history][3:]
    a, b = _states(tmp_path / "whole"), _states(tmp_path / "split")
    for key in ("model", "optimizer", "ema", "step"):
        _assert_identical(a[key], b[key], key)


def test_time_limit_stops_like_an_interrupt(tmp_path, pairs_root):
    out = tmp_path / "run"
    summary = Trainer(tiny(out, pairs_root, "train.steps=50", "train.time_limit=1e-6")).fit()
    assert summary["stopped"] and summary["step"] == 1  # the limit is checked after every step
    assert load_checkpoint(out / "checkpoints" / "latest.pt")["step"] == 1
    resumed = Trainer(tiny(out, pairs_root, "train.steps=3"))
    assert resumed.step == 1 and resumed.fit()["step"] == 3


def test_weights_round_trip_and_strict_loading(tmp_path):
    from diffmf.model import build_model

    torch.manual_seed(0)
    model = build_model("diffmf_tiny")
    path = export_weights(model, tmp_path / "w.safetensors")
    state, cfg, meta = read_weights(path)
    assert cfg == model.config and "diffmf.model_config" in meta
    loaded = load_weights(path)
    assert params_digest(loaded) == params_digest(model)
    half = load_weights(export_weights(model, tmp_path / "h.safetensors", dtype=torch.float16))
    assert next(half.parameters()).dtype == torch.float32
    # Keys that do not match: a clear message naming them.
    sd = model.state_dict()
    dropped = sorted(sd)[0]
    bad = {k: v for k, v in sd.items() if k != dropped}
    bad["extra.weight"] = torch.zeros(1)
    export_weights(bad, tmp_path / "bad.safetensors", model.config)
    with pytest.raises(WeightsMismatchError, match=rf"1 missing key\(s\): {dropped}.*1 unexpected key\(s\): extra.weight"):
        load_weights(tmp_path / "bad.safetensors")
    # Weights of one preset forced into another: shape mismatches are listed.
    with pytest.raises(WeightsMismatchError, match="shape mismatch|missing key"):
        load_weights(path, config=build_model("diffmf_paper").config)


def test_kair_options_map_onto_the_config(tmp_path):
    cfg = kair_to_config(read_kair_json(REPO / "options" / "DIFFMF" / "DIFFMF.json"))
    assert cfg.optim.lr == 2e-5 and cfg.data.batch_size == 4 and cfg.data.crop_size == 128
    assert cfg.data.dirs == [("dataset/train/M3FD/ir", "dataset/train/M3FD/vi")]
    assert cfg.model.embed_dim == 32 and cfg.model.d_state == 16 and cfg.ema.decay == 0.999
    assert (cfg.loss.w_ssim, cfg.loss.w_text, cfg.loss.w_int) == (10.0, 20.0, 20.0)
    assert cfg.out_dir == str(Path("experiments") / "DIFFMF")


def test_train_diffmf_shim_runs_the_kair_file(tmp_path, pairs_root, monkeypatch):
    import importlib.util

    opt = read_kair_json(REPO / "options" / "DIFFMF" / "DIFFMF.json")
    opt["path"]["root"] = str(tmp_path)
    opt["datasets"]["train"].update(dataroot_A=str(pairs_root / "ir"), dataroot_B=str(pairs_root / "vi"), H_size=16,
                                    dataloader_batch_size=2, dataloader_num_workers=0)
    opt["datasets"].pop("test")
    opt["netG"].update(embed_dim=8, d_state=4, num_stages=1)
    opt["train"].update(total_iter=2, checkpoint_save=2, checkpoint_print=1)
    f = tmp_path / "opt.json"
    f.write_text("// a comment, as KAIR files have\n" + json.dumps(opt))
    spec = importlib.util.spec_from_file_location("train_DIFFMF", REPO / "train_DIFFMF.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert mod.main(["--opt", str(f), "--dist", "True", "--local_rank=0", "--set", "train.tensorboard=false"]) == 0
    assert (tmp_path / "DIFFMF" / "models" / "2_G.safetensors").is_file()
