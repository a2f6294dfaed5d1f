"""The env's ``model`` argument -> an :class:`~world_model.world.InteractiveWorld`, and the device, dtype and thread
settings it loads with. Folders, preset names and ``None``/``"default"`` go to the one resolver of the core,
:func:`world_model.bundle.load_world`; this layer adds what only an env takes (a world or a factory, the
``factory:`` import) and checks device and batch size before anything loads."""

from __future__ import annotations

import importlib
import inspect
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch

from world_model.bundle import load_world
from world_model.world import InteractiveWorld

ModelArg = Union[None, str, os.PathLike, "InteractiveWorld", Callable[..., "InteractiveWorld"]]


FACTORY_PREFIX = "factory:"  # model="factory:package.module:function" imports that module and calls the function


_FACTORY_SPEC = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """``"bfloat16" | "bf16" | "float16" | "fp16" | "half" | "float32" | "fp32" | torch.dtype | None``."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    names = {
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float16": torch.float16,
        "fp16": torch.float16,
        "half": torch.float16,
        "float32": torch.float32,
        "fp32": torch.float32,
        "float": torch.float32,
    }
    key = str(dtype).lower().removeprefix("torch.")
    if key not in names:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(names)} or a torch.dtype")
    return names[key]


def _call_factory(factory: Callable[..., Any], batch_size: int) -> Any:
    # A factory that takes batch_size gets it, so one factory serves the single env and any vector env size.
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    return factory(batch_size=batch_size) if "batch_size" in params else factory()


def _import_factory(spec: str) -> Callable[..., Any]:
    """``"factory:package.module:function"`` -> that function. Importing the module runs its code."""
    target = spec.removeprefix(FACTORY_PREFIX)
    if not _FACTORY_SPEC.fullmatch(target):
        raise ValueError(f"model={spec!r}: a factory is {FACTORY_PREFIX!r} + 'package.module:function'")
    module_name, attr = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"model={spec!r}: cannot import module {module_name!r} ({e})") from e
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ValueError(f"model={spec!r}: {module_name} has no callable {attr!r}")
    return factory


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a ``torch.device``, or ``ValueError`` saying what to use when it does not exist here (CUDA asked
    for on a machine or a torch build without it, a GPU index beyond the count)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device={device!r} is not a torch device ({e}); use 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = (
                f"this torch ({torch.__version__}) is a CPU-only build"
                if torch.version.cuda is None
                else "no CUDA GPU is visible (driver, CUDA_VISIBLE_DEVICES?)"
            )
            raise ValueError(f"device={device!r}, but {why}; use device='cpu' (or install a CUDA build of torch)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r}, but only {torch.cuda.device_count()} CUDA device(s) are visible "
                f"(cuda:0..cuda:{torch.cuda.device_count() - 1})"
            )
    elif dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(f"device={device!r}, but MPS is not available here; use device='cpu'")
    return dev


def default_num_threads() -> int:
    """The torch CPU threads the env and the CLI use unless told otherwise: half the cores, at most 4, at least 1.

    The worlds here are small per step (the Doom model's DiT has 48 tokens), so more threads gain little even on
    an idle machine, while one thread per core loses badly as soon as another process takes a core: torch's
    threads wait for each other at every op (measured on 2 cores beside a CPU burner: 7.5 s per step with torch's
    2 threads, 0.24 s with 1; ``benchmarks/busy_cpu_threads.py``)."""
    return max(1, min(4, (os.cpu_count() or 1) // 2))


def apply_num_threads(num_threads: int | str | None, device: str | torch.device = "cpu") -> int:
    """Set torch's CPU threads for ``num_threads``: ``"auto"`` lowers them to :func:`default_num_threads` (only for
    a CPU device, and not when ``OMP_NUM_THREADS`` is set); an int sets them; None leaves torch's choice. The
    setting is process-wide (torch has no other). Returns the thread count in force."""
    if num_threads is None:
        return torch.get_num_threads()
    if num_threads == "auto":
        try:
            on_cpu = torch.device(device).type == "cpu"
        except (RuntimeError, TypeError):
            on_cpu = False  # a bad device string is reported where the world loads
        if on_cpu and not os.environ.get("OMP_NUM_THREADS"):
            want = min(torch.get_num_threads(), default_num_threads())
            if want != torch.get_num_threads():
                torch.set_num_threads(want)
        return torch.get_num_threads()
    if isinstance(num_threads, bool) or not isinstance(num_threads, (int, np.integer)) or num_threads < 1:
        raise ValueError(f"num_threads must be 'auto', None or an int >= 1, got {num_threads!r}")
    torch.set_num_threads(int(num_threads))
    return torch.get_num_threads()


def resolve_world(
    model: ModelArg,
    *,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype | None = None,
    batch_size: int = 1,
    seed: int = 0,
    model_kwargs: dict[str, Any] | None = None,
) -> tuple[InteractiveWorld, bool]:
    """Turn the env's ``model`` argument into an :class:`InteractiveWorld` of ``batch_size`` rows.

    Returns ``(world, owned)``: ``owned`` is False for a world the caller built (the env must not close it).

    * an ``InteractiveWorld``: used as is (``device``/``dtype`` are ignored: it already lives somewhere);
    * a callable: a factory returning one, called with ``batch_size=`` when it has that parameter, else with none;
    * ``"factory:package.module:function"``: that factory, imported and called. This runs that module's code, as
      an import does: pass only names you would import yourself. Without the ``factory:`` prefix such a string
      is never imported;
    * ``None``, a preset name or a folder: ``world_model.bundle.load_world(model, device=, dtype=, batch_size=,
      **model_kwargs)`` (e.g. ``model_kwargs={"size": (720, 1280)}`` for a LingBot release root).
    """
    owned = True
    if not isinstance(model, InteractiveWorld):
        check_device(device)  # before any loading: torch's own error for a missing CUDA is a bare AssertionError
    if isinstance(model, InteractiveWorld):
        world, owned = model, False
    elif isinstance(model, str) and model.startswith(FACTORY_PREFIX):
        world = _call_factory(_import_factory(model), batch_size)
    elif isinstance(model, str) and _FACTORY_SPEC.fullmatch(model) and not Path(model).exists():
        raise ValueError(
            f"model={model!r} is neither a folder nor a preset name. To import and call a factory (this runs the "
            f"module's code) write model='{FACTORY_PREFIX}{model}'; for random weights that run offline use "
            "model='doom-untrained'"
        )
    elif model is None or isinstance(model, (str, os.PathLike)):
        world = load_world(
            model, device=device, dtype=parse_dtype(dtype), batch_size=batch_size, seed=seed, **(model_kwargs or {})
        )
    elif callable(model):
        world = _call_factory(model, batch_size)
    else:
        raise TypeError(
            "model must be None (the default small model), a preset name, a model folder, an InteractiveWorld or "
            f"a zero-argument factory returning one; got {type(model).__name__}"
        )
    if not isinstance(world, InteractiveWorld):
        raise TypeError(f"the model factory returned {type(world).__name__}, not an InteractiveWorld")
    if world.batch_size != batch_size:
        raise ValueError(
            f"the world has batch_size={world.batch_size} but {batch_size} env(s) were asked for: build it with "
            f"batch_size={batch_size} (a factory with a batch_size parameter gets it automatically)"
        )
    return world, owned


def release_cuda_memory() -> None:
    """Return cached CUDA blocks once the world's tensors are unreferenced (cycles collected first)."""
    if torch.cuda.is_available():
        import gc

        gc.collect()
        torch.cuda.empty_cache()
