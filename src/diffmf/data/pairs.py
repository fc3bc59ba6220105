"""Finding registered image pairs on disk: modality folders and pairing by file stem.

A *root* holds one infrared-like and one visible-like folder::

    root/ir/0001.png   root/vi/0001.jpg      -> pair "0001"

Folder names are matched case-insensitively against :data:`IR_FOLDERS` and :data:`VI_FOLDERS`.
Medical pairs follow CDDFuse's ``test_MIF.py``: ``MRI`` takes the infrared slot and the
functional image (``CT``, ``PET``, ``SPECT``) the visible slot, so the chroma of a colour
PET/SPECT image is the one restored after fusion.

Files are paired by stem (the name without extension), never by sort order; extensions may
differ between the two folders. Files with no partner are reported by name.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Tuple, Union

from diffmf.data.io import ImageReadError, image_size, is_image_file

logger = logging.getLogger(__name__)

IR_FOLDERS = ("ir", "infrared", "lwir", "mri")
VI_FOLDERS = ("vi", "vis", "visible", "vi_y", "ct", "pet", "spect")

PathLike = Union[str, Path]


class PairingError(ValueError):
    """Folders or files that cannot be paired; the message lists every offending file."""


@dataclass(frozen=True)
class Pair:
    """One registered pair: ``name`` (the shared stem, prefixed by the root when several)."""

    name: str
    ir: Path
    vi: Path


def _list_preview(paths: Sequence[object], limit: int = 20) -> str:
    items = [str(p) for p in paths[:limit]]
    more = f" ... and {len(paths) - limit} more" if len(paths) > limit else ""
    return ", ".join(items) + more


def find_modality_dirs(root: PathLike) -> Tuple[Path, Path]:
    """``(ir_dir, vi_dir)`` inside ``root``, found by the folder-name aliases.

    Raises:
        PairingError: ``root`` is missing, or has none or several candidates for a modality.
    """
    root = Path(root)
    if not root.is_dir():
        raise PairingError(f"{root}: not a folder")
    subdirs = sorted(p for p in root.iterdir() if p.is_dir())
    found: Dict[str, List[Path]] = {"ir": [], "vi": []}
    for d in subdirs:
        key = d.name.lower()
        if key in IR_FOLDERS:
            found["ir"].append(d)
        elif key in VI_FOLDERS:
            found["vi"].append(d)
    for kind, aliases in (("ir", IR_FOLDERS), ("vi", VI_FOLDERS)):
        if not found[kind]:
            raise PairingError(
                f"{root}: no {'infrared' if kind == 'ir' else 'visible'} folder (looked for "
                f"{', '.join(aliases)}, any case); subfolders here: {[d.name for d in subdirs] or 'none'}"
            )
        if len(found[kind]) > 1:
            raise PairingError(f"{root}: several {kind} folders {[d.name for d in found[kind]]}; keep one")
    return found["ir"][0], found["vi"][0]


def _index_by_stem(folder: Path) -> Dict[str, Path]:
    files: Dict[str, Path] = {}
    clashes: List[str] = []
    for p in sorted(folder.iterdir()):
        if not is_image_file(p):
            continue
        if p.stem in files:
            clashes.append(f"{files[p.stem].name} / {p.name}")
            continue
        files[p.stem] = p
    if clashes:
        raise PairingError(f"{folder}: several files share a name (stem): {_list_preview(clashes)}")
    return files


def pair_folders(ir_dir: PathLike, vi_dir: PathLike, *, prefix: str = "") -> Tuple[List[Pair], List[Path], List[Path]]:
    """Pair the images of two folders by stem.

    Returns:
        ``(pairs, ir_without_partner, vi_without_partner)``; pairs sorted by name.
    """
    ir_dir, vi_dir = Path(ir_dir), Path(vi_dir)
    for d in (ir_dir, vi_dir):
        if not d.is_dir():
            raise PairingError(f"{d}: not a folder")
    ir, vi = _index_by_stem(ir_dir), _index_by_stem(vi_dir)
    pairs = [Pair(f"{prefix}{s}", ir[s], vi[s]) for s in sorted(set(ir) & set(vi))]
    lonely_ir = [ir[s] for s in sorted(set(ir) - set(vi))]
    lonely_vi = [vi[s] for s in sorted(set(vi) - set(ir))]
    return pairs, lonely_ir, lonely_vi


def check_sizes(pairs: Iterable[Pair]) -> None:
    """Raise :class:`PairingError` listing every pair whose two images differ in size
    (reads file headers only) and every file that cannot be opened."""
    bad: List[str] = []
    for p in pairs:
        try:
            s_ir, s_vi = image_size(p.ir), image_size(p.vi)
        except ImageReadError as exc:
            bad.append(str(exc))
            continue
        if s_ir != s_vi:
            bad.append(f"{p.ir} is {s_ir[0]}x{s_ir[1]} but {p.vi} is {s_vi[0]}x{s_vi[1]}")
    if bad:
        raise PairingError(f"{len(bad)} pair(s) cannot be used (sizes must match): " + "; ".join(bad[:20])
                           + (f" ... and {len(bad) - 20} more" if len(bad) > 20 else ""))


def collect_pairs(
    roots: Sequence[PathLike] = (),
    dirs: Sequence[Tuple[PathLike, PathLike]] = (),
    *,
    strict: bool = True,
    verify_sizes: bool = True,
) -> List[Pair]:
    """All pairs of several sources.

    Args:
        roots: folders each holding an infrared-like and a visible-like subfolder.
        dirs: explicit ``(ir_dir, vi_dir)`` folder pairs.
        strict: raise :class:`PairingError` listing files without a partner (else log a warning
            and skip them).
        verify_sizes: check that both images of each pair have the same size.
    Returns:
        Pairs; names are prefixed ``"<source>/"`` when there are several sources.
    """
    sources: List[Tuple[Path, Path, str]] = []
    for r in roots:
        ir_dir, vi_dir = find_modality_dirs(r)
        sources.append((ir_dir, vi_dir, Path(r).name))
    for ir_dir, vi_dir in dirs:
        sources.append((Path(ir_dir), Path(vi_dir), Path(ir_dir).parent.name or Path(ir_dir).name))
    if not sources:
        raise PairingError("no data: give at least one root folder (with ir/ and vi/) or an (ir, vi) folder pair")
    several = len(sources) > 1
    pairs: List[Pair] = []
    unmatched: List[Path] = []
    seen: Dict[str, int] = {}
    for ir_dir, vi_dir, label in sources:
        if several:
            seen[label] = seen.get(label, 0) + 1
            if seen[label] > 1:
                label = f"{label}{seen[label]}"
        found, lonely_ir, lonely_vi = pair_folders(ir_dir, vi_dir, prefix=f"{label}/" if several else "")
        if not found:
            raise PairingError(f"no pairs between {ir_dir} and {vi_dir} (files are paired by name)")
        pairs.extend(found)
        unmatched.extend(lonely_ir + lonely_vi)
    if unmatched:
        msg = f"{len(unmatched)} file(s) have no partner with the same name: {_list_preview(unmatched)}"
        if strict:
            raise PairingError(msg)
        logger.warning("%s (skipped)", msg)
    if verify_sizes:
        check_sizes(pairs)
    return pairs
