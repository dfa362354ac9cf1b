"""porter's jobs in the trackers teams already use (W&B, MLflow, TensorBoard, Comet),
through torchtune's own metric loggers.

- Runs the recipe's own `metric_logger` makes under porter carry the job: `name_runs`
  fills the run-name and tag keys of torchtune's W&B, Comet and MLflow loggers in the
  job's config (a name the user set is kept; tags are added to theirs), and `tag_run`
  marks what a constructor cannot (MLflow tags, a TensorBoard text entry).
- `TrackerSink` is a sink that sends the job's events to any torchtune metric logger:
  its steps (loss, lr, step time, tokens/s, memory) as metrics, and its lifecycle
  (started, epochs, weights, how it ended) as metrics and notes on the run:

      porter:
        sinks:
          - _component_: runtime.trackers.TrackerSink
            metric_logger:
              _component_: torchtune.training.metric_logging.MLFlowLogger
              tracking_uri: file:///srv/mlruns

  Under `porter run` it follows the job's log in node 0's `porter run` (runtime/launch.py),
  the one process that sees a job from its start to its end: one tracker run per job.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

from omegaconf import DictConfig, OmegaConf

from runtime.events import TERMINAL
from runtime.sinks import Event, Sink


def _job_tags(job_id: str, user_id: str) -> List[str]:
    return [f"job_id:{job_id}", f"user_id:{user_id}"]


# What each of torchtune's loggers takes to name and tag a run: {config key: value}.
_NAMING: Dict[str, Callable[[str, str], Dict[str, Any]]] = {
    "WandBLogger": lambda job, user: {"name": f"{user}/{job}", "tags": _job_tags(job, user)},
    "CometLogger": lambda job, user: {"experiment_name": f"{user}/{job}", "tags": _job_tags(job, user)},
    "MLFlowLogger": lambda job, user: {"run_name": f"{user}/{job}"},
}


def name_runs(section: DictConfig, job_id: str, user_id: str) -> None:
    """Name and tag the run a metric logger config (`cfg.metric_logger`) will make."""
    kind = str(section.get("_component_", "")).rsplit(".", 1)[-1]
    for key, value in _NAMING.get(kind, lambda job, user: {})(job_id, user_id).items():
        if key == "tags":
            given = list(section.get(key) or [])
            section[key] = given + [tag for tag in value if tag not in given]
        elif section.get(key) is None:
            section[key] = value


def tag_run(metric_logger: Any, job_id: str, user_id: str) -> None:
    """Mark a run with the job where the logger's constructor took no tags."""
    if type(metric_logger).__name__ in ("MLFlowLogger", "TensorBoardLogger"):
        note(metric_logger, "job_id", job_id)
        note(metric_logger, "user_id", user_id)


def note(metric_logger: Any, key: str, value: str) -> None:
    """A text fact on the logger's run (`porter.<key>`), where its tracker keeps them;
    loggers porter does not know get none."""
    kind = type(metric_logger).__name__
    if kind == "MLFlowLogger" and getattr(metric_logger, "_run_id", None):
        from mlflow.tracking import MlflowClient

        MlflowClient().set_tag(metric_logger._run_id, f"porter.{key}", value)
    elif kind == "TensorBoardLogger" and getattr(metric_logger, "_writer", None) is not None:
        metric_logger._writer.add_text(f"porter/{key}", value)
    elif kind == "WandBLogger" and getattr(metric_logger._wandb, "run", None) is not None:
        metric_logger._wandb.run.summary[f"porter/{key}"] = value
    elif kind == "CometLogger" and getattr(metric_logger, "experiment", None) is not None:
        metric_logger.experiment.log_other(f"porter/{key}", value)


class TrackerSink(Sink):
    """A job's events through a torchtune metric logger (`metric_logger`: its config,
    as in a recipe's config). The logger is built at the first event, in the sink's
    own thread, with the run named and tagged after the job."""

    name = "tracker"
    # Fed by node 0's `porter run` from the job's log, not by each training process.
    follows_log = True

    def __init__(self, metric_logger: Dict[str, Any]) -> None:
        if not isinstance(metric_logger, (dict, DictConfig)) or "_component_" not in metric_logger:
            raise ValueError("TrackerSink: metric_logger must be a config with a _component_")
        self._spec = OmegaConf.create(
            OmegaConf.to_container(metric_logger, resolve=True)
            if isinstance(metric_logger, DictConfig)
            else dict(metric_logger)
        )
        self._logger: Optional[Any] = None
        self._last_step = 0

    def emit(self, events: List[Event]) -> None:
        for event in events:
            if self._logger is None:
                self._logger = self._open(event["job_id"], event["user_id"])
            self._send(event)

    def _open(self, job_id: str, user_id: str) -> Any:
        from torchtune import config

        name_runs(self._spec, job_id, user_id)
        logger = config.instantiate(self._spec)
        tag_run(logger, job_id, user_id)
        return logger

    def _send(self, event: Event) -> None:
        operation, data = event.get("operation"), event.get("data") or {}
        if operation == "step":
            self._last_step = data["step_num"]
            metrics = {
                "porter/loss": data.get("step_loss"),
                "porter/lr": data.get("step_lr"),
                "porter/step_time_s": data.get("step_time_elapsed_s"),
                "porter/tokens_per_s": data.get("step_tokens_per_s"),
                "porter/peak_memory_active_gib": data.get("step_peak_memory_active"),
                "porter/peak_memory_alloc_gib": data.get("step_peak_memory_alloc"),
                "porter/peak_memory_reserved_gib": data.get("step_peak_memory_reserved"),
            }
            self._logger.log_dict(
                {k: v for k, v in metrics.items() if isinstance(v, (int, float))}, step=self._last_step
            )
        elif operation == "epoch" and data.get("gpu_rank") == 0:
            self._logger.log("porter/epoch_time_s", data["epoch_time_elapsed_s"], step=data["epoch_num"])
        elif operation == "job_started":
            note(self._logger, "recipe", str(data.get("recipe")))
            note(self._logger, "status", "running")
        elif operation == "weights" and data.get("kind") in ("intermediate", "final"):
            note(self._logger, "last_weights", ", ".join(data.get("files") or []))
        elif operation in TERMINAL:
            note(self._logger, "status", operation.removeprefix("job_"))
            if data.get("error_type"):
                note(self._logger, "error", f"{data['error_type']}: {data.get('message')}")
            self._logger.log(f"porter/{operation}", 1, step=self._last_step)

    def close(self) -> None:
        if self._logger is not None:
            self._logger.close()
            self._logger = None  # now, not at interpreter exit, when its __del__ fails
