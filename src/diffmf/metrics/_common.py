"""Shared plumbing for the fusion metrics: input conversion, gray conversion, image loading and
the window filters that the reference implementations use.

Every metric in :mod:`diffmf.metrics` is defined on **0-255 gray data holding integer values**
(the saved uint8 image), computed in float64. This module turns the inputs users have
(uint8/float numpy arrays, torch tensors, image files) into exactly that, and refuses inputs
that would silently change the numbers (16-bit images, out-of-range floats).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal, Tuple, Union

import numpy as np
from scipy import ndimage

logger = logging.getLogger(__name__)

__all__ = [
    "RGB2GRAY_WEIGHTS",
    "ImageLike",
    "rgb2gray_u8",
    "as_gray255",
    "prepare_triplet",
    "load_gray",
    "fspecial_gaussian_1d",
    "filter2_valid",
    "filter2_same",
    "normalize1",
    "ImageTooSmallError",
]

#: MATLAB ``rgb2gray`` weights (the exact values of its inverse-NTSC row, as MATLAB computes them).
RGB2GRAY_WEIGHTS: Tuple[float, float, float] = (0.298936021293775, 0.587043074451121, 0.114020904255103)

#: What the metric functions accept: a numpy array, a torch tensor or a PIL image.
ImageLike = Any

ON_16BIT = Literal["error", "scale"]


class ImageTooSmallError(ValueError):
    """The image is smaller than a metric's window; :func:`diffmf.metrics.evaluate` reports NaN."""


def _round_half_up(x: np.ndarray) -> np.ndarray:
    """MATLAB ``round`` for non-negative data (halves go up; numpy's ``round`` goes to even)."""
    return np.floor(x + 0.5)


def rgb2gray_u8(rgb: np.ndarray) -> np.ndarray:
    """MATLAB ``rgb2gray`` on uint8 RGB data: weighted sum in float64, rounded to uint8.

    Args:
        rgb: ``(H, W, 3)`` array with values 0-255.
    Returns:
        ``(H, W)`` uint8 array. Three identical channels give that channel back unchanged.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB array, got shape {rgb.shape}")
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
        return np.ascontiguousarray(rgb[..., 0]).astype(np.uint8)
    w = np.asarray(RGB2GRAY_WEIGHTS, dtype=np.float64)
    gray = rgb.astype(np.float64) @ w
    return np.clip(_round_half_up(gray), 0, 255).astype(np.uint8)


def _to_numpy(x: ImageLike) -> Tuple[np.ndarray, bool]:
    """Return ``(array, channels_first)``; torch tensors are detached and moved to the CPU."""
    if isinstance(x, np.ndarray):
        return x, False
    mod = type(x).__module__
    if mod.startswith("torch"):
        t = x.detach().cpu()
        if t.is_floating_point():
            t = t.double()  # float16/bfloat16 have no numpy equivalent; float32 converts exactly
        return t.numpy(), True
    if mod.startswith("PIL"):
        if x.mode not in ("L", "RGB", "I;16", "I;16B", "I;16L", "I", "F"):
            x = x.convert("RGB")  # palette, RGBA, CMYK, ...: decode the colours first
        return np.asarray(x), False
    return np.asarray(x), False


def as_gray255(x: ImageLike, *, data_range: float = 255.0, name: str = "image") -> np.ndarray:
    """Convert one image to the metrics' working form: float64 ``(H, W)``, integer values 0-255.

    Accepted inputs:
      * numpy arrays ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)`` (alpha dropped);
      * torch tensors ``(H, W)``, ``(C, H, W)`` or ``(1, C, H, W)`` with ``C`` in {1, 3};
      * PIL images (mode ``L`` or ``RGB``).

    uint8 data is used as is. Float data is taken to lie in ``[0, data_range]`` (``255`` by
    default; pass ``data_range=1.0`` for network outputs in [0, 1]); it is scaled to 0-255 and
    rounded to integers, i.e. evaluated as the uint8 image it would be saved as. Values outside
    the range raise ``ValueError`` (no silent clipping or min-max normalisation). 16-bit integer
    data raises ``ValueError``: convert it to 8 bit first (see :func:`load_gray`). RGB is
    converted with MATLAB ``rgb2gray`` weights.
    """
    arr, channels_first = _to_numpy(x)
    if arr.ndim == 4:
        if arr.shape[0] != 1:
            raise ValueError(f"{name}: a batch of {arr.shape[0]} images was given; pass one image at a time")
        arr = arr[0]
    if arr.ndim == 3:
        if channels_first or (arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3, 4)):
            arr = np.moveaxis(arr, 0, -1)
        if arr.shape[-1] == 4:
            arr = arr[..., :3]
        if arr.shape[-1] == 1:
            arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] != 3):
        raise ValueError(f"{name}: expected a gray (H, W) or RGB (H, W, 3) image, got shape {arr.shape}")
    if arr.dtype == np.bool_:
        raise ValueError(f"{name}: boolean images are not supported")
    if arr.dtype == np.uint8:
        u8 = arr
    elif np.issubdtype(arr.dtype, np.integer):
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        if lo < 0 or hi > 255:
            raise ValueError(
                f"{name}: integer data outside 0-255 (dtype {arr.dtype}, range {lo}..{hi}); the metrics "
                "are defined on 8-bit data. Convert 16-bit images to 8 bit first "
                "(diffmf.metrics.load_gray(path, on_16bit='scale') divides by 257)."
            )
        u8 = arr.astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.floating):
        a64 = arr.astype(np.float64)
        if not np.all(np.isfinite(a64)):
            raise ValueError(f"{name}: contains NaN or Inf")
        tol = 1e-6 * data_range
        lo, hi = (float(a64.min()), float(a64.max())) if a64.size else (0.0, 0.0)
        if lo < -tol or hi > data_range + tol:
            raise ValueError(
                f"{name}: float values {lo:.4g}..{hi:.4g} lie outside [0, {data_range:g}]; pass the right "
                "data_range (1.0 for [0, 1] outputs) or clip the image yourself"
            )
        scaled = a64 if data_range == 255.0 else a64 * (255.0 / data_range)
        u8 = np.clip(_round_half_up(scaled), 0, 255).astype(np.uint8)
    else:
        raise ValueError(f"{name}: unsupported dtype {arr.dtype}")
    if u8.ndim == 3:
        u8 = rgb2gray_u8(u8)
    if min(u8.shape) < 2:
        raise ValueError(f"{name}: image of shape {u8.shape} is too small (need at least 2x2)")
    return u8.astype(np.float64)


def prepare_triplet(
    ir: ImageLike, vi: ImageLike, fused: ImageLike, *, data_range: float = 255.0
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Convert ``(ir, vi, fused)`` with :func:`as_gray255` and check that the sizes match."""
    a = as_gray255(ir, data_range=data_range, name="ir")
    b = as_gray255(vi, data_range=data_range, name="vi")
    f = as_gray255(fused, data_range=data_range, name="fused")
    if not (a.shape == b.shape == f.shape):
        raise ValueError(f"size mismatch: ir {a.shape}, vi {b.shape}, fused {f.shape}")
    return a, b, f


