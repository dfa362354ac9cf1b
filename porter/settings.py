"""What a team may change about the generated code."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_RUNTIME_MODULE = "runtime"


@dataclass(frozen=True)
class Settings:
    runtime_module: str = DEFAULT_RUNTIME_MODULE
