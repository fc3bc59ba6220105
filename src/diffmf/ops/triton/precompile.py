"""Compile the Triton kernels a call needs on several CPU threads before the call runs them.

Triton compiles a kernel the first time it is launched with a new specialisation (argument
dtypes, pointer alignment, which integers are 1 or multiples of 16, the constexprs), one after
the other on the calling thread. The network launches about 15 Triton kernels per selective
scan over several feature-map shapes, so a first fuse on a new installation, or of an image
size not seen before, waits on tens of compilations in a row (docs/benchmarks-log.md, "Compiling
the kernels").

:func:`precompile` runs each of its calls once more, first:

1. a *dry pass*: the call runs with Triton's ``jit_cache_hook`` installed; every launch whose
   kernel is not in memory yet is recorded (Triton's own serialised specialisation) and then
   skipped: no compilation, no launch. Everything else in the call (PyTorch ops, allocations)
   runs as usual, on whatever the skipped kernels left in their outputs, so the results of
   the dry pass are garbage and are dropped. The call must not decide anything on the values
   it computes (the network does not).
2. the recorded kernels are compiled in a thread pool through ``JITFunction.preload``, Triton's
   API for warming its caches from such records, and each one's launcher is built and loaded
   (what a first launch does: Triton makes a C launcher stub per kernel signature with the host
   compiler). Triton releases the GIL in much of its lowering and the host compiler and
   ``ptxas`` are subprocesses, so these overlap; the Python parts of Triton's front end do not
   (the 18 kernels of a 640x480 fuse on a 16-core H100 host: 11.7-21.3 s one by one, 3.9-6.6 s
   on 8 threads; docs/benchmarks-log.md). The kernels land in Triton's in-memory and on-disk caches
   under the keys the launches computed, so the real calls that follow compile nothing.

Callers may describe each call (``markers``: the model, the input shape, the precision); after
a call's kernels all compiled, an empty file named by a hash of that description and of the
environment (versions, GPUs, kernel sources, ``DIFFMF_*`` / ``TRITON_*`` settings) is left in
Triton's cache folder, and a later process skips that call's dry pass: its kernels are on disk
already, and the dry pass (a forward without its scans) would only cost time.

Nothing here changes which kernels run or what they compute. If the installed Triton lacks the
APIs (``JITFunction.preload``, ``knobs.runtime.jit_cache_hook``), :func:`precompile` does
nothing and says why in :attr:`PrecompileStats.skipped`; the kernels then compile on first use
as before. ``DIFFMF_COMPILE_THREADS`` sets the pool size (``0`` or ``1``: off; default: the
CPUs this process may use, at most :data:`MAX_THREADS`: more threads mostly wait for the GIL).
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

logger = logging.getLogger(__name__)

ENV_THREADS = "DIFFMF_COMPILE_THREADS"
MAX_THREADS = 8  # 640x480 fuse, H100 host, 18 kernels: 4 / 8 / 16 threads 5.1 / 3.9 / 4.4 s

Request = Tuple[Any, Any, str]  # (JITFunction, device index, Triton's serialised specialisation)


@dataclass
class PrecompileStats:
    """What one :func:`precompile` did.

    Attributes:
        recorded: distinct kernel specialisations the dry pass launched that were not in memory.
        failed: of those, how many did not compile here (they compile, or raise, on first use).
        threads: the pool size used (0 when nothing ran).
        seconds: wall time of the dry pass and the compilations.
        skipped: why nothing ran at all (``None`` when it could): off, or Triton lacks the APIs.
        done_before: calls left out because their markers say they were precompiled before.
    """

    recorded: int = 0
    failed: int = 0
    threads: int = 0
    seconds: float = 0.0
    skipped: Optional[str] = None
    done_before: int = 0


def compile_threads() -> int:
    """Pool size: ``$DIFFMF_COMPILE_THREADS`` if set, else the usable CPUs (at most :data:`MAX_THREADS`)."""
    text = os.environ.get(ENV_THREADS, "").strip()
    if text:
        from diffmf.ops.dispatch import env_count

        return env_count(ENV_THREADS, text, "a thread count >= 0 (0 or 1: compile at first launch)")
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_THREADS))


def unsupported() -> Optional[str]:
    """None when this Triton has what :func:`precompile` uses, else what is missing."""
    try:
        import triton
        from triton import knobs
        from triton.runtime.jit import JITFunction
    except ImportError as exc:  # pragma: no cover - the caller checked Triton before
        return f"Triton cannot be imported ({exc})"
    missing = [name for name, ok in (
        ("JITFunction.preload", hasattr(JITFunction, "preload")),
        ("knobs.runtime.jit_cache_hook", hasattr(getattr(knobs, "runtime", None), "jit_cache_hook")),
    ) if not ok]
    if missing:
        return f"Triton {triton.__version__} has no {', '.join(missing)}"
    return None


def describe() -> str:
    """One line for ``diffmf doctor``: how new kernels get compiled, and why."""
    try:
        n = compile_threads()
    except ValueError as exc:
        return f"invalid setting: {exc}"
    source = (f"${ENV_THREADS}" if os.environ.get(ENV_THREADS, "").strip()
              else f"default: the usable CPUs, at most {MAX_THREADS}")
    if n <= 1:
        return f"one kernel at a time, at its first launch ({source}: {n})"
    why = unsupported()
    if why is not None:
        return f"one kernel at a time, at its first launch: {why}"
    return f"{n} threads compile the kernels of each new input size before it runs ({source})"


class _Recorder:
    """``jit_cache_hook`` of the dry pass: keeps ``(kernel, device, specialisation)`` per new key
    and returns True, which makes Triton skip the compilation and the launch. The hook is
    process-wide: launches from other threads are left to compile and run as usual."""

    def __init__(self) -> None:
        self.requests: Dict[Tuple[int, Any, str], Request] = {}
        self.thread = threading.get_ident()

    def __call__(self, *, key: str, fn: Any, compile: Dict[str, Any], **_: Any) -> bool:
        if threading.get_ident() != self.thread:
            return False
        jit_fn, device = fn.jit_function, compile.get("device")
        self.requests.setdefault((id(jit_fn), device, key), (jit_fn, device, compile["specialization_data"]))
        return True


def record(call: Callable[[], Any]) -> List[Request]:
    """Run ``call`` as a dry pass; return the ``(JITFunction, device, specialisation data)`` of
    every kernel it would have compiled.

    An exception inside ``call`` (out of memory, say) ends the dry pass early; what was recorded
    until then is returned and the real call meets the error again in its own context.
    """
    from triton import knobs

    import torch

    recorder = _Recorder()
    previous = knobs.runtime.jit_cache_hook
    knobs.runtime.jit_cache_hook = recorder
    # A backward inside ``call`` runs its CUDA part on autograd's device threads, whose launches
    # the recorder leaves alone; on the calling thread it is recorded too.
    one_thread = getattr(torch.autograd, "set_multithreading_enabled", None)
    try:
        with one_thread(False) if one_thread is not None else contextlib.nullcontext():
            out = call()
        del out
    except Exception as exc:  # noqa: BLE001 - see the docstring
        logger.debug("precompile: the dry pass stopped early: %s", exc)
    finally:
        knobs.runtime.jit_cache_hook = previous
    return list(recorder.requests.values())


def _build(request: Request) -> bool:
    """Compile one recorded kernel (``JITFunction.preload``, which files it in the JIT's caches
    under the launch's key) and build its launcher and load it, as its first launch would
    (the ``CompiledKernel.run`` property: Triton's C launcher stub, made by the host compiler and
    cached on disk, and the binary loaded on the device). Runs on a pool thread with the
    recorded device made current. False if it failed: the first launch then compiles, or raises,
    as it would have without this module."""
    import torch

    jit_fn, device, data = request
    try:
        with torch.cuda.device(device) if isinstance(device, int) else contextlib.nullcontext():
            kernel = jit_fn.preload(data)
            kernel.run  # noqa: B018 - the property builds and loads the launcher
    except Exception as exc:  # noqa: BLE001 - see the docstring
        logger.debug("precompile: %s did not compile here: %s", getattr(jit_fn, "__name__", jit_fn), exc)
        return False
    return True


def _prime(requests: List[Request]) -> None:
    """Compute, on this thread, the lazily cached values every compilation reads first, which
    the dry pass (no compilation) leaves empty: Triton's own key (a SHA-256 of its compiler
    sources and of the ``libtriton`` library, hundreds of MB), each kernel's source hash and the
    backend's hash and options (``ptxas`` and its version, found through subprocesses). Left to
    the pool, every thread computes them at once: with 16 threads on an H100 host, 6.8
    CPU-seconds for 18 kernels that were all in Triton's disk cache. Each step is only an
    optimisation: a Triton without it is left alone."""
    steps: List[Tuple[str, Callable[[], Any]]] = []
    try:
        from triton.runtime.cache import triton_key

        steps.append(("triton_key", triton_key))
    except ImportError:
        pass
    for jit_fn in {id(r[0]): r[0] for r in requests}.values():
        steps.append((f"{jit_fn} source hash", lambda f=jit_fn: f.cache_key))

    def backend() -> None:
        from triton.compiler import make_backend
        from triton.runtime import driver

        b = make_backend(driver.active.get_current_target())
        b.hash()
        b.parse_options({})

    steps.append(("backend", backend))
    for what, step in steps:
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - see the docstring
            logger.debug("precompile: %s not primed: %s", what, exc)


def compile_all(requests: List[Request], threads: int) -> int:
    """Compile ``requests`` (from :func:`record`) on ``threads`` threads; returns how many failed.

    Each thread compiles a kernel and builds its launcher, so the host compiler's runs for the
    launchers overlap the other kernels' compilations. The per-device caches the kernels are
    filed in exist already: the dry pass made them on this thread.
    """
    if not requests:
        return 0
    _prime(requests)
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="diffmf-compile") as pool:
        return sum(1 for ok in pool.map(_build, requests) if not ok)


MARKER_DIR = "diffmf-precompiled"  # inside Triton's cache folder: cleared with it


@functools.lru_cache(maxsize=1)
def _installation_key() -> str:
    """The versions, the GPUs and the source of diffmf's Triton kernels (read once)."""
    import torch
    import triton

    import diffmf

    parts = [diffmf.__version__, torch.__version__, triton.__version__]
    if torch.cuda.is_available():
        parts += [f"{torch.cuda.get_device_name(i)} {torch.cuda.get_device_capability(i)}"
                  for i in range(torch.cuda.device_count())]
    here = Path(__file__).resolve().parent
    parts += [hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(here.glob("*.py"))]
    return "\n".join(parts)


