"""Ids, settings, the checkpoint policy and resume, and RecipeBase on their own."""

from __future__ import annotations

import re

import pytest
from omegaconf import OmegaConf

from runtime.checkpoints import CheckpointPolicy, resume_config
from runtime.job import JobError, JobPaths, validate_id
from runtime.job import JobRef
from runtime.job_logger import JobLogger, read_events
from runtime.recipe_base import JobContext, RecipeBase
from runtime.settings import RuntimeSettings


@pytest.mark.parametrize("good", ["a", "job-1", "A.b_c-9", "x" * 128, "..a"])
def test_good_ids(good):
    assert validate_id("job_id", good) == good


@pytest.mark.parametrize(
    "bad, shown",
    [
        (".", "'.'"),
        ("..", "'..'"),
        ("a/b", "'a/b'"),
        ("../x", "'../x'"),
        ("", "''"),
        ("tab\t", "'tab\\t'"),
        ("nul\x00", "'nul\\x00'"),
        ("x" * 129, "(129 characters)"),
        ("ümlaut", "'ümlaut'"),
        (7, "7"),
    ],
)
def test_bad_ids_are_refused_naming_the_field(bad, shown):
    with pytest.raises(JobError) as error:
        validate_id("user_id", bad)
    assert str(error.value).startswith("user_id ")
    assert shown in str(error.value)
    assert "\n" not in str(error.value)


def test_job_folder_is_root_user_job(tmp_path):
    paths = JobPaths.for_job(tmp_path, "alice", "j1")
    assert paths.root == tmp_path / "alice" / "j1"
    assert paths.events == paths.root / "events.jsonl"


@pytest.mark.parametrize(
    "section, message",
    [
        ({"save_every_n_epochs": 0}, "porter.save_every_n_epochs: must be a positive integer, got 0"),
        ({"save_every_n_steps": "5"}, "porter.save_every_n_steps: must be a positive integer, got '5'"),
        ({"heartbeat_s": -1}, "porter.heartbeat_s: must be a number of seconds >= 0, got -1"),
        ({"colour": True}, "porter.colour: unknown setting"),
        ({"webhook": {"uri": "x"}}, "porter.webhook: must be a mapping with a url"),
        ({"sinks": [{"topic": "x"}]}, "porter.sinks[0]: must be a mapping with a _component_"),
        ({"file_mode": "rw-r-----"}, "porter.file_mode: must be a permission mode like \"0640\", got 'rw-r-----'"),
        (
            {"dir_mode": 640},
            'porter.dir_mode: must be a permission mode like "0640", got 640',
        ),  # decimal 640: write "0640"
        ({"file_mode": "0440"}, "porter.file_mode/dir_mode: the owner must keep reading and writing (0440, 0700)"),
    ],
)
def test_bad_settings_name_their_field(section, message):
    with pytest.raises(JobError, match=re.escape(message)):
        RuntimeSettings.from_config(OmegaConf.create({"porter": section}))


@pytest.mark.parametrize("given, mode", [("0640", 0o640), ("640", 0o640), ("0o750", 0o750), (0o640, 0o640)])
def test_modes_are_octal_digits_or_the_number_yaml_reads_0640_as(given, mode):
    settings = RuntimeSettings.from_config(OmegaConf.create({"porter": {"file_mode": given, "dir_mode": "0750"}}))
    assert settings.modes == (mode, 0o750)


def test_settings_default_without_a_section():
    assert RuntimeSettings.from_config(OmegaConf.create({})) == RuntimeSettings()


@pytest.mark.parametrize(
    "every, total, saved",
    [(1, 3, [0, 1, 2]), (2, 3, [1, 2]), (2, 4, [1, 3]), (5, 3, [2])],
)
def test_epoch_policy_saves_every_n_and_always_the_last(every, total, saved):
    policy = CheckpointPolicy(every_n_epochs=every)
    assert [epoch for epoch in range(total) if policy.epoch_due(epoch, total)] == saved


def test_step_policy():
    assert [s for s in range(1, 13) if CheckpointPolicy(every_n_steps=5).step_due(s)] == [5, 10]
    assert not CheckpointPolicy().step_due(5)


def weights_event(kind, epoch):
    return {"operation": "weights", "data": {"kind": kind, "epoch": epoch, "files": []}}


