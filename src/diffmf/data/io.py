"""Reading and writing images as float arrays in [0, 1].

Every reader returns ``float32`` arrays of shape ``(H, W)`` (gray) or ``(H, W, 3)`` (RGB) with
values in ``[0, 1]``. Bit depth is handled here and nowhere else:

* 8-bit images (PNG, JPEG, BMP, TIFF) are divided by 255.
* 16-bit images (e.g. radiometric thermal TIFF/PNG) are divided by 65535 by default, which
  keeps absolute intensities comparable between images. Raw thermal data often occupies a
  narrow band of the 16-bit range; ``stretch16=True`` maps each image's own min..max to 0..1
  instead (a per-image normalisation, so only use it when the absolute level does not matter).
* Palette, gray+alpha and RGBA images are converted to gray or RGB (alpha is dropped).
* 32-bit integer and float images are accepted when their values lie in [0, 1] (float) or
  [0, 65535] (integer).

Unreadable or corrupt files raise :class:`ImageReadError` naming the file.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from diffmf.utils.io import atomic_path

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

PathLike = Union[str, Path]


class ImageReadError(OSError):
    """An image file is missing, corrupt or in a format diffmf cannot use."""


def is_image_file(path: Path) -> bool:
    """True for a visible (not hidden) file with a supported image extension."""
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS


def _from_pil(img: Image.Image, path: Path, stretch16: bool) -> np.ndarray:
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(img).astype(np.float64)
        if mode == "I" and arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise ImageReadError(f"{path}: 32-bit integer image with values outside 0..65535")
        if stretch16:
            lo, hi = float(arr.min()), float(arr.max())
            arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
        else:
            arr = arr / 65535.0
            if arr.size and arr.max() < 1.0 / 16:
                logger.warning("%s: 16-bit image uses only values up to %d of 65535; it will look "
                               "almost black (use stretch16 / --stretch16 to normalise it)", path, int(arr.max() * 65535))
        return arr.astype(np.float32)
    if mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        if arr.size and (np.nanmin(arr) < 0.0 or np.nanmax(arr) > 1.0):
            raise ImageReadError(f"{path}: float image with values outside [0, 1]")
        return arr
    if mode in ("1", "L", "LA", "P", "PA"):
        if mode in ("P", "PA"):
            img = img.convert("RGBA" if "transparency" in img.info or mode == "PA" else "RGB")
            return _from_pil(img, path, stretch16)
        img = img.convert("L")
    elif mode != "RGB":
        img = img.convert("RGB")  # RGBA, CMYK, YCbCr, LAB, ...
    return np.asarray(img, dtype=np.float32) / 255.0


def read_image(path: PathLike, *, stretch16: bool = False) -> np.ndarray:
    """Read an image file as ``float32`` in ``[0, 1]``: ``(H, W)`` gray or ``(H, W, 3)`` RGB.

    Raises:
        ImageReadError: the file is missing, not an image, truncated or corrupt.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file")
    try:
        with Image.open(path) as img:
            img.load()
            arr = _from_pil(img, path, stretch16)
    except ImageReadError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageReadError(f"{path}: cannot read image ({exc})") from None
    # Images stored as 3 identical channels (common for infrared) are gray.
    if arr.ndim == 3 and np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2]):
        arr = np.ascontiguousarray(arr[..., 0])
    return arr


def image_size(path: PathLike) -> tuple:
    """``(width, height)`` from the file header (does not decode the pixels)."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            return img.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageReadError(f"{path}: cannot read image ({exc})") from None


def to_uint8(arr: np.ndarray) -> np.ndarray:
    """``[0, 1]`` float -> uint8 with rounding (values outside are clipped)."""
    return np.clip(np.rint(np.asarray(arr, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def write_image(path: PathLike, arr: np.ndarray, *, jpeg_quality: int = 95) -> None:
    """Write a ``[0, 1]`` float (or uint8) ``(H, W)`` / ``(H, W, 3)`` array as an 8-bit image, atomically.

    The format follows the suffix of ``path``; JPEG is written with ``jpeg_quality``.
    """
    path = Path(path)
    data = arr if arr.dtype == np.uint8 else to_uint8(arr)
    img = Image.fromarray(data, mode="L" if data.ndim == 2 else "RGB")
    kwargs = {"quality": jpeg_quality} if path.suffix.lower() in (".jpg", ".jpeg") else {}
    with atomic_path(path) as tmp:
        img.save(tmp, **kwargs)