def _environment_key() -> str:
    """What else decides which kernels a call compiles: :func:`_installation_key` and the
    current ``DIFFMF_*`` / ``TRITON_*`` settings."""
    env = [f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith(("DIFFMF_", "TRITON_"))]
    return "\n".join([_installation_key(), *env])


def module_description(module: Any) -> str:
    """A network for a marker: its class and its config (a model built from the same config
    launches the same kernels), else its ``repr``."""
    config = getattr(module, "config", None)
    return f"{type(module).__qualname__} {config!r}" if config is not None else repr(module)


def marker_path(what: str) -> Path:
    """The file that says ``what`` (a description of a call: its model, shapes, precision) was
    precompiled here before, with this environment (:func:`_environment_key`)."""
    from diffmf.ops.triton_cache import triton_cache_dir

    digest = hashlib.sha256(f"{_environment_key()}\n{what}".encode()).hexdigest()[:32]
    return triton_cache_dir() / MARKER_DIR / digest


def _mark(what: str) -> None:
    path = marker_path(what)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    except OSError as exc:  # a read-only cache only costs the dry pass next time
        logger.debug("precompile: no marker written at %s: %s", path, exc)


def precompile(*calls: Callable[[], Any], threads: Optional[int] = None,
               markers: Optional[Sequence[str]] = None) -> PrecompileStats:
    """Compile, in parallel, the Triton kernels the ``calls`` would compile one by one (see the
    module docstring). Each call is run once as a dry pass, in order; the kernels of all of them
    are then compiled together. The caller runs them for real afterwards.

    ``markers`` (one per call) describe the calls; a call whose marker says it was precompiled
    before, in Triton's current cache with the same versions, GPUs, kernel sources and settings,
    is left out: its kernels are on disk, and its dry pass would only cost time (a forward
    without its scans). The markers of calls whose kernels all compiled are written after.
    If the cache was cleared in between, those calls compile at first launch, as without this
    module."""
    n = compile_threads() if threads is None else int(threads)
    if n <= 1:
        return PrecompileStats(skipped=f"{ENV_THREADS}={n}" if threads is None else f"threads={n}")
    why = unsupported()
    if why is not None:
        return PrecompileStats(skipped=why)
    done_before = 0
    if markers is not None:
        if len(markers) != len(calls):
            raise ValueError(f"{len(markers)} markers for {len(calls)} calls")
        todo = [(c, m) for c, m in zip(calls, markers) if not marker_path(m).exists()]
        done_before = len(calls) - len(todo)
        if not todo:
            return PrecompileStats(threads=n, done_before=done_before)
        calls, markers = tuple(c for c, _ in todo), [m for _, m in todo]
    start = time.perf_counter()
    requests: Dict[Tuple[int, Any, str], Request] = {}
    for call in calls:
        for request in record(call):
            requests.setdefault((id(request[0]), request[1], request[2]), request)
    failed = compile_all(list(requests.values()), n)
    stats = PrecompileStats(recorded=len(requests), failed=failed, threads=n, seconds=time.perf_counter() - start,
                            done_before=done_before)
    if markers is not None and not failed:
        for what in markers:
            _mark(what)
    if requests:
        logger.debug("precompile: %d Triton kernels in %.2f s on %d threads (%d failed)",
                     stats.recorded, stats.seconds, n, failed)
    return stats
