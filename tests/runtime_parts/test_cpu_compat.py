"""The CPU fixes: each knows the torch and torchtune versions it was written for, and
does what it says on the installed torch (the one CI installs)."""

from __future__ import annotations

import pytest
import torch

from runtime import cpu_compat
from runtime.cpu_compat import FIXES, usable_backend


@pytest.fixture(autouse=True)
def fixes_undone_after(monkeypatch):
    """Each fix a test applies is undone after it: the other tests of this process
    see torch and torchtune as installed."""
    install = cpu_compat._once

    def undone_after(module, name, make):
        monkeypatch.setattr(module, name, getattr(module, name))  # restored at teardown
        install(module, name, make)

    monkeypatch.setattr(cpu_compat, "_once", undone_after)
    monkeypatch.setattr(cpu_compat, "_WRAPPERS", dict(cpu_compat._WRAPPERS))


def unfixed(function):
    """The function as torch or torchtune ship it (this process may have the fixes: a
    module of it imported runtime.run on a machine without CUDA)."""
    return function.__wrapped__ if getattr(function, cpu_compat._MARK, False) else function


AS_FOUND = {}


@pytest.fixture(autouse=True, scope="module")
def as_found():
    """What the tests below find, to be restored after each of them."""
    import torch.distributed
    import torchtune.training

    AS_FOUND.update(
        get_memory_stats=torchtune.training.get_memory_stats,
        init_process_group=torch.distributed.init_process_group,
    )


@pytest.mark.parametrize(
    "asked, nccl, usable",
    [
        ("cuda:nccl,cpu:gloo", False, "gloo"),
        ("cpu:gloo,cpu:gloo", False, "gloo"),  # torchtune main on CPU with offloading; torch 2.14 rejects it
        ("nccl", False, "gloo"),
        ("gloo", False, "gloo"),
        ("cuda:nccl,cpu:gloo", True, "cuda:nccl,cpu:gloo"),
        (None, False, None),
    ],
)
def test_the_backend_string_is_one_this_build_can_start(asked, nccl, usable):
    assert usable_backend(asked, nccl) == usable


def test_nccl_is_left_out_by_a_cuda_build_on_a_machine_without_a_gpu(monkeypatch):
    # torch 2.14's CUDA wheels have NCCL, which refuses to start with no GPU.
    monkeypatch.setattr(torch.distributed, "is_nccl_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not cpu_compat.nccl_usable()
    assert usable_backend("cuda:nccl,cpu:gloo", cpu_compat.nccl_usable()) == "gloo"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert cpu_compat.nccl_usable()


def test_each_fix_names_the_versions_it_was_written_for():
    installed = cpu_compat.installed_versions()
    for fix in FIXES:
        assert fix.applies(installed), f"{fix.name} is not written for the installed {installed}"
        assert fix.applies({"torch": "2.14.1", "torchtune": "0.7.0.dev20260401"})
        assert fix.applies({"torch": "2.15.0", "torchtune": "0.6.1"})
        assert not fix.applies({"torch": "3.0.0", "torchtune": "0.6.1"})
    assert cpu_compat.apply({"torch": "3.0.0", "torchtune": "0.6.1"}) == [fix.name for fix in FIXES]


def test_on_this_torch_the_fixed_process_group_and_barrier_work_on_cpu(tmp_path):
    """One gloo process: torchtune main's backend string and its barrier call."""
    import torch.distributed as dist

    assert cpu_compat.apply() == []
    dist.init_process_group("cpu:gloo,cpu:gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        dist.barrier(device_ids=[torch.device("cpu").index])  # what main's recipes pass: [None]
        total = torch.ones(1)
        dist.all_reduce(total)
        assert total.item() == 1.0
    finally:
        dist.destroy_process_group()


def test_on_this_torchtune_memory_stats_and_cleanup_work_on_cpu():
    import torchtune.training

    cpu_compat.apply()
    stats = torchtune.training.get_memory_stats(torch.device("cpu"))
    assert (
        set(stats) == {"peak_memory_active", "peak_memory_alloc", "peak_memory_reserved"}
        and stats["peak_memory_active"] > 0
    )
    torchtune.training.cleanup_before_training()  # upstream raises on a CPU build


def test_on_this_torchtune_a_lora_merge_leaves_the_live_weights_alone():
    from torchtune.modules import peft

    cpu_compat.apply()
    live = {
        "layer.q_proj.weight": torch.zeros(4, 4),
        "layer.q_proj.lora_a.weight": torch.ones(2, 4),
        "layer.q_proj.lora_b.weight": torch.ones(4, 2),
    }
    passed = dict(live)  # what a recipe passes: a new dict of the model's own tensors
    merged = peft.get_merged_lora_ckpt(passed, rank=2, alpha=2)
    assert torch.count_nonzero(live["layer.q_proj.weight"]) == 0  # the model is untouched
    # merged where 0.6.1 reads it (the return value) and where main reads it (the dict it passed)
    for result in (merged, passed):
        assert set(result) == {"layer.q_proj.weight"} and torch.count_nonzero(result["layer.q_proj.weight"]) == 16


def test_a_recipe_that_imported_a_function_before_the_fixes_is_pointed_at_the_fix():
    import torch.distributed

    # a recipe module's names, as `from torch.distributed import barrier, init_process_group` bound them
    recipe_globals = {
        "init_process_group": unfixed(torch.distributed.init_process_group),
        "barrier": unfixed(torch.distributed.barrier),
        "other": print,
    }
    cpu_compat.apply()
    assert sorted(cpu_compat.rebind(recipe_globals)) == ["barrier", "init_process_group"]
    assert recipe_globals["init_process_group"] is torch.distributed.init_process_group
    assert getattr(recipe_globals["barrier"], cpu_compat._MARK) and recipe_globals["other"] is print
    assert cpu_compat.rebind(recipe_globals) == []  # already the fixes


def test_a_fix_is_undone_after_its_test():
    # Runs last: the tests above applied every fix.
    import torch.distributed
    import torchtune.training

    assert torchtune.training.get_memory_stats is AS_FOUND["get_memory_stats"]
    assert torch.distributed.init_process_group is AS_FOUND["init_process_group"]
