"""Fixes for upstream torchtune 0.6.1 recipes on a CPU-only PyTorch, without editing them.

Applied by the launcher to its own process before it imports a recipe, and only when
the job runs on the CPU. Each replaces one torchtune/torch function with a wrapper
that behaves as upstream does on CUDA machines and does the sensible thing on CPU:

1. `init_process_group("cuda:nccl,cpu:gloo")`: a CPU build has no NCCL, so a backend
   string naming it fails. The wrapper keeps only the backends this build has (gloo).
2. `training.get_memory_stats(device)` raises ValueError on CPU, and distributed
   recipes call it unconditionally. On CPU the wrapper reports the process's peak
   resident memory (GiB) under each of the three keys.
3. `training.cleanup_before_training()` calls `torch.cpu.empty_cache` and
   `reset_peak_memory_stats`, which do not exist. On CPU the wrapper only collects
   garbage, the part that applies.
4. `get_merged_lora_ckpt` merges LoRA weights in place; on CPU the state dict the
   recipe passes holds the live model's tensors (`v.cpu()` is no copy there), so every
   intermediate save corrupts the base weights. The wrapper merges into copies.
"""

from __future__ import annotations

import functools
import gc
import resource
from typing import Any, Callable

_MARK = "_porter_cpu_compat"


def _once(module: Any, name: str, make: Callable[[Callable], Callable]) -> None:
    original = getattr(module, name)
    if getattr(original, _MARK, False):
        return
    wrapper = functools.wraps(original)(make(original))
    setattr(wrapper, _MARK, True)
    setattr(module, name, wrapper)


def apply() -> None:
    """Install the four fixes in this process (idempotent)."""
    import torch
    import torch.distributed
    import torchtune.modules.peft
    import torchtune.training
    import torchtune.training.memory

    def init_process_group(original):
        def wrapper(backend=None, *args, **kwargs):
            if isinstance(backend, str) and "nccl" in backend and not torch.distributed.is_nccl_available():
                backend = "gloo"
            return original(backend, *args, **kwargs)

        return wrapper

    def get_memory_stats(original):
        def wrapper(device, *args, **kwargs):
            if torch.device(device).type != "cpu":
                return original(device, *args, **kwargs)
            peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024**2)
            return {
                "peak_memory_active": peak_gib,
                "peak_memory_alloc": peak_gib,
                "peak_memory_reserved": peak_gib,
            }

        return wrapper

    def cleanup_before_training(original):
        def wrapper(*args, **kwargs):
            if torch.cuda.is_available():
                return original(*args, **kwargs)
            gc.collect()

        return wrapper

    def get_merged_lora_ckpt(original):
        def wrapper(state_dict, *args, **kwargs):
            return original({key: value.clone() for key, value in state_dict.items()}, *args, **kwargs)

        return wrapper

    _once(torch.distributed, "init_process_group", init_process_group)
    for module in (torchtune.training, torchtune.training.memory):
        _once(module, "get_memory_stats", get_memory_stats)
        _once(module, "cleanup_before_training", cleanup_before_training)
    _once(torchtune.modules.peft, "get_merged_lora_ckpt", get_merged_lora_ckpt)
