"""The runtime's settings: the `porter:` section of a job's config.

    porter:
      output_root: runs          # job folders go to <output_root>/<user_id>/<job_id>: a folder or an fsspec URL
      staging_dir: null          # where a remote root's jobs run on this machine ($PORTER_STAGING_DIR, ~/.cache/porter/staging)
      save_every_n_epochs: 1     # intermediate checkpoints; the last epoch always saves
      save_every_n_steps: null   # also save every N optimizer steps
      keep_last_n_checkpoints: null  # delete all but the newest N epoch checkpoints (never the one a resume needs)
      heartbeat_s: 30            # a heartbeat event every N seconds; 0 turns it off
      console: true              # porter's progress line and milestones on stderr (rank 0 / node 0)
      report: true               # report.html in the job folder after the job's last event
      webhook: null              # {url: ..., timeout_s: 5, retries: 3, backoff_s: 0.5, headers: {...}}
      sinks: []                  # [{_component_: your.Sink, ...}]
      file_mode: "0600"          # the job folder's files: owner-only unless a team relaxes it
      dir_mode: "0700"           # and its folders ("0640" / "0750": the owner's group reads too)

`porter run` fills it from its flags; `supervised` and `node_rank` are set by `porter run`
itself for the processes it starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
import re
from typing import Any, Dict, List, Optional, Tuple

from omegaconf import DictConfig, OmegaConf

from runtime.job import JobError
from runtime.storage import OutputRoot

SECTION = "porter"


@dataclass(frozen=True)
class RuntimeSettings:
    output_root: str = "runs"
    staging_dir: Optional[str] = None
    save_every_n_epochs: int = 1
    save_every_n_steps: Optional[int] = None
    keep_last_n_checkpoints: Optional[int] = None
    heartbeat_s: float = 30.0
    console: bool = True
    report: bool = True
    webhook: Optional[Dict[str, Any]] = None
    sinks: List[Dict[str, Any]] = field(default_factory=list)
    file_mode: Any = "0600"
    dir_mode: Any = "0700"
    # Set by `porter run` for the processes it starts: it owns the job's lifecycle, and
    # this is the node they run on.
    supervised: bool = False
    node_rank: int = 0

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

    @property
    def modes(self) -> Tuple[int, int]:
        """(file mode, folder mode) of everything in the job folder."""
        return _mode("file_mode", self.file_mode), _mode("dir_mode", self.dir_mode)

    def _validate(self) -> None:
        def positive_int(name: str, value: Any, optional: bool = False) -> None:
            if optional and value is None:
                return
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise JobError(f"{SECTION}.{name}: must be a positive integer, got {value!r}")

        positive_int("save_every_n_epochs", self.save_every_n_epochs)
        positive_int("save_every_n_steps", self.save_every_n_steps, optional=True)
        positive_int("keep_last_n_checkpoints", self.keep_last_n_checkpoints, optional=True)
        if not isinstance(self.heartbeat_s, (int, float)) or self.heartbeat_s < 0:
            raise JobError(f"{SECTION}.heartbeat_s: must be a number of seconds >= 0, got {self.heartbeat_s!r}")
        for name in ("console", "report"):
            if not isinstance(getattr(self, name), bool):
                raise JobError(f"{SECTION}.{name}: must be true or false, got {getattr(self, name)!r}")
        if not isinstance(self.output_root, str) or not self.output_root:
            raise JobError(f"{SECTION}.output_root: must be a folder path or an fsspec URL")
        OutputRoot.parse(self.output_root)
        if self.staging_dir is not None and (not isinstance(self.staging_dir, str) or "://" in self.staging_dir):
            raise JobError(f"{SECTION}.staging_dir: must be a local folder, got {self.staging_dir!r}")
        if self.webhook is not None and not (isinstance(self.webhook, dict) and "url" in self.webhook):
            raise JobError(f"{SECTION}.webhook: must be a mapping with a url")
        for index, sink in enumerate(self.sinks):
            if not isinstance(sink, dict) or "_component_" not in sink:
                raise JobError(f"{SECTION}.sinks[{index}]: must be a mapping with a _component_")
        file_mode, dir_mode = self.modes
        if file_mode & 0o600 != 0o600 or dir_mode & 0o700 != 0o700:
            raise JobError(
                f"{SECTION}.file_mode/dir_mode: the owner must keep reading and writing ({file_mode:04o}, {dir_mode:04o})"
            )


def _mode(name: str, value: Any) -> int:
    """A permission mode given as octal digits ("0640", "640", "0o640") or a number."""
    if isinstance(value, int) and not isinstance(value, bool):
        mode = value
    elif isinstance(value, str) and re.fullmatch(r"(0o|0)?[0-7]{3}", value.strip()):
        mode = int(value.strip().removeprefix("0o"), 8)
    else:
        raise JobError(f'{SECTION}.{name}: must be a permission mode like "0640", got {value!r}')
    if not 0 <= mode <= 0o777:
        raise JobError(f'{SECTION}.{name}: must be a permission mode like "0640", got {value!r}')
    return mode
