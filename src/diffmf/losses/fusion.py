"""The DIFF-MF fusion loss, eq. 11-14 (following SwinFusion [13] / MambaDFuse).

All inputs are ``(B, 1, H, W)`` tensors in [0, 1]: the fused image ``I_f``, the infrared
``I_ir`` and the visible luminance ``I_vi``.

* eq. 11  ``L_ssim = w1 (1 - ssim(I_f, I_ir)) + w2 (1 - ssim(I_f, I_vi))``, w1 = w2 = 0.5.
* eq. 12  ``L_text = 1/HW || |grad I_f| - max(|grad I_ir|, |grad I_vi|) ||_1`` with the Sobel
  gradient; ``|grad I| = |I * Sx| + |I * Sy|`` (zero padding), as in SwinFusion's ``Sobelxy``.
* eq. 13  ``L_int = 1/HW || I_f - M(I_ir, I_vi) ||_1`` with M the element-wise maximum for
  infrared-visible fusion (``"mean"`` is available for other scenarios).
* eq. 14  ``L_total = l1 L_ssim + l2 L_text + l3 L_int``. The paper does not print lambda; the
  defaults are the values of the code lineage it follows (SwinFusion's ``fusion_loss_vif`` and
  MambaDFuse): l1 = 10, l2 = 20, l3 = 20.

The 1/HW norms are means over pixels; the batch is averaged as well.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Dict

import torch
import torch.nn as nn
import torch.nn.functional as F

from diffmf.losses.ssim import ssim

SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))
SOBEL_Y = ((1.0, 2.0, 1.0), (0.0, 0.0, 0.0), (-1.0, -2.0, -1.0))


@functools.lru_cache(maxsize=None)
def _sobel_kernels(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``(2, 1, 3, 3)`` Sobel x / y, made once per dtype and device: a host-to-device copy
    inside the loss would break the CUDA-graph capture of a training step."""
    return torch.tensor([SOBEL_X, SOBEL_Y], dtype=dtype).to(device)[:, None]


def sobel_gradient(x: torch.Tensor) -> torch.Tensor:
    """``|x * Sx| + |x * Sy|`` for ``(B, C, H, W)`` (3x3 Sobel, zero padding, cross-correlation)."""
    c = x.shape[1]
    k = _sobel_kernels(x.dtype, x.device)
    g = F.conv2d(x.reshape(-1, 1, *x.shape[-2:]), k, padding=1)  # (B*C, 2, H, W)
    return g.abs().sum(dim=1).reshape(x.shape[0], c, *x.shape[-2:])


def ssim_loss(fused: torch.Tensor, ir: torch.Tensor, vi: torch.Tensor, w_ir: float = 0.5, w_vi: float = 0.5,
              window_size: int = 11) -> torch.Tensor:
    """Eq. 11."""
    return w_ir * (1.0 - ssim(fused, ir, window_size)) + w_vi * (1.0 - ssim(fused, vi, window_size))


def texture_loss(fused: torch.Tensor, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
    """Eq. 12: L1 between the fused gradient and the element-wise max of the source gradients."""
    target = torch.maximum(sobel_gradient(ir), sobel_gradient(vi))
    return F.l1_loss(sobel_gradient(fused), target)


def intensity_loss(fused: torch.Tensor, ir: torch.Tensor, vi: torch.Tensor, mode: str = "max") -> torch.Tensor:
    """Eq. 13 with ``M`` = element-wise ``"max"`` (infrared-visible) or ``"mean"``."""
    if mode == "max":
        target = torch.maximum(ir, vi)
    elif mode == "mean":
        target = 0.5 * (ir + vi)
    else:
        raise ValueError(f"intensity mode must be 'max' or 'mean', got {mode!r}")
    return F.l1_loss(fused, target)


@dataclass
class LossConfig:
    """Weights of eq. 14 and eq. 11, the SSIM window and the intensity aggregation of eq. 13."""

    w_ssim: float = 10.0  # lambda_1
    w_text: float = 20.0  # lambda_2
    w_int: float = 20.0  # lambda_3
    ssim_w_ir: float = 0.5  # w_1
    ssim_w_vi: float = 0.5  # w_2
    ssim_window: int = 11
    intensity: str = "max"


class FusionLoss(nn.Module):
    """Eq. 14. ``forward`` returns ``(total, {"loss": .., "ssim": .., "text": .., "int": ..})``
    where the dict holds detached unweighted terms (and the weighted total) for logging."""

    def __init__(self, cfg: LossConfig = LossConfig()) -> None:
        super().__init__()
        self.cfg = cfg

    def forward(self, fused: torch.Tensor, ir: torch.Tensor, vi: torch.Tensor):
        c = self.cfg
        fused, ir, vi = fused.float(), ir.float(), vi.float()  # the loss is computed in fp32
        l_ssim = ssim_loss(fused, ir, vi, c.ssim_w_ir, c.ssim_w_vi, c.ssim_window)
        l_text = texture_loss(fused, ir, vi)
        l_int = intensity_loss(fused, ir, vi, c.intensity)
        total = c.w_ssim * l_ssim + c.w_text * l_text + c.w_int * l_int
        parts: Dict[str, torch.Tensor] = {
            "loss": total.detach(), "ssim": l_ssim.detach(), "text": l_text.detach(), "int": l_int.detach(),
        }
        return total, parts
