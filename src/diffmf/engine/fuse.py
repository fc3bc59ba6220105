"""Inference: fuse infrared / visible pairs with a trained DIFF-MF.

A pair travels one way: read -> colour split (visible RGB -> Y + CbCr; infrared -> gray)
-> pad (reflect, to the network's multiple) -> network (whole image, or overlapping tiles)
-> crop -> colour merge (fused Y + visible CbCr -> RGB; ``gray`` keeps Y) -> write (8-bit,
atomic). Outputs always have the input's height and width.

* :class:`Fuser` holds a network on a device and fuses luminance tensors, with tiling and an
  automatic fall-back to tiles when the device runs out of memory.
* :func:`fuse` is the Python API for arrays, PIL images, tensors and paths.
* :func:`fuse_pairs` fuses a list of file pairs into a folder, continuing past failures; it
  decodes the next pairs and encodes/writes finished outputs in a few I/O threads while the
  current pair is fused (``workers=0``: strictly one pair after the other).
"""
from __future__ import annotations

import contextlib
import functools
import logging
import sys
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Deque, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from diffmf.data.color import merge_luma, split_luma, to_gray
from diffmf.data.dataset import load_pair
from diffmf.data.io import ImageReadError, read_image, write_image
from diffmf.data.pairs import Pair, PairingError
from diffmf.engine.graphs import GraphedCall
from diffmf.engine.tiling import tiled_apply

if TYPE_CHECKING:
    from diffmf.ops.triton.precompile import PrecompileStats

logger = logging.getLogger(__name__)

OOM_TILES = (1024, 512, 256, 128)
# CUDA graphs only pay below this many (padded) pixels: there the GPU waits on the host's
# launches (H100: 256x256 59 -> 15 ms, 512x512 60 -> 46 ms replayed); at 640x480 a replay
# saved 4% and on TNO25 (11 sizes, fp32) the captures cost more than the replays saved
# (docs/benchmarks-log.md).
GRAPH_MAX_PIXELS = 512 * 512
GRAPH_EAGER_RUNS = 2  # eager calls per size before its capture: a size seen twice costs no capture
# fuse_pairs reads this many pairs' image headers first, so that the kernels of all their sizes
# compile together on several threads (diffmf.ops.triton.precompile); later sizes compile at
# their first image.
PRECOMPILE_SCAN = 64
NORMALIZE_MODES = ("none", "minmax")


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, getattr(torch.cuda, "OutOfMemoryError", ())):
        return True
    msg = str(exc).lower()
    return isinstance(exc, (RuntimeError, MemoryError)) and ("out of memory" in msg or "can't allocate memory" in msg
                                                            or isinstance(exc, MemoryError))


