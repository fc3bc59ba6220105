"""Shipped weights: a tiny registry of names ``<architecture>.<training tag>`` -> files in this folder.

``diffmf fuse`` and :func:`diffmf.fuse` use :data:`DEFAULT` unless ``--weights NAME|FILE`` is
given. A registered name whose file is not part of this install raises
:class:`WeightsNotFoundError` saying so (and what to do instead).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Union

WEIGHTS_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class WeightsInfo:
    name: str
    description: str

    @property
    def arch(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def path(self) -> Path:
        return WEIGHTS_DIR / f"{self.name}.safetensors"


REGISTRY: Dict[str, WeightsInfo] = {
    info.name: info
    for info in (
        WeightsInfo("diffmf_paper.roadscene", "paper preset trained on RoadScene + MSRS training pairs (see docs/results.md)"),
    )
}
DEFAULT = "diffmf_paper.roadscene"


class WeightsNotFoundError(FileNotFoundError):
    """A weights name or file that is not available."""


def resolve(name_or_path: Optional[Union[str, Path]] = None) -> Path:
    """The file for a registered name (``None``: :data:`DEFAULT`) or an existing path.

    Raises:
        WeightsNotFoundError: unknown name, missing file, or a registered file absent from this install.
    """
    key = DEFAULT if name_or_path is None else str(name_or_path)
    if key in REGISTRY:
        info = REGISTRY[key]
        if info.path.is_file():
            return info.path
        default = " (the default)" if key == DEFAULT else ""
        raise WeightsNotFoundError(
            f"weights {key!r}{default} are not included in this install of diffmf (expected {info.path}). "
            f"Train your own with `diffmf train` (docs/training.md) and pass --weights FILE.safetensors"
        )
    path = Path(key).expanduser()
    if path.is_file():
        return path
    raise WeightsNotFoundError(f"weights {key!r}: no such file and not a registered name (registered: {', '.join(REGISTRY)})")


def available() -> Dict[str, bool]:
    """Registered names and whether their file is present."""
    return {name: info.path.is_file() for name, info in REGISTRY.items()}