def load_gray(path: Union[str, Path], *, on_16bit: ON_16BIT = "error") -> np.ndarray:
    """Read an image file as the uint8 gray image the metrics are defined on.

    * 8-bit gray (``L``, ``P`` with a gray palette) is returned as is;
    * RGB/RGBA (or 3 identical channels) goes through MATLAB ``rgb2gray`` (alpha dropped);
    * 16-bit images (``I;16``, ``I``): the metrics are defined on 0-255 uint8 data, so by default
      this raises ``ValueError``. With ``on_16bit="scale"`` the full 16-bit range is mapped to
      8 bit by ``round(x / 257)`` (65535 -> 255).

    Returns:
        ``(H, W)`` uint8 array.
    """
    from PIL import Image

    p = Path(path)
    with Image.open(p) as im:
        mode = im.mode
        if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
            arr = np.asarray(im)
            if on_16bit != "scale":
                raise ValueError(
                    f"{p}: {mode} image with more than 8 bits per pixel; the metrics are defined on 8-bit "
                    "data. Save the fused result as 8-bit, or evaluate with on_16bit='scale' "
                    "(CLI: --16bit scale), which maps 0-65535 to 0-255 by dividing by 257."
                )
            logger.debug("%s: 16-bit image scaled to 8 bit by round(x / 257)", p)
            a = arr.astype(np.float64)
            if a.min() < 0 or a.max() > 65535:
                raise ValueError(f"{p}: values {a.min():g}..{a.max():g} outside the 16-bit range")
            return _round_half_up(a / 257.0).astype(np.uint8)
        if mode in ("F",):
            raise ValueError(f"{p}: floating-point image files are not supported; save the image as 8-bit")
        if mode == "L":
            return np.asarray(im, dtype=np.uint8).copy()
        if mode == "LA":
            return np.asarray(im.getchannel(0), dtype=np.uint8).copy()
        if mode == "1":
            return (np.asarray(im, dtype=np.uint8) * 255).astype(np.uint8)
        rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    return rgb2gray_u8(rgb)


# --------------------------------------------------------------------------------------------
# filters (MATLAB filter2 / fspecial equivalents)
# --------------------------------------------------------------------------------------------


def fspecial_gaussian_1d(n: int, sigma: float) -> np.ndarray:
    """1-D factor of MATLAB ``fspecial('gaussian', n, sigma)``: the 2-D kernel is ``outer(k, k)``.

    fspecial normalises the 2-D kernel to sum 1 and zeroes entries below ``eps * max``; for the
    sizes used here (n <= 31, sigma >= n/5) no entry is zeroed, so the kernel is separable.
    """
    x = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


def filter2_valid(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """MATLAB ``filter2(outer(k, k), x, 'valid')`` for a symmetric separable kernel ``k``.

    Works on stacks: the filter is applied over the last two axes.
    """
    n = k.shape[0]
    h = n // 2
    if x.shape[-2] < n or x.shape[-1] < n:
        raise ImageTooSmallError(f"image {x.shape[-2:]} smaller than the {n}x{n} window")
    y = ndimage.correlate1d(x, k, axis=-2, mode="constant")[..., h : x.shape[-2] - h, :]
    y = ndimage.correlate1d(y, k, axis=-1, mode="constant")[..., h : x.shape[-1] - h]
    return y


def filter2_same(x: np.ndarray, k: np.ndarray, mode: str = "constant") -> np.ndarray:
    """Separable 'same'-size filtering; ``mode`` 'constant' (zero padding, MATLAB filter2) or
    'nearest' (MATLAB imfilter 'replicate'). ``k`` must be symmetric (correlation = convolution).
    """
    y = ndimage.correlate1d(x, k, axis=-2, mode=mode)
    return ndimage.correlate1d(y, k, axis=-1, mode=mode)


def normalize1(x: np.ndarray) -> np.ndarray:
    """zhengliu6699 ``normalize1``: ``round((x - min) / (max - min) * 255)``; all-zero stays zero.

    A constant non-zero image gives 0/0 = NaN in MATLAB; here it maps to all zeros (documented).
    """
    hi = float(x.max())
    lo = float(x.min())
    if hi == 0 and lo == 0:
        return x.astype(np.float64, copy=True)
    if hi == lo:
        return np.zeros_like(x, dtype=np.float64)
    return _round_half_up((x - lo) / (hi - lo) * 255.0)