def minmax_stretch(y: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` -> each image mapped to ``(y - min) / (max - min)`` over its C, H, W,
    i.e. onto [0, 1] exactly (CDDFuse's ``test_IVF.py``); images with ``max == min`` unchanged."""
    dims = tuple(range(1, y.dim()))
    lo = y.amin(dim=dims, keepdim=True)
    span = y.amax(dim=dims, keepdim=True) - lo
    return torch.where(span > 0, (y - lo) / span.clamp_min(torch.finfo(y.dtype).tiny), y)


def pick_device(spec: str = "auto") -> torch.device:
    """``auto`` -> the first CUDA device if there is one, else the CPU."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {spec!r} requested but CUDA is not available")
    return torch.device(spec)


class Fuser:
    """A network on a device that fuses ``(B, 1, H, W)`` luminance pairs in [0, 1].

    Args:
        model: DIFF-MF (``model(ir, vi) -> fused``), put in eval mode.
        tile: fuse in ``tile x tile`` windows when an image side exceeds it (0: whole images).
        tile_overlap: minimum overlap of neighbouring windows (blended with cosine ramps); at most
            ``tile // 2`` is used. The out-of-memory fall-back uses ``min(tile_overlap, tile // 4)``.
        amp: autocast to bf16 (fp16 where bf16 is unsupported) on CUDA; ignored on the CPU.
        cuda_graphs: on CUDA, replay the network from a CUDA graph when an input size of at
            most ``graph_max_pixels`` comes again (:class:`diffmf.engine.graphs.GraphedCall`:
            the first two images of a size run eagerly, the third is captured, later ones
            replay); same kernels, same results.
        graph_max_pixels: the largest padded ``H * W`` replayed from a graph (``None``:
            :data:`GRAPH_MAX_PIXELS`; ``0``: no limit).
        normalize: ``none`` (default) keeps the network's output, which the decoder's sigmoid
            already puts in [0, 1]; ``minmax`` maps each fused luminance to its own
            ``(y - min) / (max - min)`` over the whole image (after tiling), as the CDDFuse test
            script (``test_IVF.py``) does before saving: a contrast stretch that raises SD, SF
            and AG, for comparing with numbers produced that way. A constant image is left as is.
        precompile: on CUDA with the Triton kernels, the first call of each padded input size
            compiles the kernels that size needs on several CPU threads before running
            (:func:`diffmf.ops.triton.precompile.precompile`; ``DIFFMF_COMPILE_THREADS`` sets
            the threads, 0 turns it off). Same kernels, same results; only the first use of a
            size, on a fresh Triton cache, gets faster.
    """

    def __init__(self, model: nn.Module, device: Union[str, torch.device] = "cpu", *, tile: int = 0,
                 tile_overlap: int = 32, amp: bool = False, cuda_graphs: bool = True,
                 graph_max_pixels: Optional[int] = None, normalize: str = "none", precompile: bool = True) -> None:
        if normalize not in NORMALIZE_MODES:
            raise ValueError(f"normalize must be one of {NORMALIZE_MODES}, got {normalize!r}")
        self.normalize = normalize
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.tile, self.tile_overlap = int(tile), int(tile_overlap)
        self.amp = bool(amp) and self.device.type == "cuda"
        self._graphed = (GraphedCall(self._forward, eager_runs=GRAPH_EAGER_RUNS)
                         if cuda_graphs and self.device.type == "cuda" else None)
        limit = GRAPH_MAX_PIXELS if graph_max_pixels is None else int(graph_max_pixels)
        if limit < 0:
            raise ValueError(f"graph_max_pixels must be >= 0 (0: no limit), got {graph_max_pixels}")
        self.graph_max_pixels = limit or None
        config = getattr(model, "config", None)
        self.multiple = int(getattr(config, "pad_multiple", 1) or 1)
        self.oom_tiles: Tuple[int, ...] = OOM_TILES  # tile sizes tried, in order, after an out-of-memory error
        self.precompile = bool(precompile) and self.device.type == "cuda"
        self._precompiled: set = set()  # (input shape, amp) of the network calls precompiled
        if self.precompile:
            from diffmf.ops.dispatch import triton_status

            if triton_status(self.device) is None:
                from diffmf.ops.triton.precompile import compile_threads

                compile_threads()  # a bad DIFFMF_COMPILE_THREADS fails here, before any image
            else:
                self.precompile = False

    @classmethod
    def from_weights(cls, weights: Optional[Union[str, Path]] = None, device: str = "auto", **kwargs: Any) -> "Fuser":
        """Load a registered name or a file (see :func:`diffmf.weights.resolve`)."""
        from diffmf.engine.checkpoint import load_weights
        from diffmf.weights import resolve

        path = resolve(weights)
        return cls(load_weights(path), pick_device(device), **kwargs)

    def _autocast(self):
        if not self.amp:
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)

    def _run(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        """pad -> network -> crop, for one window or a whole image."""
        H, W = ir.shape[-2:]
        m = self.multiple
        ph, pw = (-H) % m, (-W) % m
        if ph or pw:
            mode = "reflect" if ph < H and pw < W else "replicate"
            ir = F.pad(ir, (0, pw, 0, ph), mode=mode)
            vi = F.pad(vi, (0, pw, 0, ph), mode=mode)
        if self.precompile:
            self._precompile_shapes([tuple(ir.shape)])
        graphed = self._graphed is not None and (self.graph_max_pixels is None
                                                 or ir.shape[-2] * ir.shape[-1] <= self.graph_max_pixels)
        out = (self._graphed if graphed else self._forward)(ir, vi)
        return out[..., :H, :W].float().clamp_(0.0, 1.0)

    def window_shape(self, height: int, width: int) -> Tuple[int, int]:
        """Padded ``(H, W)`` the network runs on to fuse a ``height x width`` image: the whole
        image, or the tiles (at most ``tile`` per side) when ``tile`` applies."""
        if self.tile and max(height, width) > self.tile:
            height, width = min(height, self.tile), min(width, self.tile)
        m = self.multiple
        return height + (-height) % m, width + (-width) % m

    def precompile_sizes(self, sizes: Iterable[Tuple[int, int]]) -> Optional["PrecompileStats"]:
        """Compile, on several CPU threads, the Triton kernels that fusing ``(H, W)`` images of
        these sizes (batch 1) will need, instead of one by one at each size's first image.

        One dry pass of the network per size not seen before records the kernels; all of them
        are compiled together (:func:`diffmf.ops.triton.precompile.precompile`). Returns its
        stats, or None when there was nothing to do (CPU, precompile off, every size seen).
        """
        return self._precompile_shapes([(1, 1, *self.window_shape(h, w)) for h, w in sizes])

    def _precompile_shapes(self, shapes: Sequence[Tuple[int, ...]]) -> Optional["PrecompileStats"]:
        """:meth:`precompile_sizes` for padded ``(B, 1, H, W)`` network inputs."""
        if not self.precompile:
            return None
        keys = list(dict.fromkeys((tuple(shape), self.amp) for shape in shapes))
        keys = [key for key in keys if key not in self._precompiled]
        if not keys:
            return None
        self._precompiled.update(keys)
        from diffmf.ops.dispatch import resolve_backend

        if resolve_backend(self.device) != "triton":
            return None
        from diffmf.ops.triton.precompile import module_description, precompile

        model = module_description(self.model)
        stats = precompile(*(functools.partial(self._dry_call, shape) for shape, _ in keys),
                           markers=[f"fuse {model} {shape} amp={amp}" for shape, amp in keys])
        if stats.skipped is not None:
            logger.debug("no parallel compilation: %s", stats.skipped)
            self.precompile = False
        elif stats.recorded:
            sizes = ", ".join(f"{shape[-1]}x{shape[-2]}" for shape, _ in keys)
            logger.info("compiled %d Triton kernels for %s in %.1f s on %d threads",
                        stats.recorded - stats.failed, sizes if len(keys) <= 4 else f"{len(keys)} input sizes",
                        stats.seconds, stats.threads)
        return stats

    @torch.no_grad()
    def _dry_call(self, shape: Tuple[int, ...]) -> torch.Tensor:
        """The network on zero inputs of ``shape``, as :meth:`fuse_y` runs it (no autograd: with
        it the scan takes its training kernels): the precompile step's dry pass runs it."""
        ir = torch.zeros(shape, device=self.device)
        vi = torch.zeros(shape, device=self.device)
        return self._forward(ir, vi)

    def _forward(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        """The network on padded ``(B, 1, H, W)`` inputs (under autocast with ``amp``)."""
        with self._autocast():
            return self.model(ir, vi)

    @torch.no_grad()
    def fuse_y(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        """``(B, 1, H, W)`` infrared and visible Y in [0, 1] -> fused Y ``(B, 1, H, W)`` float32 in
        [0, 1] (on the device), min-max stretched per image when ``normalize="minmax"``."""
        fused = self._fuse_y(ir, vi)
        return minmax_stretch(fused) if self.normalize == "minmax" else fused

    def _fuse_y(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        """The network's output for :meth:`fuse_y`: whole images, tiles, or the out-of-memory fall-back."""
        if ir.shape != vi.shape or ir.dim() != 4 or ir.shape[1] != 1:
            raise ValueError(f"expected two (B, 1, H, W) tensors of one shape, got {tuple(ir.shape)} and {tuple(vi.shape)}")
        ir = ir.to(self.device, torch.float32)
        vi = vi.to(self.device, torch.float32)
        H, W = ir.shape[-2:]
        if self.tile and max(H, W) > self.tile:
            return tiled_apply(self._run, ir, vi, self.tile, min(self.tile_overlap, self.tile // 2))
        try:
            return self._run(ir, vi)
        except Exception as exc:  # noqa: BLE001 - only out-of-memory is handled
            if not _is_oom(exc):
                raise
        for tile in self.oom_tiles:
            if tile >= max(H, W):
                continue
            self._free()
            logger.warning("out of memory on a %dx%d image; retrying in %d-pixel tiles", W, H, tile)
            try:
                return tiled_apply(self._run, ir, vi, tile, min(self.tile_overlap, tile // 4))
            except Exception as exc:  # noqa: BLE001
                if not _is_oom(exc):
                    raise
        raise MemoryError(f"out of memory fusing a {W}x{H} image even in {self.oom_tiles[-1]}-pixel tiles")

    def _free(self) -> None:
        if self.device.type == "cuda":
            if self._graphed is not None:
                self._graphed.clear()
            torch.cuda.empty_cache()

    def fuse_arrays(self, ir: np.ndarray, vi: np.ndarray, *, gray: bool = False) -> np.ndarray:
        """``ir`` ``(H, W)``/``(H, W, 3)``, ``vi`` ``(H, W)``/``(H, W, 3)`` in [0, 1] -> fused in [0, 1]:
        ``(H, W, 3)`` when ``vi`` is RGB (its chroma restored) unless ``gray``, else ``(H, W)``."""
        ir_y = to_gray(ir)
        vi_y, cbcr = split_luma(vi)
        if ir_y.shape != vi_y.shape:
            raise ValueError(f"size mismatch: infrared is {ir_y.shape[1]}x{ir_y.shape[0]}, "
                             f"visible is {vi_y.shape[1]}x{vi_y.shape[0]}")
        return merge_luma(self._fuse_luma(ir_y, vi_y), None if gray else cbcr)

    def _fuse_luma(self, ir_y: np.ndarray, vi_y: np.ndarray) -> np.ndarray:
        """``(H, W)`` infrared and visible Y -> fused Y ``(H, W)`` float32 numpy (on the CPU)."""
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None]  # noqa: E731
        return self.fuse_y(t(ir_y), t(vi_y))[0, 0].cpu().numpy()

    def fuse_files(self, pair: Pair, out_path: Path, *, gray: bool = False, stretch16: bool = False) -> Path:
        """Read a pair, fuse it and write ``out_path`` (8-bit; format from the suffix) atomically."""
        ir_y, vi_y, cbcr = load_pair(pair, stretch16=stretch16)
        return _write_fused(out_path, self._fuse_luma(ir_y, vi_y), cbcr, gray)


# ----------------------------------------------------------------------------- folders
@dataclass
class FuseReport:
    written: List[Path] = field(default_factory=list)
    failed: List[Tuple[str, str]] = field(default_factory=list)  # (name, reason)

    @property
    def ok(self) -> bool:
        return not self.failed


# Failures of one pair that are recorded (the other pairs go on); anything else propagates.
PAIR_ERRORS = (ImageReadError, PairingError, ValueError, MemoryError, OSError)


def fuse_pairs(fuser: Fuser, jobs: Sequence[Tuple[Pair, Path]], *, gray: bool = False, stretch16: bool = False,
               progress: Optional[bool] = None, workers: int = 2, prefetch: int = 2) -> FuseReport:
    """Fuse ``(pair, output path)`` jobs in order; a failing pair is recorded and skipped.

    With ``workers > 0``, I/O overlaps the fusion: up to ``prefetch`` pairs after the current one
    are decoded ahead and finished outputs are colour-merged, encoded and written (atomically) in
    the background, by a pool of ``workers`` threads, with at most ``max(2, workers)`` outputs
    waiting to be written. The files, ``report.written``/``report.failed`` and the log are the
    same, in the same order, as with ``workers=0`` (one pair after the other); exceptions other
    than :data:`PAIR_ERRORS` propagate once the outputs of the pairs fused before have been
    written and the threads have stopped.
    """
    from tqdm import tqdm

    jobs = list(jobs)
    report = FuseReport()
    if isinstance(fuser, Fuser) and fuser.precompile:
        fuser.precompile_sizes(_header_sizes(jobs[:PRECOMPILE_SCAN]))
    disable = not sys.stderr.isatty() if progress is None else not progress
    bar = tqdm(jobs, desc="fuse", unit="pair", disable=disable, dynamic_ncols=True)
    if workers <= 0 or not _pipelinable(fuser):
        for pair, out in bar:
            try:
                report.written.append(fuser.fuse_files(pair, out, gray=gray, stretch16=stretch16))
            except PAIR_ERRORS as exc:
                logger.error("%s: %s", pair.name, exc)
                report.failed.append((pair.name, str(exc)))
        return report
    return _fuse_pipelined(fuser, jobs, bar, report, gray=gray, stretch16=stretch16,
                           workers=int(workers), prefetch=max(0, int(prefetch)))


def _header_sizes(jobs: Sequence[Tuple[Pair, Path]]) -> List[Tuple[int, int]]:
    """``(H, W)`` of the visible images of ``jobs`` from their file headers (no decoding); a file
    that cannot be opened is left out here (its pair reports the error when its turn comes)."""
    from PIL import Image

    sizes = []
    for pair, _ in jobs:
        try:
            with Image.open(pair.vi) as img:
                sizes.append((img.height, img.width))
        except Exception:  # noqa: BLE001 - reported by the pair itself
            continue
    return sizes


def _pipelinable(fuser: Any) -> bool:
    """The pipeline runs :meth:`Fuser.fuse_files`'s steps (read, ``_fuse_luma``, write) itself:
    only for fusers that keep that method."""
    return isinstance(fuser, Fuser) and type(fuser).fuse_files is Fuser.fuse_files


def _write_fused(out: Path, fused_y: np.ndarray, cbcr: Optional[np.ndarray], gray: bool) -> Path:
    """Colour merge (unless ``gray``) and atomic 8-bit write of one fused luminance."""
    write_image(out, merge_luma(fused_y, None if gray else cbcr))
    return out


def _fuse_pipelined(fuser: Fuser, jobs: List[Tuple[Pair, Path]], bar: Any, report: FuseReport, *, gray: bool,
                    stretch16: bool, workers: int, prefetch: int) -> FuseReport:
    """read-ahead (``prefetch`` pairs) -> fuse (this thread) -> write-behind, in ``workers`` threads.

    Every job leaves one entry in ``outcomes`` (a pending write, or the error that stopped it),
    settled strictly in job order, so the report and the log keep the sequential order.
    """
    max_writes = max(2, workers)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="diffmf-io")
    reads: Deque["Future"] = deque()
    outcomes: Deque[Tuple[Pair, Path, Optional["Future"], Optional[BaseException]]] = deque()
    pending_paths: Dict[Path, int] = {}  # output path -> pending writes to it
    n_writes = 0
    next_read = 0

    def settle() -> None:
        nonlocal n_writes
        pair, out, fut, exc = outcomes.popleft()
        if fut is not None:
            n_writes -= 1
            key = _path_key(out)
            pending_paths[key] -= 1
            if not pending_paths[key]:
                del pending_paths[key]
            try:
                report.written.append(fut.result())
                return
            except PAIR_ERRORS as e:
                exc = e
        logger.error("%s: %s", pair.name, exc)
        report.failed.append((pair.name, str(exc)))

    try:
        for i, (pair, out) in enumerate(bar):
            while next_read < len(jobs) and next_read <= i + prefetch:
                reads.append(pool.submit(load_pair, jobs[next_read][0], stretch16=stretch16))
                next_read += 1
            loaded = reads.popleft()
            try:
                ir_y, vi_y, cbcr = loaded.result()
                fused = fuser._fuse_luma(ir_y, vi_y)
            except PAIR_ERRORS as exc:
                outcomes.append((pair, out, None, exc))
            else:
                del ir_y, vi_y
                key = _path_key(out)
                while key in pending_paths or n_writes >= max_writes:  # same file: keep the sequential order
                    settle()
                outcomes.append((pair, out, pool.submit(_write_fused, out, fused, cbcr, gray), None))
                n_writes += 1
                pending_paths[key] = pending_paths.get(key, 0) + 1
                del fused, cbcr
            while outcomes and (outcomes[0][2] is None or outcomes[0][2].done()):
                settle()
        while outcomes:
            settle()
    except BaseException:
        for fut in reads:
            fut.cancel()
        # The pairs fused before the error are written (and their failures logged), as they would
        # have been one after the other; then the error propagates.
        while outcomes:
            try:
                settle()
            except Exception as exc:  # noqa: BLE001 - the first error is the one raised
                logger.error("%s", exc)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return report


def _path_key(path: Path) -> Path:
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError):
        return Path(path)


# ----------------------------------------------------------------------------- Python API
@functools.lru_cache(maxsize=2)
def _cached_fuser(weights: Optional[str], device: str) -> Fuser:
    return Fuser.from_weights(weights, device)


def _as_float_image(x: Any, what: str) -> Tuple[np.ndarray, str, Any]:
    """-> (float array (H, W) / (H, W, 3) in [0, 1], kind, extra) for numpy / PIL / tensor / path inputs."""
    from PIL import Image

    if isinstance(x, (str, Path)):
        return read_image(x), "path", None
    if isinstance(x, Image.Image):
        if x.mode in ("1", "LA", "La"):
            x = x.convert("L")
        img = x.convert("RGB") if x.mode not in ("L", "RGB", "I;16", "I", "F") else x
        if img.mode in ("I;16", "I"):
            return np.asarray(img, dtype=np.float32) / 65535.0, "pil", x.mode
        arr = np.asarray(img, dtype=np.float32)
        return (arr if img.mode == "F" else arr / 255.0), "pil", x.mode
    if isinstance(x, torch.Tensor):
        t = x.detach().float().cpu()
        shape = tuple(t.shape)
        if t.dim() == 4:
            if t.shape[0] != 1:
                raise ValueError(f"{what}: one image at a time, got a batch of {t.shape[0]}")
            t = t[0]
        if t.dim() == 3:
            if t.shape[0] not in (1, 3):
                raise ValueError(f"{what}: expected (C, H, W) with C = 1 or 3, got {shape}")
            t = t[0] if t.shape[0] == 1 else t.permute(1, 2, 0)
        return t.numpy(), "tensor", shape
    if isinstance(x, np.ndarray):
        arr = x
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[..., 0]
        if arr.ndim == 3 and arr.shape[2] == 4:
            arr = arr[..., :3]
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
            raise ValueError(f"{what}: expected (H, W) or (H, W, 3), got {x.shape}")
        if arr.dtype == np.uint8:
            return arr.astype(np.float32) / 255.0, "numpy", arr.dtype
        if arr.dtype == np.uint16:
            return arr.astype(np.float32) / 65535.0, "numpy", arr.dtype
        return arr.astype(np.float32), "numpy", arr.dtype
    raise TypeError(f"{what}: unsupported type {type(x).__name__} (use a numpy array, PIL image, tensor or path)")


def fuse(
    ir: Any,
    vi: Any,
    *,
    weights: Optional[Union[str, Path]] = None,
    model: Optional[nn.Module] = None,
    device: str = "auto",
    tile: int = 0,
    tile_overlap: int = 32,
    gray: bool = False,
    amp: bool = False,
    normalize: str = "none",
) -> Any:
    """Fuse one infrared / visible pair.

    Args:
        ir, vi: numpy arrays ``(H, W)`` / ``(H, W, 3)`` (uint8, uint16 or float in [0, 1]), PIL
            images, tensors ``(H, W)`` / ``(C, H, W)`` / ``(1, C, H, W)`` in [0, 1], or file paths.
        weights: registered name or file (default :data:`diffmf.weights.DEFAULT`); ignored when
            ``model`` is given.
        gray: return the fused luminance only, even for an RGB visible image.
        normalize: ``none`` or ``minmax`` (stretch the fused luminance to [0, 1] as CDDFuse's
            test script does; see :class:`Fuser`).
    Returns:
        The fused image, same height and width, RGB when ``vi`` is RGB (unless ``gray``), in the
        visible input's type: PIL -> PIL (``L``/``RGB``); numpy -> numpy of the same dtype
        (uint8/uint16 scaled, float in [0, 1]); tensor -> float tensor in [0, 1] with the
        input's layout; path -> float32 numpy array in [0, 1].
    """
    ir_a, _, _ = _as_float_image(ir, "ir")
    vi_a, kind, extra = _as_float_image(vi, "vi")
    if model is not None:
        fuser = Fuser(model, pick_device(device), tile=tile, tile_overlap=tile_overlap, amp=amp, normalize=normalize)
    else:
        base = _cached_fuser(None if weights is None else str(weights), str(pick_device(device)))
        fuser = Fuser(base.model, base.device, tile=tile, tile_overlap=tile_overlap, amp=amp, normalize=normalize)
    out = fuser.fuse_arrays(ir_a, vi_a, gray=gray)
    if kind == "pil":
        from PIL import Image

        from diffmf.data.io import to_uint8

        return Image.fromarray(to_uint8(out), mode="RGB" if out.ndim == 3 else "L")
    if kind == "numpy":
        if extra == np.uint8:
            return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)
        if extra == np.uint16:
            return np.clip(np.rint(out * 65535.0), 0, 65535).astype(np.uint16)
        return out.astype(extra if np.issubdtype(extra, np.floating) else np.float32)
    if kind == "tensor":
        t = torch.from_numpy(out)
        t = t.permute(2, 0, 1) if t.dim() == 3 else t[None]  # (C, H, W)
        if len(extra) == 2:
            return t[0] if t.shape[0] == 1 else t
        return t if len(extra) == 3 else t[None]
    return out
