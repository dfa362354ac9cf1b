"""Generated recipes train on the demo model on CPU, as `porter run` runs them.

Each run takes seconds; runs whose results several tests read are made once per module.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import jsonschema
import pytest

from conftest import events_of, JOB_ENV, job_runner, REPO

pytestmark = pytest.mark.slow

EVENT_KEYS = {
    "event_id",
    "seq",
    "schema_version",
    "job_id",
    "user_id",
    "create_ts",
    "workflow",
    "node_rank",
    "gpu_rank",
    "operation",
    "data",
}
STEPS = 20  # 2 epochs x max_steps_per_epoch 10, logging every step


def operations(events):
    return [event["operation"] for event in events]


def steps(events, rank=0):
    return [e["data"] for e in events if e["operation"] == "step" and e["data"]["gpu_rank"] == rank]


def losses(events):
    return {d["step_num"]: d["step_loss"] for d in steps(events)}


def upstream_losses(recipe: str, config: Path, output_dir: Path, *overrides: str) -> dict:
    """Per-step losses of `tune run` on the same config, from its DiskLogger."""
    done = subprocess.run(
        ["tune", "run", recipe, "--config", str(config), f"output_dir={output_dir}", *overrides],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, **JOB_ENV},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (log,) = (output_dir / "logs").glob("log_*.txt")
    found = {}
    for line in log.read_text().splitlines():
        step, loss = re.match(r"Step (\d+) \|", line), re.search(r"(?<![\w/])loss:(\S+)", line)
        if step and loss:
            found[int(step.group(1))] = float(loss.group(1))
    return found


def assert_same_losses(ours: dict, theirs: dict, steps: int = STEPS) -> None:
    assert sorted(ours) == sorted(theirs) == list(range(1, steps + 1))
    for step, loss in theirs.items():
        assert abs(ours[step] - loss) <= 1e-6 * abs(loss), (step, ours[step], loss)


@pytest.fixture(scope="module")
def runs(demo, generated, tmp_path_factory):
    return job_runner(demo, generated, tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def lora_run(runs):
    return runs("lora_finetune_single_device", job_id="lora")


@pytest.fixture(scope="module")
def full_run(runs):
    return runs("full_finetune_single_device", job_id="full")


@pytest.mark.parametrize("which", ["lora_run", "full_run"])
def test_single_device_run_logs_every_event_of_the_schema(which, request):
    done, events = request.getfixturevalue(which)
    assert done.returncode == 0, done.stderr[-3000:]
    assert all(set(event) == EVENT_KEYS for event in events)
    schema = json.loads((REPO / "docs" / "events.schema.json").read_text())
    for event in events:
        jsonschema.validate(event, schema)
        stamp = datetime.datetime.fromisoformat(event["create_ts"])
        assert stamp.utcoffset() == datetime.timedelta(0)
    assert len({event["event_id"] for event in events}) == len(events)
    ops = operations(events)
    assert ops[0] == "job_started" and ops[-1] == "job_completed"
    assert ops.index("system_specs") < ops.index("job_config") < ops.index("step")
    assert [d["step_num"] for d in steps(events)] == list(range(1, STEPS + 1))
    assert all(d["step_len"] == STEPS and d["epoch_len"] == 2 for d in steps(events))
    assert [d["epoch_num"] for d in steps(events)] == [1] * 10 + [2] * 10
    epochs = [e["data"] for e in events if e["operation"] == "epoch"]
    assert [(d["gpu_rank"], d["epoch_num"]) for d in epochs] == [(0, 1), (0, 2)]
    assert all(d["epoch_time_elapsed_s"] > 0 for d in epochs)
    weights = [e["data"] for e in events if e["operation"] == "weights"]
    assert [w["kind"] for w in weights] == ["intermediate", "final", "all"]
    assert weights[0]["resumable"] and "checkpoints/epoch_0/recipe_state.pt" in weights[0]["files"]
    assert events[-1]["data"]["dropped_events"] == {}


@pytest.mark.parametrize("which", ["lora_run", "full_run"])
def test_final_weights_load_back_into_the_model(which, request, demo, runs, tmp_path):
    import torch
    from torchtune.models.llama3_2 import llama3_2
    from torchtune.training import FullModelHFCheckpointer, MODEL_KEY

    from porter.demo.model import MODEL_ARGS

    done, events = request.getfixturevalue(which)
    final = [e["data"] for e in events if e["operation"] == "weights" and e["data"]["kind"] == "final"][0]
    job = runs.root / "tester" / events[0]["job_id"]
    shards = [f for f in final["files"] if re.search(r"model-\d+-of-\d+\.safetensors$", f)]
    assert shards, final["files"]
    checkpointer = FullModelHFCheckpointer(
        checkpoint_dir=str(job / Path(shards[0]).parent),
        checkpoint_files=[Path(s).name for s in shards],
        model_type="LLAMA3_2",
        output_dir=str(tmp_path / "reload"),  # never inside the job's folder, which other tests read
    )
    trained = checkpointer.load_checkpoint()[MODEL_KEY]
    model = llama3_2(**MODEL_ARGS)
    model.load_state_dict(trained, strict=True)
    from safetensors.torch import load_file

    base = load_file(str(demo.model / "model.safetensors"))
    assert not torch.equal(
        base["model.layers.0.self_attn.q_proj.weight"],
        load_file(str(job / shards[0]))["model.layers.0.self_attn.q_proj.weight"],
    )


def test_loss_parity_with_upstream_full_finetune(full_run, demo, tmp_path):
    done, events = full_run
    theirs = upstream_losses(
        "full_finetune_single_device", demo.config("full_finetune_single_device"), tmp_path / "upstream"
    )
    assert_same_losses(losses(events), theirs)


ADAPTER_ONLY = "save_adapter_weights_only=True"


@pytest.fixture(scope="module")
def adapter_only_lora_run(runs):
    # Upstream corrupts LoRA base weights at each intermediate merged save on CPU; a
    # run that saves adapters only never merges, so it is comparable with upstream's.
    return runs("lora_finetune_single_device", ADAPTER_ONLY, job_id="lora-adapter-only")


def test_loss_parity_with_upstream_lora(adapter_only_lora_run, demo, tmp_path):
    done, events = adapter_only_lora_run
    assert done.returncode == 0, done.stderr[-3000:]
    theirs = upstream_losses(
        "lora_finetune_single_device", demo.config("lora_finetune_single_device"), tmp_path / "upstream", ADAPTER_ONLY
    )
    assert_same_losses(losses(events), theirs)


def test_lora_run_guards_base_weights_that_upstream_corrupts_on_cpu(lora_run, adapter_only_lora_run):
    # With merged saves, the second epoch trains on intact base weights: its losses
    # equal the adapter-only run's, which never merges.
    _, merged = lora_run
    _, adapter_only = adapter_only_lora_run
    assert_same_losses(losses(merged), losses(adapter_only))


@pytest.mark.parametrize("recipe", ["full_finetune_distributed", "lora_finetune_distributed"])
def test_distributed_recipe_on_two_processes(recipe, runs):
    done, events = runs(recipe, "--nproc-per-node", "2", job_id=f"{recipe}-2")
    assert done.returncode == 0, done.stderr[-3000:]
    ops = operations(events)
    assert ops[0] == "job_started" and ops[-1] == "job_completed"
    assert events[0]["data"]["world_size"] == 2
    # A step event per logging step, from rank 0 only; an epoch event per epoch and rank.
    assert [d["step_num"] for d in steps(events, rank=0)] == list(range(1, STEPS + 1))
    assert steps(events, rank=1) == []
    epochs = Counter((e["data"]["gpu_rank"], e["data"]["epoch_num"]) for e in events if e["operation"] == "epoch")
    assert epochs == Counter({(0, 1): 1, (1, 1): 1, (0, 2): 1, (1, 2): 1})
    keys = [
        (e["operation"], e["data"].get("gpu_rank"), e["data"].get("step_num"), e["data"].get("epoch_num"))
        for e in events
        if e["operation"] in ("step", "epoch")
    ]
    assert len(keys) == len(set(keys))
    assert [e["data"]["kind"] for e in events if e["operation"] == "weights"] == ["intermediate", "final", "all"]


def test_exception_at_step_k_fails_the_job_with_every_earlier_event(runs):
    done, events = runs(
        "full_finetune_single_device",
        "metric_logger._component_=helpers.faults.FailingLogger",
        "metric_logger.fail_at_step=13",
        job_id="fault",
    )
    assert done.returncode == 1
    assert operations(events)[-1] == "job_failed"
    failed = events[-1]["data"]
    assert failed["error_type"] == "StepFault" and failed["message"] == "injected fault at step 13"
    assert [d["step_num"] for d in steps(events)] == list(range(1, 13))
    assert [e["data"]["epoch_num"] for e in events if e["operation"] == "epoch"] == [1]
    report = json.loads((runs.root / "tester" / "fault" / failed["traceback_file"]).read_text())
    assert "StepFault: injected fault at step 13" in report["traceback"]
    assert (
        f"porter: job_failed: StepFault: injected fault at step 13 (traceback: {runs.root}/tester/fault/errors/"
        in done.stderr
    )


def test_resume_continues_with_the_uninterrupted_losses(runs, full_run):
    _, uninterrupted = full_run
    crashed, _ = runs(
        "full_finetune_single_device",
        "metric_logger._component_=helpers.faults.FailingLogger",
        "metric_logger.fail_at_step=15",
        job_id="resume",
    )
    assert crashed.returncode == 1
    done, events = runs("full_finetune_single_device", "resume_from_checkpoint=True", job_id="resume")
    assert done.returncode == 0, done.stderr[-3000:]
    ops = operations(events)
    assert ops.count("job_started") == 2 and ops[-1] == "job_completed"
    assert events[ops.index("job_started", 1)]["data"]["resumed"] is True
    assert ops.index("job_failed") < ops.index("job_started", 1)
    numbers = [d["step_num"] for d in steps(events)]
    assert sorted(numbers) == list(range(1, STEPS + 1)), "no step lost or logged twice"
    assert_same_losses(losses(events), losses(uninterrupted))


def test_resume_without_a_checkpoint_is_refused(runs):
    done, events = runs("full_finetune_single_device", "resume_from_checkpoint=True", job_id="nothing-to-resume")
    assert done.returncode == 2
    assert "has no saved checkpoint to resume from" in done.stderr
    assert operations(events) == ["job_started", "job_failed"]


def test_rerun_of_a_finished_job_is_refused_and_its_log_untouched(runs, full_run):
    log = runs.root / "tester" / "full" / "events.jsonl"
    before = log.read_bytes()
    done, _ = runs("full_finetune_single_device", job_id="full")
    assert done.returncode == 2
    assert "already completed: use a new job id" in done.stderr
    assert log.read_bytes() == before


def test_a_job_that_failed_before_saving_can_run_again(runs, tmp_path, demo):
    done, _ = runs("lora_finetune_single_device", "--dataset", str(tmp_path / "missing.jsonl"), job_id="again")
    assert done.returncode == 2
    done, events = runs("lora_finetune_single_device", "epochs=1", "max_steps_per_epoch=2", job_id="again")
    assert done.returncode == 0, done.stderr[-2000:]
    assert operations(events)[:2] == ["job_started", "job_failed"]
    assert operations(events)[-1] == "job_completed"


def test_job_dataset_replaces_the_configs(runs, demo):
    done, events = runs("lora_finetune_single_device", "--dataset", str(demo.data / "chat.jsonl"), job_id="chat")
    assert done.returncode == 0, done.stderr[-3000:]
    assert events[0]["data"]["dataset"] == str(demo.data / "chat.jsonl")
    config = next(e for e in events if e["operation"] == "job_config")["data"]["config"]
    assert config["dataset"]["_component_"] == "torchtune.datasets.chat_dataset"
    assert config["dataset"]["data_files"].endswith("/chat/dataset/records.jsonl")
    assert len(steps(events)) == STEPS


@pytest.mark.parametrize(
    "line, message",
    [
        (
            '{"messages": [{"role": "user", "content": "hi"}]}',
            "data.jsonl:2: field 'messages' has no assistant message",
        ),
        ('{"messages": "hello"}', "data.jsonl:2: field 'messages' must be a non-empty list, got str"),
        ("{not json", "data.jsonl:2: malformed JSON"),
    ],
)
def test_bad_dataset_fails_before_training_with_its_line(runs, tmp_path, line, message):
    data = tmp_path / "data.jsonl"
    data.write_text(
        '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}\n' + line + "\n"
    )
    done, events = runs("lora_finetune_single_device", "--dataset", str(data), job_id=f"bad-data-{abs(hash(line))}")
    assert done.returncode == 2
    assert message in done.stderr
    assert operations(events) == ["job_started", "job_failed"]
    assert message in events[-1]["data"]["message"]


@pytest.mark.parametrize("job_id", ["../escape", "a/b", ".", "x" * 129, "tab\there"])
def test_bad_ids_are_refused_before_anything_is_written(runs, job_id):
    done, _ = runs("lora_finetune_single_device", job_id=job_id, user_id="ids")
    assert done.returncode == 2
    assert done.stderr.strip().startswith("porter: error: job_id ")
    assert not (runs.root / "ids").exists()


def test_job_dataset_honours_packed(runs, demo):
    done, events = runs(
        "lora_finetune_single_device",
        "--dataset",
        str(demo.data / "chat.jsonl"),
        "dataset.packed=True",
        job_id="packed",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    config = next(e for e in events if e["operation"] == "job_config")["data"]["config"]
    assert config["dataset"]["packed"] is True
    packed_steps = steps(events)
    # 128 short conversations packed into 256-token sequences make fewer batches.
    assert 0 < len(packed_steps) < STEPS
    assert packed_steps[-1]["step_num"] == packed_steps[-1]["step_len"] == len(packed_steps)


# -- every other recipe family of torchtune 0.6.1 ----------------------------------------

FAMILIES = {
    # recipe: processes (None: in this process), optimizer steps logged
    "knowledge_distillation_single_device": (None, 10),  # one epoch: see PARITY
    "knowledge_distillation_distributed": (2, STEPS),
    "lora_dpo_single_device": (None, STEPS),
    "lora_dpo_distributed": (2, STEPS),
    "full_dpo_distributed": (2, STEPS),
    "ppo_full_finetune_single_device": (None, 4),  # num_steps 16 / batch 4, one epoch
    "qat_distributed": (2, STEPS),
    "qat_lora_finetune_distributed": (2, STEPS),
    "dev/early_exit_finetune_distributed": (2, STEPS),
    "dev/lora_finetune_distributed_multi_dataset": (2, STEPS),
}


# The recipes upstream runs on CPU (the single-device ones) run the way parity with
# upstream needs: KD merges LoRA weights at every save whatever the config says,
# corrupting upstream's base weights on CPU, so it trains one epoch (the save comes
# after training); DPO saves adapters only, which never merges.
PARITY = {
    "knowledge_distillation_single_device": ("epochs=1",),
    "lora_dpo_single_device": (ADAPTER_ONLY,),
    "ppo_full_finetune_single_device": (),
}


@pytest.fixture(scope="module")
def family_runs(runs):
    results = {}

    def run(recipe):
        if recipe not in results:
            processes, _ = FAMILIES[recipe]
            extra = ("--nproc-per-node", str(processes)) if processes else PARITY[recipe]
            results[recipe] = runs(recipe, *extra, job_id=recipe.replace("/", "-"))
        return results[recipe]

    return run


@pytest.mark.parametrize("recipe", sorted(FAMILIES))
def test_every_generated_recipe_trains_logs_and_saves(recipe, family_runs, runs):
    processes, expected_steps = FAMILIES[recipe]
    done, events = family_runs(recipe)
    assert done.returncode == 0, done.stderr[-3000:]
    ops = operations(events)
    assert ops[0] == "job_started" and ops[-1] == "job_completed"
    assert [d["step_num"] for d in steps(events)] == list(range(1, expected_steps + 1))
    assert all(d["step_len"] == expected_steps and d["step_loss"] == d["step_loss"] for d in steps(events))
    ranks = range(processes or 1)
    assert all(steps(events, rank) == [] for rank in ranks if rank)
    epochs = Counter((e["data"]["gpu_rank"], e["data"]["epoch_num"]) for e in events if e["operation"] == "epoch")
    total_epochs = steps(events)[-1]["epoch_len"]
    assert epochs == Counter({(rank, epoch): 1 for rank in ranks for epoch in range(1, total_epochs + 1)})
    weights = [e["data"] for e in events if e["operation"] == "weights"]
    assert [w["kind"] for w in weights][-2:] == ["final", "all"]
    job = runs.root / "tester" / recipe.replace("/", "-")
    assert weights[-2]["files"] and all((job / f).is_file() for f in weights[-1]["files"])


@pytest.mark.parametrize("recipe", sorted(PARITY))
def test_loss_parity_with_upstream_for_every_recipe_upstream_runs_on_cpu(recipe, family_runs, demo, tmp_path):
    # Upstream's distributed recipes fail on a CPU as shipped (README, "Recipes on CPU");
    # these are the single-device ones besides full and LoRA fine-tuning (above).
    done, events = family_runs(recipe)
    assert done.returncode == 0, done.stderr[-3000:]
    theirs = upstream_losses(recipe, demo.config(recipe), tmp_path / "upstream", *PARITY[recipe])
    assert_same_losses(losses(events), theirs, FAMILIES[recipe][1])


@pytest.mark.parametrize(
    "recipe, data, kind",
    [
        ("lora_dpo_single_device", "preference.jsonl", "torchtune.datasets.preference_dataset"),
        ("ppo_full_finetune_single_device", "prompts.jsonl", "torchtune.datasets.text_completion_dataset"),
    ],
)
def test_each_family_trains_on_its_kind_of_job_dataset(recipe, data, kind, runs, demo):
    done, events = runs(recipe, "--dataset", str(demo.data / data), job_id=f"data-{recipe}")
    assert done.returncode == 0, done.stderr[-3000:]
    config = next(e for e in events if e["operation"] == "job_config")["data"]["config"]
    assert config["dataset"]["_component_"] == kind
    assert operations(events)[-1] == "job_completed"


def test_a_dataset_mix_recipe_trains_on_the_job_dataset_alone(runs, demo):
    done, events = runs(
        "dev/lora_finetune_distributed_multi_dataset",
        "--nproc-per-node",
        "2",
        "--dataset",
        str(demo.data / "chat.jsonl"),
        job_id="mix-data",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    config = next(e for e in events if e["operation"] == "job_config")["data"]["config"]
    assert [entry["transform"]["_component_"] for entry in config["datasets"]] == ["torchtune.data.OpenAIToMessages"]
    assert operations(events)[-1] == "job_completed"


@pytest.mark.parametrize(
    "recipe, data, message",
    [
        (
            "lora_dpo_single_device",
            "chat.jsonl",
            "a chat dataset, but lora_dpo_single_device trains on preference (prompt, chosen, rejected) data",
        ),
        (
            "lora_finetune_single_device",
            "preference.jsonl",
            "a preference dataset, but lora_finetune_single_device trains on chat (messages) or instruct (instruction, input, output) data",
        ),
        (
            "ppo_full_finetune_single_device",
            "instruct.json",
            "an instruct dataset, but ppo_full_finetune_single_device trains on prompt (prompt) data",
        ),
    ],
)
def test_a_dataset_of_the_wrong_kind_is_refused_before_training(recipe, data, message, runs, demo):
    done, events = runs(recipe, "--dataset", str(demo.data / data), job_id=f"wrong-{recipe}")
    assert done.returncode == 2
    assert message in done.stderr
    assert operations(events) == ["job_started", "job_failed"]


def test_grpo_fails_to_import_exactly_as_upstream_does_on_0_6_1(generated):
    # The 0.6.1 wheel ships dev/grpo_full_finetune_distributed.py but not the
    # torchtune.dev package it imports: upstream cannot run it anywhere.
    from conftest import installed_recipes
    from runtime.launch import load_recipe_module

    errors = []
    for path in (
        installed_recipes() / "dev" / "grpo_full_finetune_distributed.py",
        generated / "dev" / "grpo_full_finetune_distributed.py",
    ):
        with pytest.raises(ModuleNotFoundError) as error:
            load_recipe_module(path)
        errors.append(str(error.value))
    assert errors[0] == errors[1] == "No module named 'torchtune.dev'"


def test_demo_prepare_only_makes_every_asset_deterministically(tmp_path):
    first = run_porter_demo(tmp_path / "a")
    second = run_porter_demo(tmp_path / "b")
    files = sorted(p.relative_to(first).as_posix() for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second).as_posix() for p in second.rglob("*") if p.is_file())
    for name in files:
        if not name.startswith("configs/"):  # configs name their own folder
            assert (first / name).read_bytes() == (second / name).read_bytes(), name
    from porter.demo.configs import RECIPE_CONFIGS

    assert {f"configs/{recipe}.yaml" for recipe in RECIPE_CONFIGS} <= set(files)
    for data in ("chat.jsonl", "instruct.json", "preference.jsonl", "prompts.jsonl"):
        assert f"data/{data}" in files
    for model in ("model", "teacher", "reward"):
        assert {f"{model}/config.json", f"{model}/model.safetensors"} <= set(files)
    assert not (first / "runs").exists()


def run_porter_demo(folder: Path) -> Path:
    from conftest import run_porter

    done = run_porter("demo", "--prepare-only", "--dir", folder)
    assert done.returncode == 0, done.stderr[-2000:]
    return folder


# -- a job's data is safe -----------------------------------------------------------------------

SECRETS = {"api_key": "wandb-secret-8421", "hf_token": "hf_secret_5517", "webhook": "webhook-secret-7788"}


class Collector(__import__("http.server").server.BaseHTTPRequestHandler):
    bodies: list = []

    def do_POST(self):
        Collector.bodies.append(
            self.rfile.read(int(self.headers["Content-Length"])) + repr(dict(self.headers)).encode()
        )
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def secret_run(runs):
    import http.server
    import threading

    Collector.bodies = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = runs(
            "lora_finetune_single_device",
            "--console",
            f"metric_logger.api_key={SECRETS['api_key']}",
            f"+extra.hf_token={SECRETS['hf_token']}",
            f"porter.webhook.url=http://127.0.0.1:{server.server_address[1]}/events",
            "porter.webhook.headers.Authorization=${oc.env:PORTER_WEBHOOK_TOKEN}",
            "porter.file_mode=0640",
            "porter.dir_mode=0750",
            job_id="secrets",
            env={"PORTER_WEBHOOK_TOKEN": f"Bearer {SECRETS['webhook']}"},
        )
    finally:
        server.shutdown()
    return result


def test_a_jobs_secrets_leak_nowhere_it_writes_or_sends(secret_run, runs):
    done, events = secret_run
    assert done.returncode == 0, done.stderr[-3000:]
    job = runs.root / "tester" / "secrets"
    written = {path: path.read_bytes() for path in job.rglob("*") if path.is_file()}
    assert any(path.name == "torchtune_config.yaml" for path in written) and job / "config.yaml" in written
    places = {
        **{str(path): data for path, data in written.items()},
        "stdout": done.stdout.encode(),
        "stderr": done.stderr.encode(),
    }
    places.update({f"webhook body {n}": body.split(b"{'Host'")[0] for n, body in enumerate(Collector.bodies)})
    assert len(Collector.bodies) >= 1
    for name, secret in SECRETS.items():
        leaks = [place for place, data in places.items() if secret.encode() in data]
        assert leaks == [], f"the {name} secret leaks into {leaks}"
    # ... and the webhook got its token, which only its headers carry.
    assert all(f"Bearer {SECRETS['webhook']}".encode() in body for body in Collector.bodies)
    config = next(e for e in events if e["operation"] == "job_config")["data"]["config"]
    assert config["metric_logger"]["api_key"] == "***" and config["extra"]["hf_token"] == "***"
    assert config["porter"]["webhook"]["headers"] == {"Authorization": "***"}


@pytest.fixture(scope="module")
def team_launcher_runs(demo, generated, runs):
    """A team's own launcher (tests/guide_runtime/launch.py calls the generated
    `recipe_main` itself) on porter's runtime, with secrets in the config: one job that
    completes, and one whose tracker fails quoting its key. Each: (job folder, process)."""

    def launch(job_logger: str, job: str):
        root = runs.root / "team-launcher" / job
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "guide_runtime.launch",
                str(generated / "lora_finetune_single_device.py"),
                str(demo.config("lora_finetune_single_device")),
                f"metric_logger._component_={job_logger}",
                f"metric_logger.api_key={SECRETS['api_key']}",
                f"extra.hf_token={SECRETS['hf_token']}",
                f"porter.output_root={root}",
            ],
            cwd=REPO,
            env={**os.environ, **JOB_ENV},
            capture_output=True,
            text=True,
            timeout=300,
        )
        return root / "team-user" / "job-1", done

    return {
        "completed": launch("torchtune.training.metric_logging.DiskLogger", "completed"),
        "failed": launch("helpers.faults.KeyRejectingLogger", "failed"),
    }


@pytest.mark.parametrize("outcome", ["completed", "failed"])
def test_a_team_launcher_that_calls_recipe_main_leaks_no_secret(outcome, team_launcher_runs):
    job, done = team_launcher_runs[outcome]
    assert done.returncode == (0 if outcome == "completed" else 1), done.stderr[-3000:]
    events = events_of(job / "events.jsonl")
    assert operations(events)[-1] == f"job_{outcome}"
    written = {str(path): path.read_bytes() for path in job.rglob("*") if path.is_file()}
    if outcome == "completed":  # torchtune's own copy of the config, from its metric logger
        assert any(path.endswith("torchtune_config.yaml") for path in written)
    else:
        assert events[-1]["data"]["message"] == "the tracker rejected api key ***"
        assert any("/errors/" in path for path in written)
    places = {**written, "stdout": done.stdout.encode(), "stderr": done.stderr.encode()}
    assert b"hf_token: '***'" in done.stdout.encode() + done.stderr.encode()  # torchtune's dump, redacted
    for name in ("api_key", "hf_token"):
        leaks = [place for place, data in places.items() if SECRETS[name].encode() in data]
        assert leaks == [], f"the {name} secret leaks into {leaks}"


def test_a_job_folder_is_owner_only_unless_the_team_opens_it(lora_run, secret_run, runs):
    import stat

    for job, (file_mode, dir_mode) in (("lora", (0o600, 0o700)), ("secrets", (0o640, 0o750))):
        root = runs.root / "tester" / job
        modes = {path: stat.S_IMODE(path.stat().st_mode) for path in [root, *root.rglob("*")]}
        assert {path: mode for path, mode in modes.items() if path.is_dir() and mode != dir_mode} == {}, job
        assert {path: mode for path, mode in modes.items() if path.is_file() and mode != file_mode} == {}, job


def test_a_dataset_that_makes_no_optimizer_step_fails_the_job_with_the_numbers(runs, demo, tmp_path):
    data = tmp_path / "two.jsonl"
    data.write_text("".join(line + "\n" for line in (demo.data / "chat.jsonl").read_text().splitlines()[:2]))
    done, events = runs("lora_finetune_single_device", "--dataset", str(data), "batch_size=4", job_id="zero-steps")
    assert done.returncode == 2
    assert operations(events)[-1] == "job_failed"
    failed = events[-1]["data"]
    assert failed["error_type"] == "DatasetError"
    assert (
        failed["message"]
        == "the dataset makes no optimizer step in an epoch: 2 records, batch size 4 per process, drop_last=True"
    )
    assert "step" not in operations(events)


def test_keep_last_n_checkpoints_deletes_old_epochs_and_says_so(runs):
    done, events = runs(
        "full_finetune_single_device",
        "epochs=3",
        "max_steps_per_epoch=2",
        "porter.keep_last_n_checkpoints=1",
        job_id="rotated",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    weights = [(e["data"]["kind"], e["data"]["files"]) for e in events if e["operation"] == "weights"]
    assert [kind for kind, _ in weights] == ["intermediate", "intermediate", "removed", "final", "all"]
    assert weights[2][1] == ["checkpoints/epoch_0"]
    # The newest save a resume needs stays beside the final one.
    checkpoints = runs.root / "tester" / "rotated" / "checkpoints"
    assert sorted(p.name for p in checkpoints.glob("epoch_*")) == ["epoch_1", "epoch_2"]


def test_an_explicit_flag_wins_over_the_configs_porter_section(runs, demo, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(
        demo.config("full_finetune_single_device").read_text() + "porter:\n  save_every_n_epochs: 3\n  heartbeat_s: 7\n"
    )
    done, events = runs(
        "full_finetune_single_device",
        "--save-every-n-epochs",
        "2",
        "epochs=1",
        "max_steps_per_epoch=1",
        config=config,
        job_id="flag-wins",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    porter = next(e for e in events if e["operation"] == "job_config")["data"]["config"]["porter"]
    assert (porter["save_every_n_epochs"], porter["heartbeat_s"]) == (2, 7)


def test_a_report_that_cannot_be_written_is_said_on_the_console_not_only_in_the_output_log(runs):
    (runs.root / "tester" / "report-fails" / "report.html").mkdir(parents=True)
    done, events = runs("full_finetune_single_device", "epochs=1", "max_steps_per_epoch=1", job_id="report-fails")
    assert done.returncode == 0, done.stderr[-3000:]
    assert events[-1]["operation"] == "job_completed"
    assert f"porter: warning: {runs.root}/tester/report-fails/report.html not written: IsADirectoryError" in done.stderr
