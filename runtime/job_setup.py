"""The one place a job is set up, for each process that takes part in it: each node's
`porter run` (runtime/launch.py, `JobSetup.for_node`) and each training process
(runtime/run.py, `JobSetup.for_process`).

From the config's `porter:` settings it makes the job folder (and names its remote copy),
and builds the process's Lifecycle (runtime/lifecycle.py) with the sinks that process
feeds. What differs between the two is only who owns the job and which sinks are whose.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, ContextManager, Dict, List, Optional, Tuple

from omegaconf import DictConfig, OmegaConf

from runtime.cluster import NodePlace, scheduler_job
from runtime.job import JobError, JobPaths, JobRef, private_files
from runtime.lifecycle import Lifecycle
from runtime.secrets import redact_url, secret_values
from runtime.settings import RuntimeSettings
from runtime.sinks import Sink, WebhookSink
from runtime.storage import job_folder, JobMirror
from runtime.system import package_version


@dataclass(frozen=True)
class JobSetup:
    settings: RuntimeSettings
    paths: JobPaths
    mirror: Optional[JobMirror]  # the job folder's copy on a remote output root
    lifecycle: Lifecycle

    @classmethod
    def for_node(cls, cfg: DictConfig, job: JobRef, node: NodePlace, resume_if_possible: bool) -> "JobSetup":
        """A node's `porter run`: node 0's owns the job and feeds the webhook and the
        sinks that do not follow the log; the other nodes' feed none."""
        settings = RuntimeSettings.from_config(cfg)
        sinks = build_sinks(settings, rank=None) if node.owner else []
        return cls._build(
            cfg,
            job,
            settings,
            node=node,
            rank=None,
            owner=node.owner,
            resume_if_possible=resume_if_possible,
            sinks=sinks,
        )

    @classmethod
    def for_process(cls, cfg: DictConfig, job: JobRef, rank: int) -> "JobSetup":
        """A training process: under `porter run` its node is the one `porter run` says
        and the supervisor owns the job; under another launcher, torchrun's node, and
        rank 0 owns it."""
        settings = RuntimeSettings.from_config(cfg)
        node_rank = settings.node_rank if settings.supervised else int(os.environ.get("GROUP_RANK", "0"))
        node = NodePlace(node_rank, int(os.environ.get("GROUP_WORLD_SIZE", "1")))
        owner = not settings.supervised and rank == 0
        return cls._build(
            cfg,
            job,
            settings,
            node=node,
            rank=rank,
            owner=owner,
            resume_if_possible=False,
            sinks=build_sinks(settings, rank),
        )

    @classmethod
    def _build(
        cls,
        cfg: DictConfig,
        job: JobRef,
        settings: RuntimeSettings,
        *,
        node: NodePlace,
        rank: Optional[int],
        owner: bool,
        resume_if_possible: bool,
        sinks: List[Sink],
    ) -> "JobSetup":
        file_mode, dir_mode = settings.modes
        paths, mirror = job_folder(settings.output_root, settings.staging_dir, job.user_id, job.job_id)
        paths.create(dir_mode)
        lifecycle = Lifecycle(
            paths=paths,
            job=job,
            node=node,
            rank=rank,
            owner=owner,
            resuming=bool(cfg.get("resume_from_checkpoint", False)),
            resume_if_possible=resume_if_possible,
            secrets=secret_values(cfg),
            file_mode=file_mode,
            sinks=sinks,
            mirror=mirror,
            report=settings.report,
        )
        return cls(settings, paths, mirror, lifecycle)

    @staticmethod
    def settings_and_folder(cfg: DictConfig, job_id: str, user_id: str) -> Tuple[RuntimeSettings, JobPaths]:
        """The settings and job folder alone: for a process that reports a failure
        before its job was set up (runtime/launch.py `worker_main`)."""
        settings = RuntimeSettings.from_config(cfg)
        return settings, job_folder(settings.output_root, settings.staging_dir, user_id, job_id)[0]

    def private_files(self) -> ContextManager[None]:
        """What the job's processes create gets the job folder's modes (runtime/job.py)."""
        return private_files(*self.settings.modes, self.paths.root)

    def started(self, recipe: str, world_size: int, dataset: Optional[str], nnodes: int = 1) -> Dict[str, Any]:
        """The `job_started` event's data (the lifecycle adds whether it resumed)."""
        scheduled = scheduler_job()
        return {
            "recipe": recipe,
            "world_size": world_size,
            "dataset": redact_url(dataset) if dataset is not None else None,
            "porter_version": package_version("porter"),
            "nnodes": nnodes,
            "heartbeat_s": self.settings.heartbeat_s,
            "scheduler_job": dataclasses.asdict(scheduled) if scheduled is not None else None,
        }


def build_sinks(settings: RuntimeSettings, rank: Optional[int]) -> List[Sink]:
    """The sinks a process's job logger feeds, besides its event file: the webhook and
    custom sinks on every rank. The console and the sinks that follow the log
    (trackers: one run per job) are rank 0's in a job started without `porter run`;
    under it, node 0's `porter run` feeds them from the log (`followed_sinks`)."""
    from runtime.console import ConsoleSink

    sinks: List[Sink] = []
    if settings.console and rank == 0 and not settings.supervised:
        sinks.append(ConsoleSink())
    if settings.webhook is not None:
        sinks.append(WebhookSink(**settings.webhook))
    for spec in settings.sinks:
        if _follows_log(spec) and (settings.supervised or rank != 0):
            continue
        sinks.append(_instantiate(spec))
    return sinks


def followed_sinks(settings: RuntimeSettings) -> List[Sink]:
    """The sinks node 0's `porter run` feeds from the job's log."""
    return [_instantiate(spec) for spec in settings.sinks if _follows_log(spec)]


def _follows_log(spec: dict) -> bool:
    from torchtune.config._utils import _get_component_from_path

    try:
        component = _get_component_from_path(spec["_component_"])
    except Exception as error:  # torchtune's InstantiationError, or what importing raised
        raise JobError(
            f"porter.sinks: {spec['_component_']}: cannot be imported: {str(error).splitlines()[0]}"
        ) from error
    return bool(getattr(component, "follows_log", False))


def _instantiate(spec: dict) -> Sink:
    from torchtune import config

    try:
        return config.instantiate(OmegaConf.create(spec))
    except Exception as error:
        raise JobError(f"porter.sinks: {spec['_component_']}: cannot be built: {str(error).splitlines()[0]}") from error
