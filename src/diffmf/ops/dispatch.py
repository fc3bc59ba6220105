"""Scan backend selection: ``auto | torch | ref | triton``.

Order of precedence: the ``backend=`` argument of a call, then :func:`set_backend`, then the
environment variable ``DIFFMF_SCAN_BACKEND``, then ``auto``. ``auto`` resolves to ``triton``
for CUDA tensors when Triton is importable, and to ``torch`` otherwise. Asking for ``triton``
where it cannot run raises an error that says what to do; it never falls back silently.
"""
from __future__ import annotations

import importlib.util
import os
from typing import Callable, List, Optional, Tuple

import torch

BACKENDS = ("auto", "torch", "ref", "triton")
ENV_VAR = "DIFFMF_SCAN_BACKEND"


class BackendSetting:
    """A process-wide backend choice for one kind of op: the value given to :meth:`set`, else
    the environment variable ``env_var``, else ``"auto"``; names are checked against ``names``."""

    def __init__(self, what: str, names: Tuple[str, ...], env_var: str) -> None:
        self.what, self.names, self.env_var = what, names, env_var
        self.value: Optional[str] = None

    def set(self, name: Optional[str]) -> None:
        """Set the backend (``None`` restores env/auto)."""
        if name is not None and name not in self.names:
            raise ValueError(f"unknown {self.what} backend {name!r}; choose one of {self.names}")
        self.value = name

    def get(self) -> str:
        """The configured backend name (may be ``auto``)."""
        name = self.value or os.environ.get(self.env_var, "auto") or "auto"
        if name not in self.names:
            raise ValueError(f"{self.env_var}={name!r} is not one of {self.names}")
        return name

    def resolve(self, device: torch.device, requested: Optional[str] = None) -> str:
        """Concrete backend for tensors on ``device``: ``auto`` is ``triton`` for CUDA tensors
        when Triton can run, else ``torch``; an explicit ``triton`` that cannot run raises."""
        name = requested or self.get()
        if name not in self.names:
            raise ValueError(f"unknown {self.what} backend {name!r}; choose one of {self.names}")
        if name == "auto":
            return "triton" if device.type == "cuda" and triton_status(device) is None else "torch"
        if name == "triton":
            reason = triton_status(device)
            if reason is not None:
                raise RuntimeError(f"{self.what} backend 'triton' unavailable: {reason} (or set {self.env_var}=torch)")
        return name

    def resolve_call(self, device: torch.device, requested: Optional[str], unsupported: Callable[[], Optional[str]]) -> str:
        """:meth:`resolve` for one call whose arguments the Triton kernels may not take:
        ``unsupported()`` says why not (None when they can). Then ``triton`` asked for
        explicitly (argument or setting) raises, ``auto`` runs ``torch``."""
        name = self.resolve(device, requested)
        if name == "triton":
            why = unsupported()
            if why is not None:
                if (requested or self.get()) == "triton":
                    raise RuntimeError(f"{self.what} backend 'triton' cannot take this call: {why}; "
                                       f"use {self.env_var}=auto (or torch)")
                name = "torch"
        return name

    def available(self, device: torch.device) -> List[str]:
        """The backends that can run on ``device`` (``auto`` aside), in ``names`` order."""
        return [n for n in self.names if n != "auto" and (n != "triton" or triton_status(device) is None)]


_SCAN = BackendSetting("scan", BACKENDS, ENV_VAR)


def set_backend(name: Optional[str]) -> None:
    """Set the process-wide scan backend (``None`` restores env/auto)."""
    _SCAN.set(name)


def get_backend() -> str:
    """The configured scan backend name (may be ``auto``)."""
    return _SCAN.get()


def needs_grad(*tensors: Optional[torch.Tensor]) -> bool:
    """Whether autograd will need a gradient through any of ``tensors`` (None entries ignored):
    grad mode is on and one of them requires grad. Forward-only kernels run only when not."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def env_count(name: str, text: str, meaning: str) -> int:
    """``text`` (the value of environment variable ``name``) as an integer >= 0, or a
    ``ValueError`` that names the variable, the value and ``meaning`` (what the variable takes)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"{name}={text!r}: expected {meaning}")
    return value


def triton_interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def triton_status(device: torch.device) -> Optional[str]:
    """None when the Triton backend can run on ``device``, else the reason it cannot."""
    if importlib.util.find_spec("triton") is None:
        return (
            "Triton is not installed. CUDA builds of PyTorch ship it; otherwise run "
            "`pip install triton` (Linux x86_64)."
        )
    if device.type != "cuda" and not triton_interpreting():
        return f"the Triton kernels need CUDA tensors (got {device.type}); set TRITON_INTERPRET=1 to run them on the CPU interpreter (tests only)"
    return None


def resolve_backend(device: torch.device, requested: Optional[str] = None) -> str:
    """Concrete scan backend (``torch``, ``ref`` or ``triton``) for tensors on ``device``."""
    return _SCAN.resolve(device, requested)


def available_backends(device: torch.device) -> List[str]:
    return _SCAN.available(device)
