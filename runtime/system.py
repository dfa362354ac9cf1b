"""Facts about the machine and process a job runs in."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
from typing import Any, Dict, Tuple


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
