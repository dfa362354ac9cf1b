"""Facts about the machine and process a job runs in."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
from typing import Any, Dict, Optional, Tuple


def package_version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def process_rank_and_world() -> Tuple[int, int]:
    """This process's rank and the world size: from the process group once there is
    one, else from the launcher's environment (set before any group exists), else 0/1."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def system_specs() -> Dict[str, Any]:
    import psutil
    import torch

    gpus = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            gpus.append({"index": index, "name": props.name, "memory_bytes": props.total_memory})
    memory = psutil.virtual_memory()
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": platform.processor() or platform.machine(),
        "cpu_count_logical": psutil.cpu_count(logical=True),
        "cpu_count_physical": psutil.cpu_count(logical=False),
        "memory_total_bytes": memory.total,
        "memory_available_bytes": memory.available,
        "gpus": gpus,
        "cuda": torch.version.cuda,
        "versions": {
            "torch": torch.__version__,
            "torchtune": package_version("torchtune"),
            "torchao": package_version("torchao"),
            "porter": package_version("porter"),
        },
    }


def torchao_extension_problem() -> Optional[str]:
    """Why torchao's C++ extension did not load, when it ships one that did not: torchao
    only logs it at DEBUG level, and its custom kernels are then missing."""
    import os
    from pathlib import Path

    try:
        import torch
        import torchao
    except Exception as error:  # torchao is optional for most recipes
        return f"torchao cannot be imported: {type(error).__name__}: {error}".splitlines()[0]
    libraries = sorted(Path(torchao.__file__).parent.glob("_C*.so"))
    loaded = {os.path.realpath(path) for path in torch.ops.loaded_libraries}
    if not libraries or os.path.realpath(libraries[0]) in loaded:
        return None
    # Load it again for the reason torchao swallowed.
    try:
        torch.ops.load_library(str(libraries[0]))
    except Exception as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    else:
        return None
    return (
        f"torchao {package_version('torchao')}'s C++ extension did not load under torch {torch.__version__} "
        f"({reason[:160]}): its custom kernels (low-bit and quantized ops) are unavailable"
    )
