"""Fixes for upstream torchtune recipes on a CPU-only PyTorch, without editing them.

Applied in each training process that runs on the CPU, by runtime/run.py: as a recipe
imports `run_recipe` in a process without CUDA, and in `run_recipe` for a CPU job on a
machine with CUDA. A recipe module may hold an original under its own name (`from
torch.distributed import init_process_group`): `rebind` points such names at the
fixes. Each fix replaces one torchtune/torch function with a wrapper that behaves as
upstream does on CUDA machines and does the sensible thing on CPU, and names the torch
and torchtune versions it was written for: outside them it is not installed (a warning
says which were left out), since a wrapper of a function that changed could do harm.

1. `init_process_group` with a backend string naming NCCL (`"cuda:nccl,cpu:gloo"`): a
   CPU build has no NCCL, and a CUDA build on a machine without a GPU cannot start it
   ("ProcessGroupNCCL is only supported with GPUs"). The wrapper keeps only the backends
   this machine can start (gloo), once per device: torchtune main asks for `"cpu:gloo,cpu:gloo"` on CPU, which torch
   2.14 rejects.
2. `training.get_memory_stats(device)` raises ValueError on CPU, and distributed
   recipes call it unconditionally. On CPU the wrapper reports the process's peak
   resident memory (GiB) under each of the three keys.
3. `training.cleanup_before_training()` calls `torch.cpu.empty_cache` and
   `reset_peak_memory_stats`, which do not exist. On CPU the wrapper only collects
   garbage, the part that applies.
4. `get_merged_lora_ckpt` merges LoRA weights in place; on CPU the state dict the
   recipe passes holds the live model's tensors (`v.cpu()` is no copy there), so every
   intermediate save corrupts the base weights. The wrapper puts copies of the tensors
   into the caller's dict first, so the merge lands there and not in the model.
5. `torch.distributed.barrier(device_ids=[self._device.index])` (torchtune main's
   distributed recipes): a CPU device has no index, and gloo takes no device ids. The
   wrapper leaves out device ids that are None.
"""

from __future__ import annotations

import functools
import gc
import resource
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

_MARK = "_porter_cpu_compat"
# Each replaced function's wrapper, by the original's id: what `rebind` looks names up in.
# Process-wide, as the fixes themselves are.
_WRAPPERS: Dict[int, Callable] = {}


@dataclass(frozen=True)
class CpuFix:
    name: str
    # The versions it was written and tested for (PEP 440 specifiers, pre-releases in).
    torch: str
    torchtune: str
    install: Callable[[], None]

    def applies(self, versions: Dict[str, str]) -> bool:
        from packaging.specifiers import SpecifierSet
        from packaging.version import Version

        return all(
            Version(versions[package]) in SpecifierSet(spec, prereleases=True)
            for package, spec in (("torch", self.torch), ("torchtune", self.torchtune))
        )


def _once(module: Any, name: str, make: Callable[[Callable], Callable]) -> None:
    original = getattr(module, name)
    if getattr(original, _MARK, False):
        return
    wrapper = functools.wraps(original)(make(original))
    setattr(wrapper, _MARK, True)
    setattr(module, name, wrapper)
    _WRAPPERS[id(original)] = wrapper


def rebind(namespace: Dict[str, Any]) -> List[str]:
    """Point the names in `namespace` (a recipe module's globals) that hold a function a
    fix replaced at that fix; return the names rebound."""
    rebound = []
    for name, value in list(namespace.items()):
        wrapper = _WRAPPERS.get(id(value))
        if wrapper is not None and wrapper.__wrapped__ is value:
            namespace[name] = wrapper
            rebound.append(name)
    return rebound


def usable_backend(backend: Any, nccl_usable: bool) -> Any:
    """A backend string this machine can start: without NCCL where it cannot (no NCCL in
    the build, or no GPU), and each device named once (`"cpu:gloo,cpu:gloo"` -> `"cpu:gloo"`)."""
    if not isinstance(backend, str):
        return backend
    parts: List[str] = []
    devices = set()  # `device:backend` once per device; a bare backend name once
    for part in (part.strip() for part in backend.split(",")):
        device = part.split(":", 1)[0]
        if ("nccl" in part and not nccl_usable) or device in devices:
            continue
        devices.add(device)
        parts.append(part)
    if not parts:
        return "gloo"
    if len(parts) == 1 and parts[0].startswith("cpu:"):
        return parts[0].split(":", 1)[1]  # one backend for every device, as torch spells it
    return ",".join(parts)