def test_resume_points_a_lora_checkpointer_at_the_last_adapter(tmp_path):
    paths = JobPaths(tmp_path)
    for epoch in (0, 1):
        folder = paths.checkpoints / f"epoch_{epoch}"
        folder.mkdir(parents=True)
        (folder / "recipe_state.pt").write_text("")
        (folder / "adapter_model.pt").write_text("")
    cfg = OmegaConf.create({"checkpointer": {"checkpoint_files": ["model.safetensors"]}})
    resumed = resume_config(cfg, paths, [weights_event("intermediate", 0), weights_event("intermediate", 1)])
    assert resumed.resume_from_checkpoint is True
    assert resumed.checkpointer.recipe_checkpoint == "epoch_1/recipe_state.pt"
    assert resumed.checkpointer.adapter_checkpoint == "epoch_1/adapter_model.pt"
    assert list(resumed.checkpointer.checkpoint_files) == ["model.safetensors"]


def test_resume_points_a_full_checkpointer_at_the_last_weights(tmp_path):
    paths = JobPaths(tmp_path)
    folder = paths.checkpoints / "epoch_0"
    folder.mkdir(parents=True)
    for name in (
        "recipe_state.pt",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "config.json",
    ):
        (folder / name).write_text("")
    resumed = resume_config(OmegaConf.create({"checkpointer": {}}), paths, [weights_event("intermediate", 0)])
    assert list(resumed.checkpointer.checkpoint_files) == [
        "epoch_0/model-00001-of-00002.safetensors",
        "epoch_0/model-00002-of-00002.safetensors",
    ]


DCP_SAVE = {
    "operation": "weights",
    "data": {
        "kind": "intermediate",
        "epoch": 0,
        "step": 8,
        "files": ["checkpoints/epoch_0/__0_0.distcp", "checkpoints/epoch_0/.metadata"],
    },
}


@pytest.mark.parametrize(
    "events, message",
    [
        ([], "has no saved checkpoint to resume from"),
        ([weights_event("final", 1)], "already finished"),
        # torchtune main's step saves (full_tensors=False): refused in one line
        (
            [weights_event("intermediate", 0), DCP_SAVE],
            r"the last save of job .* \(step 8\) is a distributed checkpoint \(torch.distributed.checkpoint",
        ),
    ],
)
def test_resume_refuses_when_there_is_nothing_to_resume(tmp_path, events, message):
    with pytest.raises(JobError, match=message):
        resume_config(OmegaConf.create({}), JobPaths(tmp_path), events)


# -- RecipeBase -------------------------------------------------------------------------


def context(tmp_path, **kwargs) -> JobContext:
    paths = JobPaths(tmp_path).create()
    logger = JobLogger(job=JobRef("j", "u", "w"), events_path=paths.events)
    return JobContext(paths=paths, logger=logger, **kwargs)


class Bare(RecipeBase):
    pass


def test_a_recipe_without_interface_methods_is_still_instantiable(tmp_path):
    recipe = Bare("j", "u", OmegaConf.create({}), job=context(tmp_path))
    assert recipe.dataset is None
    with pytest.raises(NotImplementedError, match="Bare has no _train method"):
        recipe.train()
    recipe._cleanup()  # nothing to release


