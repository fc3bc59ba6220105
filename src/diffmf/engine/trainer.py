"""The training loop: one process, or one process per GPU under ``torchrun`` (DDP).

Per step: a batch of random crops -> network (autocast bf16/fp16 on GPUs) -> fusion loss
(eq. 14, fp32) -> backward -> gradient clipping -> Adam -> LR schedule -> EMA update.
Rank 0 logs, validates and writes checkpoints; every rank stops at the same step. On CUDA the
forward, loss and backward are replayed from a CUDA graph (``train.cuda_graph``,
:mod:`diffmf.engine.graphed_step`); the rest of the step is the same eager code.

Checkpoints (``<out>/checkpoints/step_XXXXXXXX.pt`` and ``latest.pt``) are written atomically
every ``train.checkpoint_every`` steps, at the end, and when the run is interrupted (SIGINT /
SIGTERM, or ``train.time_limit`` seconds elapsed: the current step finishes, a checkpoint is
written, the run exits). Resuming restores
model, optimiser, scheduler, grad scaler, EMA, the RNG states of every rank and the position in
the data order, so an interrupted and resumed run ends bit-identical to an uninterrupted one
(on the same hardware and software). Each checkpoint also exports the EMA weights (or the raw
weights without EMA) as ``<out>/models/<step>_G.safetensors`` and ``<out>/weights.safetensors``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from diffmf.data.dataset import PairedImageDataset
from diffmf.data.pairs import PairingError, collect_pairs
from diffmf.data.sampler import ResumableSampler
from diffmf.engine import distributed as D
from diffmf.engine.checkpoint import export_weights, load_checkpoint, save_checkpoint, unwrap
from diffmf.engine.config import TrainConfig
from diffmf.engine.ema import ModelEMA
from diffmf.engine.graphed_step import GraphedTrainStep, resolve_cuda_graph
from diffmf.engine.optim import LRSchedule, build_optimizer, build_schedule, build_scheduler
from diffmf.engine.tracking import Tracker, add_log_file, image_grid
from diffmf.losses.fusion import FusionLoss
from diffmf.utils.config_io import from_dict, save_yaml, to_dict

logger = logging.getLogger(__name__)


def _rng_state(device: torch.device) -> Dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: Dict[str, Any], device: torch.device) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def params_digest(model: nn.Module) -> str:
    """SHA-256 of all parameters and buffers (bitwise identity check across ranks or runs)."""
    h = hashlib.sha256()
    for k, v in sorted(unwrap(model).state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def resolve_amp(spec: str, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype for ``train.amp`` on ``device`` (None: full precision)."""
    if spec == "none" or (spec == "auto" and device.type != "cuda"):
        return None
    if spec == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if spec in ("bf16", "fp16"):
        return torch.bfloat16 if spec == "bf16" else torch.float16
    raise ValueError(f"train.amp must be auto, bf16, fp16 or none, got {spec!r}")


