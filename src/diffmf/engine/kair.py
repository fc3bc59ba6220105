"""Read a KAIR-style JSON options file (the format of the authors' ``options/DIFFMF/DIFFMF.json``,
inherited from SwinFusion/KAIR) into a :class:`~diffmf.engine.config.TrainConfig`.

KAIR files may carry ``//`` comments, which are stripped. Recognised keys::

    task, manual_seed, path.root                 -> name, seed, out_dir = <root>/<task>
    datasets.train.dataroot_A / dataroot_B       -> data.dirs  (A = infrared, B = visible)
    datasets.train.H_size                        -> data.crop_size
    datasets.train.dataloader_batch_size         -> data.batch_size (global, split over GPUs)
    datasets.train.dataloader_num_workers        -> data.num_workers
    datasets.test.dataroot_A / dataroot_B        -> val.dirs
    netG.<ModelConfig field> (embed_dim, d_state, num_stages, ...; net_type is checked)
    train.G_optimizer_lr, G_optimizer_betas, G_optimizer_wd, G_optimizer_clipgrad (null = off)
    train.G_scheduler_type (MultiStepLR | CosineAnnealingLR | constant), G_scheduler_milestones,
          G_scheduler_gamma, E_decay (0 = no EMA), total_iter,
          checkpoint_save / checkpoint_test / checkpoint_print -> checkpoint_every / val.every / log_every
          G_lossfn_weights {ssim, text, int} -> loss.w_ssim / w_text / w_int

Other keys are reported once and ignored.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import re
from pathlib import Path
from typing import Any, Dict, List, Union

from diffmf.engine.config import TrainConfig
from diffmf.model.config import ModelConfig
from diffmf.utils.config_io import from_dict, to_dict

logger = logging.getLogger(__name__)

_IGNORED_TOP = {"gpu_ids", "dist", "model", "scale", "n_channels", "is_train", "merge_bn", "merge_bn_startpoint",
                "find_unused_parameters", "use_static_graph", "opt_path", "num_gpu", "rank", "world_size"}


def read_kair_json(path: Union[str, Path]) -> Dict[str, Any]:
    """Parse a KAIR options file (JSON with ``//`` line comments)."""
    path = Path(path)
    text = "\n".join(re.sub(r"(^|\s)//.*$", "", line) for line in path.read_text(encoding="utf-8").splitlines())
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid KAIR JSON ({exc})") from None


def kair_to_config(opt: Dict[str, Any]) -> TrainConfig:
    """Map KAIR options onto a :class:`TrainConfig` (defaults for everything not given)."""
    cfg = to_dict(TrainConfig())
    ignored: List[str] = [k for k in opt if k in _IGNORED_TOP]
    unknown: List[str] = []
    task = opt.get("task", "DIFFMF")
    cfg["name"] = task
    cfg["out_dir"] = str(Path(opt.get("path", {}).get("root", "experiments")) / task)
    if "manual_seed" in opt and opt["manual_seed"] is not None:
        cfg["seed"] = int(opt["manual_seed"])

    ds = opt.get("datasets", {})
    tr = ds.get("train", {})
    if "dataroot_A" in tr and "dataroot_B" in tr:
        cfg["data"]["dirs"] = [[tr["dataroot_A"], tr["dataroot_B"]]]
        cfg["data"]["roots"] = []
    for src, dst in (("H_size", "crop_size"), ("dataloader_batch_size", "batch_size"), ("dataloader_num_workers", "num_workers")):
        if src in tr:
            cfg["data"][dst] = int(tr[src])
    te = ds.get("test", {})
    if "dataroot_A" in te and "dataroot_B" in te:
        cfg["val"]["dirs"] = [[te["dataroot_A"], te["dataroot_B"]]]
        cfg["val"]["roots"] = []
    else:
        cfg["val"]["roots"] = []

    net = dict(opt.get("netG", {}))
    net_type = str(net.pop("net_type", "DIFFMF"))
    if net_type.lower().replace("-", "").replace("_", "") != "diffmf":
        raise ValueError(f"netG.net_type {net_type!r}: this trainer builds DIFF-MF only")
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    for k, v in net.items():
        if k in fields:
            cfg["model"][k] = v
        else:
            unknown.append(f"netG.{k}")

    t = opt.get("train", {})
    o, e, lp = cfg["optim"], cfg["ema"], cfg["train"]
    if "G_optimizer_lr" in t:
        o["lr"] = float(t["G_optimizer_lr"])
    if t.get("G_optimizer_betas"):
        o["betas"] = list(t["G_optimizer_betas"])
    if "G_optimizer_wd" in t:
        o["weight_decay"] = float(t["G_optimizer_wd"] or 0.0)
    if "G_optimizer_clipgrad" in t:
        o["grad_clip"] = float(t["G_optimizer_clipgrad"] or 0.0)
    sched = str(t.get("G_scheduler_type", "constant"))
    o["scheduler"] = {"multisteplr": "multistep", "cosineannealinglr": "cosine"}.get(sched.lower(), sched.lower())
    if "G_scheduler_milestones" in t:
        o["milestones"] = [int(m) for m in t["G_scheduler_milestones"]]
    if "G_scheduler_gamma" in t:
        o["gamma"] = float(t["G_scheduler_gamma"])
    if "E_decay" in t:
        decay = float(t["E_decay"] or 0.0)
        e["enabled"] = decay > 0
        e["decay"] = decay if decay > 0 else e["decay"]
    for src, dst in (("total_iter", "steps"), ("checkpoint_save", "checkpoint_every"), ("checkpoint_print", "log_every")):
        if src in t:
            lp[dst] = int(t[src])
    if "checkpoint_test" in t:
        cfg["val"]["every"] = int(t["checkpoint_test"]) if cfg["val"]["dirs"] else 0
    weights = t.get("G_lossfn_weights") or {}
    for src, dst in (("ssim", "w_ssim"), ("text", "w_text"), ("int", "w_int")):
        if src in weights:
            cfg["loss"][dst] = float(weights[src])
    known_train = {"G_optimizer_lr", "G_optimizer_betas", "G_optimizer_wd", "G_optimizer_clipgrad", "G_scheduler_type",
                   "G_scheduler_milestones", "G_scheduler_gamma", "E_decay", "total_iter", "checkpoint_save",
                   "checkpoint_test", "checkpoint_print", "G_lossfn_weights"}
    unknown += [f"train.{k}" for k in t if k not in known_train]
    unknown += [k for k in opt if k not in _IGNORED_TOP | {"task", "path", "manual_seed", "datasets", "netG", "train"}]
    if unknown or ignored:
        logger.info("KAIR options not used by diffmf: %s", ", ".join(sorted(unknown + ignored)))
    return from_dict(TrainConfig, cfg)
