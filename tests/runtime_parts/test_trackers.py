"""The bridge to the trackers teams use: the recipe's own tracker runs carry the job,
and TrackerSink sends the job's events through torchtune's metric loggers. Checked
with TensorBoard's event files and MLflow's local file store: no server."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from conftest import job_runner
from runtime.events import STEP_FIELDS
from runtime.trackers import name_runs, TrackerSink

TENSORBOARD = "torchtune.training.metric_logging.TensorBoardLogger"


def event(operation: str, data: dict) -> dict:
    return {"job_id": "j1", "user_id": "alice", "operation": operation, "data": data}


def job_events(end: str = "job_completed", end_data: dict = None) -> list:
    steps = [
        event(
            "step",
            {
                **{name: None for name in STEP_FIELDS},
                "gpu_rank": 0,
                "step_num": n,
                "step_len": 3,
                "step_loss": 3.0 - n / 10,
                "step_lr": 1e-3,
                "step_time_elapsed_s": 0.2,
                "epoch_num": 1,
                "epoch_len": 1,
                "step_tokens_per_s": 900.0,
            },
        )
        for n in (1, 2, 3)
    ]
    return [
        event("job_started", {"recipe": "lora_finetune_single_device"}),
        *steps,
        event("epoch", {"gpu_rank": 0, "epoch_num": 1, "epoch_len": 1, "epoch_time_elapsed_s": 2.0}),
        event(
            "weights",
            {
                "kind": "final",
                "files": ["checkpoints/epoch_0/model.safetensors"],
                "epoch": 0,
                "step": 3,
                "resumable": False,
            },
        ),
        event(end, {"dropped_events": {}, **(end_data or {})}),
    ]


def tensorboard_run(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = EventAccumulator(str(folder), size_guidance={"tensors": 0})
    run.Reload()
    texts = {
        tag.rsplit("/text_summary", 1)[0]: run.Tensors(tag)[-1].tensor_proto.string_val[0].decode()
        for tag in run.Tags()["tensors"]
        if tag.endswith("/text_summary")
    }
    scalars = {
        tag: [(e.step, round(float(e.tensor_proto.float_val[0]), 6)) for e in run.Tensors(tag)]
        for tag in run.Tags()["tensors"]
        if not tag.endswith("/text_summary")
    }
    return texts, scalars


@pytest.mark.parametrize(
    "component, given, expected",
    [
        ("WandBLogger", {"project": "p"}, {"project": "p", "name": "alice/j1", "tags": ["job_id:j1", "user_id:alice"]}),
        (
            "WandBLogger",
            {"name": "mine", "tags": ["team"]},
            {"name": "mine", "tags": ["team", "job_id:j1", "user_id:alice"]},
        ),
        ("CometLogger", {}, {"experiment_name": "alice/j1", "tags": ["job_id:j1", "user_id:alice"]}),
        ("MLFlowLogger", {"run_name": None}, {"run_name": "alice/j1"}),
        ("DiskLogger", {"log_dir": "x"}, {"log_dir": "x"}),
    ],
)
def test_the_recipes_tracker_run_is_named_and_tagged_after_the_job(component, given, expected):
    section = OmegaConf.create({"_component_": f"torchtune.training.metric_logging.{component}", **given})
    name_runs(section, "j1", "alice")
    assert OmegaConf.to_container(section) == {
        "_component_": f"torchtune.training.metric_logging.{component}",
        **expected,
    }


def test_tracker_sink_writes_tensorboard_scalars_and_the_jobs_notes(tmp_path):
    sink = TrackerSink({"_component_": TENSORBOARD, "log_dir": str(tmp_path / "tb"), "organize_logs": False})
    sink.emit(job_events("job_failed", {"error_type": "RuntimeError", "message": "boom"}))
    sink.close()
    texts, scalars = tensorboard_run(tmp_path / "tb")
    assert texts == {
        "porter/job_id": "j1",
        "porter/user_id": "alice",
        "porter/recipe": "lora_finetune_single_device",
        "porter/status": "failed",
        "porter/last_weights": "checkpoints/epoch_0/model.safetensors",
        "porter/error": "RuntimeError: boom",
    }
    assert scalars["porter/loss"] == [(1, 2.9), (2, 2.8), (3, 2.7)]
    assert scalars["porter/tokens_per_s"] == [(1, 900.0), (2, 900.0), (3, 900.0)]
    assert scalars["porter/epoch_time_s"] == [(1, 2.0)] and scalars["porter/job_failed"] == [(3, 1.0)]
    assert "porter/peak_memory_active_gib" not in scalars  # not logged on CPU: no made-up zeros


def test_tracker_sink_makes_one_mlflow_run_per_job_in_a_file_store(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps its file store behind this switch
    from mlflow.tracking import MlflowClient

    uri = (tmp_path / "mlruns").as_uri()
    sink = TrackerSink(
        {
            "_component_": "torchtune.training.metric_logging.MLFlowLogger",
            "tracking_uri": uri,
            "experiment_name": "fine-tunes",
        }
    )
    sink.emit(job_events())
    sink.close()
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("fine-tunes").experiment_id])
    assert (run.info.run_name, run.info.status) == ("alice/j1", "FINISHED")
    assert {k: v for k, v in run.data.tags.items() if k.startswith("porter.")} == {
        "porter.job_id": "j1",
        "porter.user_id": "alice",
        "porter.recipe": "lora_finetune_single_device",
        "porter.status": "completed",
        "porter.last_weights": "checkpoints/epoch_0/model.safetensors",
    }
    assert [m.value for m in client.get_metric_history(run.info.run_id, "porter/loss")] == pytest.approx(
        [2.9, 2.8, 2.7]
    )


def test_tracker_sink_needs_a_metric_logger_config():
    with pytest.raises(ValueError, match="metric_logger must be a config with a _component_"):
        TrackerSink({"log_dir": "x"})


def test_under_porter_run_both_the_recipes_run_and_the_sinks_carry_the_job(demo, generated, tmp_path):
    config = OmegaConf.load(demo.config("lora_finetune_single_device"))
    config.epochs = 1
    config.metric_logger = {"_component_": TENSORBOARD, "log_dir": "ignored: porter puts it in the job folder"}
    config.porter = {
        "sinks": [
            {
                "_component_": "runtime.trackers.TrackerSink",
                "metric_logger": {"_component_": TENSORBOARD, "log_dir": str(tmp_path / "tb"), "organize_logs": False},
            }
        ]
    }
    path = tmp_path / "config.yaml"
    OmegaConf.save(config, path)
    runs = job_runner(demo, generated, tmp_path / "runs")
    done, events = runs("lora_finetune_single_device", job_id="tracked", config=path)
    assert done.returncode == 0, done.stderr[-3000:]
    # the recipe's own TensorBoard run, in the job folder, says whose job it is
    (recipe_run,) = (runs.root / "tester" / "tracked" / "logs").glob("run_0_*")
    texts, scalars = tensorboard_run(recipe_run)
    assert (texts["porter/job_id"], texts["porter/user_id"]) == ("tracked", "tester") and "loss" in scalars
    # the sink's run has the whole job, start to end, fed by porter run from the log
    texts, scalars = tensorboard_run(tmp_path / "tb")
    steps = [e["data"]["step_num"] for e in events if e["operation"] == "step"]
    assert [step for step, _ in scalars["porter/loss"]] == steps
    assert texts["porter/status"] == "completed" and scalars["porter/job_completed"] == [(steps[-1], 1.0)]
    assert len(list((tmp_path / "tb").glob("events.out.tfevents.*"))) == 1  # one writer: one run per job


def test_notes_reach_wandb_and_comet_runs_where_torchtunes_loggers_keep_them():
    # Stand-ins with the attributes torchtune's loggers keep: W&B's module as `_wandb`
    # (its run's summary), Comet's `experiment` (log_other). The kind is the class name.
    from types import SimpleNamespace

    from runtime.trackers import note

    class WandBLogger:
        def __init__(self) -> None:
            self._wandb = SimpleNamespace(run=SimpleNamespace(summary={}))

    class CometLogger:
        def __init__(self) -> None:
            self.logged = {}
            self.experiment = SimpleNamespace(log_other=self.logged.__setitem__)

    wandb, comet = WandBLogger(), CometLogger()
    for logger in (wandb, comet):
        note(logger, "status", "completed")
    assert wandb._wandb.run.summary == {"porter/status": "completed"}
    assert comet.logged == {"porter/status": "completed"}
    # No run yet (another rank, or before init): nothing is written, nothing raises.
    idle = WandBLogger()
    idle._wandb.run = None
    note(idle, "status", "running")