def nccl_usable() -> bool:
    """Whether NCCL can start here: in the build, and a GPU to run it on."""
    import torch
    import torch.distributed

    return torch.distributed.is_nccl_available() and torch.cuda.is_available()


def _process_group() -> None:
    import torch.distributed

    def init_process_group(original):
        def wrapper(backend=None, *args, **kwargs):
            return original(usable_backend(backend, nccl_usable()), *args, **kwargs)

        return wrapper

    _once(torch.distributed, "init_process_group", init_process_group)


def _memory_stats() -> None:
    import torch
    import torchtune.training
    import torchtune.training.memory

    def get_memory_stats(original):
        def wrapper(device, *args, **kwargs):
            if torch.device(device).type != "cpu":
                return original(device, *args, **kwargs)
            peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024**2)
            return {"peak_memory_active": peak_gib, "peak_memory_alloc": peak_gib, "peak_memory_reserved": peak_gib}

        return wrapper

    for module in (torchtune.training, torchtune.training.memory):
        _once(module, "get_memory_stats", get_memory_stats)


def _cleanup_before_training() -> None:
    import torch
    import torchtune.training
    import torchtune.training.memory

    def cleanup_before_training(original):
        def wrapper(*args, **kwargs):
            if torch.cuda.is_available():
                return original(*args, **kwargs)
            gc.collect()

        return wrapper

    for module in (torchtune.training, torchtune.training.memory):
        _once(module, "cleanup_before_training", cleanup_before_training)


def _merged_lora_copies() -> None:
    import torchtune.modules.peft

    def get_merged_lora_ckpt(original):
        def wrapper(state_dict, *args, **kwargs):
            # The caller's dict gets copies of the tensors, and the merge happens in it
            # as upstream documents: torchtune main's checkpoint client reads the merged
            # weights from the dict it passed, 0.6.1's recipes from the return value.
            for key, value in list(state_dict.items()):
                state_dict[key] = value.clone() if hasattr(value, "clone") else value
            return original(state_dict, *args, **kwargs)

        return wrapper

    _once(torchtune.modules.peft, "get_merged_lora_ckpt", get_merged_lora_ckpt)


def _barrier_without_device_ids() -> None:
    import torch.distributed

    def barrier(original):
        def wrapper(*args, device_ids=None, **kwargs):
            if device_ids is not None:
                device_ids = [index for index in device_ids if index is not None] or None
            return original(*args, device_ids=device_ids, **kwargs)

        return wrapper

    _once(torch.distributed, "barrier", barrier)


# The versions every fix below was written and checked for: torch from 2.5 (torchtune
# 0.5's floor) through 2.15 (scripts/check_torch_stack.py), torchtune 0.5 through main
# (0.7.0 in development). A fix that a later release needs only for some versions gets
# its own range.
_CHECKED = {"torch": ">=2.5,<2.16", "torchtune": ">=0.5,<0.8"}
FIXES: Tuple[CpuFix, ...] = (
    CpuFix("process group backend", install=_process_group, **_CHECKED),
    CpuFix("memory stats", install=_memory_stats, **_CHECKED),
    CpuFix("cleanup before training", install=_cleanup_before_training, **_CHECKED),
    CpuFix("merged LoRA copies", install=_merged_lora_copies, **_CHECKED),
    CpuFix("barrier device ids", install=_barrier_without_device_ids, **_CHECKED),
)


# torchtune's main branch installed from source calls itself 0.0.0 (its `__version__`
# is empty there): it is the 0.7 in development.
_SOURCE_INSTALL = {"0.0.0": "0.7.0.dev0"}


def installed_versions() -> Dict[str, str]:
    from importlib.metadata import version

    torchtune = version("torchtune")
    return {"torch": version("torch"), "torchtune": _SOURCE_INSTALL.get(torchtune, torchtune)}


def apply(versions: Optional[Dict[str, str]] = None) -> List[str]:
    """Install the fixes written for these versions in this process (idempotent);
    return the names of those left out."""
    versions = versions or installed_versions()
    left_out = []
    for fix in FIXES:
        if fix.applies(versions):
            fix.install()
        else:
            left_out.append(fix.name)
    return left_out
