"""The runtime's settings: the `porter:` section of a job's config.

    porter:
      output_root: runs          # job folders go to <output_root>/<user_id>/<job_id>
      save_every_n_epochs: 1     # intermediate checkpoints; the last epoch always saves
      save_every_n_steps: null   # also save every N optimizer steps
      heartbeat_s: 30            # a heartbeat event every N seconds; 0 turns it off
      console: true              # a human-readable line per event on stderr
      webhook: null              # {url: ..., timeout_s: 5, retries: 3, backoff_s: 0.5}
      sinks: []                  # [{_component_: your.Sink, ...}]

`porter run` fills it from its flags; `supervised` is set by `porter run` itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Optional

from omegaconf import DictConfig, OmegaConf

from runtime.job import JobError

SECTION = "porter"


@dataclass(frozen=True)
class RuntimeSettings:
    output_root: str = "runs"
    save_every_n_epochs: int = 1
    save_every_n_steps: Optional[int] = None
    heartbeat_s: float = 30.0
    console: bool = True
    webhook: Optional[Dict[str, Any]] = None
    sinks: List[Dict[str, Any]] = field(default_factory=list)
    # True when `porter run` supervises the job and writes its start and end events.
    supervised: bool = False

    @classmethod
    def from_config(cls, cfg: DictConfig) -> "RuntimeSettings":
        section = cfg.get(SECTION) or {}
        if isinstance(section, DictConfig):
            section = OmegaConf.to_container(section, resolve=True)
        if not isinstance(section, dict):
            raise JobError(f"{SECTION}: must be a mapping of settings")
        known = {f.name for f in fields(cls)}
        for key in section:
            if key not in known:
                raise JobError(f"{SECTION}.{key}: unknown setting (known: {', '.join(sorted(known))})")
        settings = cls(**section)
        settings._validate()
        return settings

    def _validate(self) -> None:
        def positive_int(name: str, value: Any, optional: bool = False) -> None:
            if optional and value is None:
                return
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise JobError(f"{SECTION}.{name}: must be a positive integer, got {value!r}")

        positive_int("save_every_n_epochs", self.save_every_n_epochs)
        positive_int("save_every_n_steps", self.save_every_n_steps, optional=True)
        if not isinstance(self.heartbeat_s, (int, float)) or self.heartbeat_s < 0:
            raise JobError(f"{SECTION}.heartbeat_s: must be a number of seconds >= 0, got {self.heartbeat_s!r}")
        if not isinstance(self.output_root, str) or not self.output_root:
            raise JobError(f"{SECTION}.output_root: must be a folder path")
        if self.webhook is not None and not (isinstance(self.webhook, dict) and "url" in self.webhook):
            raise JobError(f"{SECTION}.webhook: must be a mapping with a url")
        for index, sink in enumerate(self.sinks):
            if not isinstance(sink, dict) or "_component_" not in sink:
                raise JobError(f"{SECTION}.sinks[{index}]: must be a mapping with a _component_")