def test_rank_comes_from_the_launcher_before_a_process_group_exists(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    recipe = Bare("j", "u", OmegaConf.create({}), job=context(tmp_path))
    assert (recipe.rank, recipe.world_size) == (3, 4)


def test_a_rank_the_recipe_sets_itself_is_kept(tmp_path):
    class SetsRank(RecipeBase):
        def _init(self, cfg):
            self.world_size, self.rank = 2, 1

    recipe = SetsRank("j", "u", OmegaConf.create({}), job=context(tmp_path))
    assert (recipe.rank, recipe.world_size) == (1, 2)


class Saves(RecipeBase):
    def _init(self, cfg):
        self.global_step = 0
        self.calls = []

    # torchtune main's shape: sharded state mid-epoch (full_tensors=False), whole
    # tensors at the end of training (True), the recipe state with both
    def _save_checkpoint(self, *, epoch, step, full_tensors):
        self.calls.append((epoch, step, full_tensors))
        target = self._job.paths.checkpoints / f"epoch_{epoch}"
        target.mkdir(parents=True, exist_ok=True)
        (target / ("model.safetensors" if full_tensors else "shards.distcp")).write_text(str(step))
        state = self._job.paths.checkpoints / "recipe_state" / "recipe_state.pt"
        state.parent.mkdir(exist_ok=True)
        state.write_text("state")


def test_saves_follow_the_policy_and_the_signature(tmp_path):
    job = context(tmp_path, checkpoints=CheckpointPolicy(every_n_epochs=2, every_n_steps=3))
    recipe = Saves("j", "u", OmegaConf.create({}), job=job)
    for epoch in range(3):
        for _ in range(2):
            recipe.global_step += 1
            recipe.save_checkpoint_if_due(epoch=epoch, step=recipe.global_step)
        recipe.save_checkpoint_if_due(epoch=epoch, total_epochs=3)
    # steps 3 and 6 by the step policy; epoch 1 (every 2 epochs); the final epoch 2
    # saves again, as final, though step 6 saved the same state as intermediate.
    # As upstream: step saves pass full_tensors=False, saves at an epoch's end True.
    assert recipe.calls == [(1, 3, False), (1, 4, True), (2, 6, False), (2, 6, True)]
    job.logger.close()
    weights = [e["data"] for e in read_events(job.paths.events) if e["operation"] == "weights"]
    assert [(w["kind"], w["step"], w["resumable"]) for w in weights] == [
        ("intermediate", 3, True),
        ("intermediate", 4, True),
        ("intermediate", 6, True),
        ("final", 6, False),
    ]
    assert weights[1]["files"] == ["checkpoints/epoch_1/model.safetensors", "checkpoints/epoch_1/recipe_state.pt"]
    assert (job.paths.checkpoints / "epoch_1" / "recipe_state.pt").read_text() == "state"


def test_a_loop_that_ends_early_still_gets_its_final_save(tmp_path):
    job = context(tmp_path)
    recipe = Saves("j", "u", OmegaConf.create({}), job=job)
    recipe.global_step = 5
    recipe.save_checkpoint_if_due(epoch=0, total_epochs=4)
    recipe.save_final_checkpoint_if_missing()
    assert recipe.calls == [(0, 5, True), (0, 5, True)]
    recipe.save_final_checkpoint_if_missing()
    assert len(recipe.calls) == 2


class Loader(RecipeBase):
    """A recipe with torch's DataLoader over `records`, that trains `epochs` epochs."""

    def _init(self, cfg):
        self.global_step = 0
        self.epochs = cfg.epochs

    def _setup(self, cfg):
        from torch.utils.data import DataLoader

        self._dataloader = DataLoader(list(range(cfg.records)), batch_size=cfg.batch_size, drop_last=True)
        self._steps_per_epoch = len(self._dataloader)

    def _train(self):
        for _ in range(self.epochs):
            for _ in self._dataloader:
                self.global_step += 1


@pytest.mark.parametrize(
    "records, batch_size, epochs, message",
    [
        (
            3,
            4,
            1,
            "the dataset makes no optimizer step in an epoch: 3 records, batch size 4 per process, drop_last=True",
        ),
        (8, 4, 0, "the run finished with zero optimizer steps: 8 records, batch size 4 per process, drop_last=True"),
    ],
)
def test_a_run_that_can_make_no_optimizer_step_fails_with_the_numbers(tmp_path, records, batch_size, epochs, message):
    from runtime.datasets import DatasetError

    cfg = OmegaConf.create({"records": records, "batch_size": batch_size, "epochs": epochs})
    recipe = Loader("j", "u", cfg, job=context(tmp_path))
    with pytest.raises(DatasetError, match=re.escape(message)):
        recipe.setup(cfg)
        recipe.train()
    recipe.job_logger.close()


def test_porters_contract_is_what_its_runtime_declares():
    # Read off RecipeBase, run_recipe and the job logger's signatures, as a team's runtime is.
    from porter.contract_reader import read_runtime
    from runtime.contract import PORTER

    reading = read_runtime(["runtime"])
    assert reading.problems == []
    assert reading.contract.table() == PORTER.table()


def test_the_runtime_package_loads_its_names_on_first_use():
    import subprocess
    import sys

    code = "import runtime.families, sys; assert 'torch' not in sys.modules; from runtime import RecipeBase, run_recipe, Dataset"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_a_torchao_extension_that_did_not_load_is_named_in_one_line(monkeypatch):
    """torchao logs a failed extension at DEBUG level only; `porter run` warns."""
    import sys

    import torch

    from runtime.system import torchao_extension_problem

    monkeypatch.delitem(sys.modules, "torchao.ops", raising=False)

    def refuse(path):
        raise OSError(f"{path}: undefined symbol: _ZN3c104impl\nmore detail")

    monkeypatch.setattr(torch.ops, "load_library", refuse)
    problem = torchao_extension_problem()
    assert problem is not None and "\n" not in problem
    assert problem.startswith("torchao ") and "C++ extension did not load under torch" in problem
    assert "undefined symbol" in problem and problem.endswith(
        "its custom kernels (low-bit and quantized ops) are unavailable"
    )


def test_torchao_is_a_problem_exactly_when_its_extension_is_not_loaded():
    """In a fresh process, as `porter run` sees it (the test above leaves torchao half-loaded)."""
    import subprocess
    import sys

    probe = (
        "import torch, torchao; from runtime.system import torchao_extension_problem as p; "
        "print(p() is None, any('torchao' in path for path in torch.ops.loaded_libraries))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    no_problem, loaded = done.stdout.split()
    assert no_problem == loaded


@pytest.mark.parametrize(
    "code, required",
    [
        ("x = cfg.dataset_val", {"dataset_val"}),
        ("if cfg.get('dataset_val') is not None:\n    x = cfg.dataset_val", set()),
        ("if cfg.get('dataset_val'):\n    x = cfg.dataset_val\nelse:\n    y = cfg.other", {"other"}),
        ("if 'dataset_val' in cfg:\n    x = cfg.dataset_val", set()),
        ("x = cfg.dataset_val if cfg.get('dataset_val') else None", set()),
        ("ok = cfg.get('dataset_val') is not None and cfg.dataset_val.packed", set()),
        ("if cfg.get('seed'):\n    x = cfg.dataset_val", {"dataset_val"}),  # guarded by another key
        ("x = cfg.get('dataset_val', None)\ny = cfg.model", {"model"}),
    ],
)
def test_a_key_read_under_its_own_guard_is_optional(code, required):
    import ast

    from runtime.job_config import required_keys

    assert required_keys(ast.parse(code)) == required


@pytest.mark.parametrize(
    "loss, family, kinds",
    [
        ("torchtune.modules.loss.CEWithChunkedOutputLoss", "sft", ("chat", "instruct")),
        (None, "sft", ("chat", "instruct")),
        ("torchtune.rlhf.loss.DPOLoss", "preference", ("preference",)),
        ("torchtune.rlhf.loss.RSOLoss", "preference", ("preference",)),
        ("torchtune.rlhf.loss.SimPOLoss", "preference", ("preference",)),
        ("torchtune.rlhf.loss.IPOLoss", "preference", ("preference",)),
        ("torchtune.rlhf.loss.PPOLoss", "rl", ("prompt",)),
        ("torchtune.dev.grpo.loss.GRPOSimpleLoss", "rl", ("prompt",)),
    ],
)
def test_a_configs_loss_says_the_family_and_the_data_it_trains_on(loss, family, kinds):
    from runtime.families import FAMILY_KINDS, loss_family

    assert loss_family(loss) == family
    assert FAMILY_KINDS[loss_family(loss)] == kinds


def test_a_job_folders_event_logs_are_listed_alike_on_disk_and_through_fsspec(tmp_path):
    """One lister (runtime/job.py event_logs) orders both: node 0's log first, then the
    other nodes' by number (10 after 2), and nothing else of the folder."""
    from runtime.job import JobPaths
    from runtime.job_reader import OutputRootReader

    paths = JobPaths.for_job(tmp_path, "u", "j").create()
    for name in ("events-node-10.jsonl", "events-node-2.jsonl", "events.jsonl", "events-old.jsonl", "events.json"):
        (paths.root / name).write_text("")
    expected = ["events.jsonl", "events-node-2.jsonl", "events-node-10.jsonl"]
    assert [path.name for path in paths.event_logs()] == expected
    reader = OutputRootReader(str(tmp_path))
    assert [log.rsplit("/", 1)[1] for log in reader.logs(str(paths.root))] == expected
    assert [folder for _, _, folder in reader.job_folders()] == [str(paths.root)]
    (paths.root / "events.jsonl").unlink()  # a folder without node 0's log is no job's
    assert reader.job_folders() == []