def _ignore_stop_signals(worker_id: int) -> None:
    """Data-loader workers ignore SIGINT/SIGTERM: Ctrl-C or ``timeout`` signal the whole process
    group, and a worker dying first would abort the main process before it writes its
    checkpoint. The main process handles the signal and shuts the workers down itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class Trainer:
    """Builds everything from a :class:`TrainConfig` and runs :meth:`fit`.

    ``on_step(trainer, step)`` is called on every rank after each optimiser step (tests use it
    to simulate an interruption via :meth:`request_stop`).
    """

    def __init__(self, cfg: TrainConfig, *, on_step: Optional[Callable[["Trainer", int], None]] = None) -> None:
        self.cfg = cfg
        self.on_step = on_step
        self.info = D.env_dist_info()
        self.device = D.resolve_device(cfg.train.device, self.info)
        D.init_distributed(self.device, self.info)
        # Data first: a wrong path fails before anything is written.
        d = cfg.data
        try:
            self.dataset = PairedImageDataset(d.roots, [tuple(x) for x in d.dirs], crop_size=d.crop_size,
                                              augment=d.augment, stretch16=d.stretch16, strict=d.strict)
        except PairingError as exc:
            raise PairingError(f"training data (data.roots / data.dirs): {exc}") from None
        self.out_dir = Path(cfg.out_dir)
        self.ckpt_dir = self.out_dir / "checkpoints"
        self._log_handler = None
        if self.info.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._log_handler = add_log_file(self.out_dir / "train.log")
            save_yaml(cfg, self.out_dir / "config.yaml")
        else:
            logging.getLogger("diffmf").setLevel(logging.WARNING)
        self._stop = False
        self.history: List[Dict[str, float]] = []  # rank 0: logged scalars

        if cfg.train.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
        elif self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True

        # Model: identical initialisation on every rank (DDP also broadcasts rank 0's weights).
        _seed_all(cfg.seed)
        from diffmf.model import build_model

        self.model = build_model(config=cfg.model).to(self.device)
        self.ema = ModelEMA(self.model, cfg.ema.decay) if cfg.ema.enabled else None
        self.optimizer = build_optimizer(self.model, cfg.optim)
        self.scheduler = build_scheduler(self.optimizer, cfg.optim, cfg.train.steps)
        self.amp_dtype = resolve_amp(cfg.train.amp, self.device)
        use_scaler = self.amp_dtype == torch.float16
        if hasattr(torch.amp, "GradScaler"):
            self.scaler = torch.amp.GradScaler(self.device.type, enabled=use_scaler)
        else:  # torch < 2.3
            self.scaler = torch.cuda.amp.GradScaler(enabled=use_scaler and self.device.type == "cuda")
        self.loss_fn = FusionLoss(cfg.loss)
        self.net: nn.Module = self.model
        if cfg.train.compile:
            self.net = torch.compile(self.net)
        # Forward + loss + backward of a step: replayed from a CUDA graph, or its eager twin.
        # Graphed steps are not wrapped in DDP (its gradient hooks cannot run inside a
        # replay): the gradients are all-reduced after each step in one flat buffer, and rank
        # 0's weights are broadcast here as DDP would.
        graphs = resolve_cuda_graph(cfg.train.cuda_graph, self.device, compiled=cfg.train.compile)
        if graphs and self.info.enabled:
            D.broadcast_module(self.model)
        elif self.info.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            # Ablation variants may leave modules unused: let DDP look for them there.
            find_unused = cfg.train.find_unused_parameters or cfg.model.variant != "full"
            self.net = DDP(self.net, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                           find_unused_parameters=find_unused)
        self.fwd_bwd = GraphedTrainStep(self.net, self.loss_fn, [p for p in self.model.parameters() if p.requires_grad],
                                        autocast=self.amp_dtype, scale=self.scaler.scale,
                                        strict=cfg.train.cuda_graph in ("on", True), graphs=graphs)
        # Per-rank randomness after the shared initialisation (e.g. drop-path masks).
        _seed_all(cfg.seed + 1000 * (self.info.rank + 1))

        d = cfg.data
        if d.batch_size % self.info.world_size:
            raise ValueError(f"data.batch_size {d.batch_size} is the global batch; it must be divisible by the "
                             f"{self.info.world_size} processes")
        self.batch_per_rank = d.batch_size // self.info.world_size
        self.sampler = ResumableSampler(len(self.dataset), seed=cfg.seed, rank=self.info.rank, world_size=self.info.world_size)
        self.steps_per_epoch = len(self.sampler) // self.batch_per_rank
        if self.steps_per_epoch < 1:
            raise ValueError(f"{len(self.dataset)} training pairs are fewer than one batch of {d.batch_size}")
        self.val_pairs = []
        if cfg.val.every > 0 and (cfg.val.roots or cfg.val.dirs):
            try:
                self.val_pairs = collect_pairs(cfg.val.roots, [tuple(x) for x in cfg.val.dirs], strict=False)
            except PairingError as exc:
                raise PairingError(f"validation data (val.roots / val.dirs): {exc}") from None

        self._loader: Optional[DataLoader] = None
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self._maybe_resume()

    # ------------------------------------------------------------------ state
    def request_stop(self) -> None:
        """Finish the current step, write a checkpoint and return from :meth:`fit`."""
        self._stop = True

    def state_dict(self) -> Dict[str, Any]:
        rngs = D.all_gather_objects(_rng_state(self.device))  # collective: every rank calls it
        return {
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "world_size": self.info.world_size,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None,
            "rng": rngs,
            "config": to_dict(self.cfg),
        }

    def _maybe_resume(self) -> None:
        spec = self.cfg.train.resume
        path: Optional[Path] = None
        if spec == "auto":
            cand = self.ckpt_dir / "latest.pt"
            path = cand if cand.is_file() else None
        elif spec not in ("", "none"):
            path = Path(spec)
        if path is None:
            return
        state = load_checkpoint(path, map_location="cpu")
        from diffmf.model.config import ModelConfig

        saved_model = from_dict(ModelConfig, state["config"]["model"])
        if saved_model != self.cfg.model:
            raise ValueError(f"{path}: checkpoint was trained with model {saved_model}, the config asks for "
                             f"{self.cfg.model}; use another out_dir or train.resume=none")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self._schedule_from_config(path, state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and state.get("ema"):
            self.ema.load_state_dict(state["ema"])
        self.step, self.epoch, self.batch_in_epoch = int(state["step"]), int(state["epoch"]), int(state["batch_in_epoch"])
        rngs = state.get("rng") or []
        if state.get("world_size") == self.info.world_size and len(rngs) == self.info.world_size:
            _set_rng_state(rngs[self.info.rank], self.device)
        else:
            logger.warning("resuming with %d processes from a checkpoint of %s: RNG states and the data position "
                           "are approximate", self.info.world_size, state.get("world_size"))
            if self.batch_in_epoch >= self.steps_per_epoch:
                self.epoch, self.batch_in_epoch = self.epoch + 1, 0
        logger.info("resumed from %s at step %d (epoch %d, batch %d)", path, self.step, self.epoch, self.batch_in_epoch)

    def _schedule_from_config(self, path: Path, saved_state: Dict[str, Any]) -> None:
        """After a resume, the lr schedule and base lr are the config's, not the checkpoint's
        (``LambdaLR.load_state_dict`` restores the saved schedule's fields): extending
        ``train.steps`` or adding ``optim.restarts`` takes effect. Unchanged configs give the
        same lr as before, so exact resume holds."""
        schedule = build_schedule(self.cfg.optim, self.cfg.train.steps)
        # The saved LRSchedule's fields; ones older checkpoints lack take their defaults.
        saved = {**vars(LRSchedule("constant", 1)), **((saved_state.get("lr_lambdas") or [None])[0] or {})}
        new = vars(schedule)
        base = float(self.cfg.optim.lr)
        if saved != new or any(b != base for b in self.scheduler.base_lrs):
            logger.info("%s: lr schedule changed since the checkpoint (lr %s -> %s; %s -> %s); continuing with "
                        "the config's", path, self.scheduler.base_lrs[0], base, saved, new)
        self.scheduler.lr_lambdas = [schedule] * len(self.optimizer.param_groups)
        self.scheduler.base_lrs = [base] * len(self.optimizer.param_groups)
        step = self.scheduler.last_epoch
        for group in self.optimizer.param_groups:
            group["initial_lr"], group["lr"] = base, base * schedule(step)
        self.scheduler._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def save(self) -> None:
        """Write ``step_XXXXXXXX.pt`` + ``latest.pt`` and export weights (rank 0; collective call)."""
        state = self.state_dict()
        if self.info.is_main:
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
            step_path = self.ckpt_dir / f"step_{self.step:08d}.pt"
            save_checkpoint(step_path, state)
            save_checkpoint(self.ckpt_dir / "latest.pt", state)
            for old in sorted(self.ckpt_dir.glob("step_*.pt"))[: -max(1, self.cfg.train.keep_checkpoints)]:
                old.unlink()
            src = self.ema.module if self.ema is not None else self.model
            meta = {"diffmf.step": str(self.step), "diffmf.weights": "ema" if self.ema is not None else "raw"}
            export_weights(src, self.out_dir / "models" / f"{self.step}_G.safetensors", self.cfg.model, metadata=meta)
            export_weights(src, self.out_dir / "weights.safetensors", self.cfg.model, metadata=meta)
            models = sorted((self.out_dir / "models").glob("*_G.safetensors"), key=lambda p: int(p.name.split("_")[0]))
            for old in models[: -max(1, self.cfg.train.keep_checkpoints)]:
                old.unlink()
            logger.info("checkpoint %s", step_path)
        D.barrier()

    # ------------------------------------------------------------------ loop
    def _epoch_iterator(self):
        """An iterator over the rest of the current epoch (workers persist across epochs)."""
        if self._loader is None:
            d = self.cfg.data
            # A private generator: iterating the loader must not consume the global RNG (exact resume).
            gen = torch.Generator().manual_seed(self.cfg.seed * 7919)
            self._loader = DataLoader(self.dataset, batch_size=self.batch_per_rank, sampler=self.sampler,
                                      num_workers=d.num_workers, drop_last=True, pin_memory=self.device.type == "cuda",
                                      generator=gen, persistent_workers=d.num_workers > 0,
                                      worker_init_fn=_ignore_stop_signals if d.num_workers > 0 else None)
        self.sampler.set_epoch(self.epoch)
        self.sampler.set_start(self.batch_in_epoch * self.batch_per_rank)
        return iter(self._loader)

    def _train_step(self, batch: Dict[str, Any]) -> Dict[str, torch.Tensor]:
        parts, fused, ir, vi = self.fwd_bwd(batch["ir"], batch["vi"])
        parts = dict(parts)  # the graph's own dict stays as captured
        if self.info.enabled and self.fwd_bwd.graphs:
            self._all_reduce_grads()
        if self.cfg.optim.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            parts["grad_norm"] = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.grad_clip).detach()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        self._last_batch = (ir, vi, fused)
        return parts

    def _all_reduce_grads(self) -> None:
        """Average the gradients over the ranks in one flat buffer, as DDP's default hook does
        per bucket (divide by the world size, then sum)."""
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        flat = torch._utils._flatten_dense_tensors(grads)
        flat.div_(self.info.world_size)
        torch.distributed.all_reduce(flat)
        torch._foreach_copy_(grads, list(torch._utils._unflatten_dense_tensors(flat, grads)))

    def _reduce(self, parts: Dict[str, torch.Tensor]) -> Dict[str, float]:
        keys = sorted(parts)
        t = torch.stack([parts[k].float() for k in keys])
        if self.info.enabled:
            torch.distributed.all_reduce(t)
            t /= self.info.world_size
        return dict(zip(keys, t.tolist()))

    def _install_signal_handlers(self):
        if threading.current_thread() is not threading.main_thread():
            return {}
        old = {}

        def handler(signum, frame):
            if self._stop and signum == signal.SIGINT:
                raise KeyboardInterrupt
            logger.warning("received %s: stopping after this step and writing a checkpoint", signal.Signals(signum).name)
            self.request_stop()

        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, handler)
        return old

    def fit(self) -> Dict[str, Any]:
        """Train to ``train.steps`` (or until stopped); returns a summary dict."""
        cfg = self.cfg
        total = cfg.train.steps
        tracker = Tracker(self.out_dir, cfg.train.tensorboard) if self.info.is_main else None
        old_handlers = self._install_signal_handlers()
        from tqdm import tqdm

        bar = tqdm(total=total, initial=self.step, desc="train", unit="step", dynamic_ncols=True,
                   disable=not (self.info.is_main and sys.stderr.isatty()))
        logger.info("training %s: %d steps, global batch %d (%d per process x %d), %d pairs, %d steps/epoch, "
                    "device %s, amp %s, %s steps", cfg.name, total, cfg.data.batch_size, self.batch_per_rank,
                    self.info.world_size, len(self.dataset), self.steps_per_epoch, self.device, self.amp_dtype,
                    "CUDA-graphed" if self.fwd_bwd.graphs else "eager")
        self.net.train()
        it = None
        last_saved = self.step
        t0, pairs_seen = time.perf_counter(), 0
        check_every = 1 if not self.info.enabled else 10
        deadline = time.monotonic() + cfg.train.time_limit if cfg.train.time_limit > 0 else None
        stopped = False
        try:
            while self.step < total:
                if it is None:
                    it = self._epoch_iterator()
                batch = next(it)
                parts = self._train_step(batch)
                self.step += 1
                self.batch_in_epoch += 1
                pairs_seen += cfg.data.batch_size
                if self.batch_in_epoch >= self.steps_per_epoch:
                    self.epoch, self.batch_in_epoch, it = self.epoch + 1, 0, None
                bar.update(1)
                if self.on_step is not None:
                    self.on_step(self, self.step)
                if self.step % cfg.train.log_every == 0 or self.step == total:
                    values = self._reduce(parts)
                    if not np.isfinite(values["loss"]):
                        raise FloatingPointError(
                            f"non-finite loss at step {self.step} ({values}); stopping without writing a checkpoint. "
                            f"Resume from {self.ckpt_dir / 'latest.pt'} with a lower optim.lr or train.amp=none")
                    dt = time.perf_counter() - t0
                    values["lr"] = self.optimizer.param_groups[0]["lr"]
                    values["pairs_per_s"] = pairs_seen / max(dt, 1e-9)
                    t0, pairs_seen = time.perf_counter(), 0
                    if tracker is not None:
                        self.history.append({"step": self.step, **values})
                        tracker.scalars(self.step, values)
                        bar.set_postfix(loss=f"{values['loss']:.4f}")
                        logger.info("step %d/%d epoch %d loss %.5f (ssim %.4f text %.4f int %.4f) lr %.2e %.1f pairs/s",
                                    self.step, total, self.epoch, values["loss"], values["ssim"], values["text"],
                                    values["int"], values["lr"], values["pairs_per_s"])
                if tracker is not None and cfg.train.image_every and self.step % cfg.train.image_every == 0:
                    tracker.image(self.step, image_grid(*self._last_batch))
                if self.val_pairs and self.step % cfg.val.every == 0:
                    self._validate(tracker)
                if cfg.train.checkpoint_every and self.step % cfg.train.checkpoint_every == 0:
                    self.save()
                    last_saved = self.step
                if self.step % check_every == 0 or self.step == total:
                    if deadline is not None and not self._stop and time.monotonic() > deadline:
                        logger.info("time limit of %g s reached: stopping at step %d and writing a checkpoint",
                                    cfg.train.time_limit, self.step)
                        self._stop = True
                    if D.any_true(self._stop, self.device):
                        stopped = True
                        break
            del it
            self._loader = None  # shuts persistent workers down
            if self.step != last_saved:
                self.save()
            digests = D.all_gather_objects(params_digest(self.model))
            summary = {
                "step": self.step, "stopped": stopped, "world_size": self.info.world_size,
                "params_sha256": digests, "ranks_in_sync": len(set(digests)) == 1,
                "last": self.history[-1] if self.history else {},
            }
            if self.info.is_main:
                (self.out_dir / "final_state.json").write_text(json.dumps(summary, indent=1))
                if self.info.enabled:
                    logger.info("weights identical on all %d ranks: %s", self.info.world_size, summary["ranks_in_sync"])
                logger.info("%s at step %d; weights: %s", "interrupted" if stopped else "finished", self.step,
                            self.out_dir / "weights.safetensors")
            return summary
        finally:
            bar.close()
            if tracker is not None:
                tracker.close()
            for sig, h in old_handlers.items():
                signal.signal(sig, h)
            if self._log_handler is not None:
                logging.getLogger("diffmf").removeHandler(self._log_handler)
                self._log_handler.close()
                self._log_handler = None

    def _validate(self, tracker: Optional[Tracker]) -> None:
        if self.info.is_main:
            from diffmf.engine.validate import validate

            v = self.cfg.val
            model = self.ema.module if self.ema is not None else self.model
            means, example = validate(model, self.val_pairs, self.device, metrics=v.metrics, profile=v.profile,
                                      tile=v.tile, amp=self.amp_dtype is not None, max_images=v.max_images)
            if means:
                logger.info("validation step %d: %s", self.step, " ".join(f"{k} {x:.4f}" for k, x in means.items()))
            if tracker is not None:
                if means:
                    tracker.scalars(self.step, means, prefix="val")
                if example is not None:
                    ir, vi, fused = (torch.from_numpy(np.asarray(a, dtype=np.float32))[None, None] for a in example)
                    tracker.image(self.step, image_grid(ir, vi, fused), tag="val/ir_vi_fused")
        D.barrier()


def train(cfg: TrainConfig, **kwargs: Any) -> Dict[str, Any]:
    """Build a :class:`Trainer` and run it; the process group is torn down afterwards."""
    try:
        return Trainer(cfg, **kwargs).fit()
    finally:
        D.cleanup()
