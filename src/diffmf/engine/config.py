"""Typed training configuration (YAML <-> dataclasses via :mod:`diffmf.utils.config_io`).

One file describes a run; ``diffmf train CONFIG.yaml --set optim.lr=1e-4 train.steps=500``
overrides single keys. The same file trains on the CPU, one GPU or K GPUs: ``data.batch_size``
is the *global* batch, split evenly over the processes started by ``torchrun``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Tuple, Union

from diffmf.losses.fusion import LossConfig
from diffmf.model.config import ModelConfig
from diffmf.utils.config_io import apply_overrides, load_yaml

PAPER_METRICS = ["EN", "SD", "SF", "MI", "VIF", "AG"]


@dataclass
class DataConfig:
    """Training pairs: ``roots`` hold ``ir/`` + ``vi/`` (or aliases); ``dirs`` are explicit
    ``[ir_dir, vi_dir]`` folder pairs. Relative paths are relative to the working directory."""

    roots: List[str] = field(default_factory=list)
    dirs: List[Tuple[str, str]] = field(default_factory=list)
    crop_size: int = 128  # random square crops, as the peers train
    batch_size: int = 4  # global batch (paper: 4 on two GPUs)
    num_workers: int = 4  # data-loader processes per training process
    augment: bool = True  # random horizontal / vertical flips
    stretch16: bool = False  # per-image min-max of 16-bit images instead of /65535
    strict: bool = True  # files without a partner are an error (else skipped with a warning)


@dataclass
class OptimConfig:
    """Adam (paper: lr 2e-5) with an optional warmup and schedule."""

    lr: float = 2e-5
    betas: Tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # max global gradient norm; 0 disables (diffmf default, not in the paper)
    scheduler: str = "constant"  # constant | cosine | multistep
    warmup_steps: int = 0
    milestones: List[int] = field(default_factory=list)  # multistep
    gamma: float = 0.5  # multistep factor
    min_lr_ratio: float = 0.0  # cosine floor, as a fraction of lr
    restarts: List[int] = field(default_factory=list)  # cosine: steps that start a new cycle (SGDR)
    restart_lr_ratio: float = 1.0  # cosine: peak of the later cycles, as a fraction of lr


@dataclass
class EMAConfig:
    enabled: bool = True
    decay: float = 0.999  # KAIR's E_decay


@dataclass
class ValConfig:
    """Periodic validation: fuse every pair of ``roots``/``dirs`` at full size with the EMA
    weights and report the default-profile metrics (``diffmf.metrics``)."""

    roots: List[str] = field(default_factory=list)
    dirs: List[Tuple[str, str]] = field(default_factory=list)
    every: int = 0  # steps; 0 disables
    max_images: int = 0  # 0: all
    metrics: List[str] = field(default_factory=lambda: list(PAPER_METRICS))
    profile: str = "cdd"
    tile: int = 0  # tile size for large validation images; 0 fuses whole images


@dataclass
class LoopConfig:
    steps: int = 40000  # optimiser steps (paper: 46 epochs of 3,900 pairs at batch 4 ~ 45k)
    device: str = "auto"  # auto | cpu | cuda | cuda:N (under torchrun: cuda:LOCAL_RANK)
    amp: str = "auto"  # auto (bf16 on GPUs that support it, else fp16; none on CPU) | bf16 | fp16 | none
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3  # step checkpoints kept besides latest.pt
    resume: str = "auto"  # auto (latest.pt of out_dir if any) | none | a checkpoint path
    log_every: int = 50
    image_every: int = 1000  # image grids (ir | vi | fused); 0 disables
    tensorboard: bool = True  # used when the tensorboard package is installed
    find_unused_parameters: bool = False  # DDP; needed by some ablation variants
    deterministic: bool = False  # torch.use_deterministic_algorithms (slower on GPU)
    compile: bool = False  # torch.compile the network
    # Forward + loss + backward replayed from a CUDA graph: auto (on for CUDA without compile;
    # eager steps if the capture fails) | on (true) | off (false). YAML reads on/off as booleans.
    cuda_graph: Union[bool, str] = "auto"
    time_limit: float = 0.0  # seconds of training after which the run stops like an interrupt (checkpoint, exit); 0 = none


@dataclass
class TrainConfig:
    name: str = "diffmf"
    out_dir: str = "runs/diffmf"
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    val: ValConfig = field(default_factory=ValConfig)
    train: LoopConfig = field(default_factory=LoopConfig)


CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def resolve_config_path(name: Union[str, Path]) -> Path:
    """A YAML path, or the name of a shipped config (``diffmf_paper`` -> ``configs/diffmf_paper.yaml``)."""
    p = Path(name)
    if p.is_file():
        return p
    shipped = CONFIG_DIR / (p.name if p.suffix in (".yaml", ".yml") else f"{p.name}.yaml")
    if shipped.is_file() and len(p.parts) == 1:
        return shipped
    available = sorted(q.stem for q in CONFIG_DIR.glob("*.yaml"))
    raise FileNotFoundError(f"config {name}: no such file, and not a shipped config (shipped: {', '.join(available)})")


def load_config(path: Union[str, Path], overrides: List[str] = ()) -> TrainConfig:
    """Read a training YAML (path or shipped name) and apply ``key=value`` overrides."""
    cfg = load_yaml(TrainConfig, resolve_config_path(path))
    return apply_overrides(cfg, list(overrides)) if overrides else cfg
