"""torchrun's options as users type them, and which node a `porter run` is."""

from __future__ import annotations

import re

import pytest

from runtime.cluster import NodePlace, RENDEZVOUS_TIMEOUT_S, TorchrunOptions, world_size
from runtime.job import JobError


@pytest.mark.parametrize(
    "tokens",
    [
        [
            "--nproc_per_node",
            "2",
            "--nnodes=2",
            "--node_rank",
            "1",
            "--rdzv_conf",
            "join_timeout=60",
            "--log_dir",
            "/tmp/l",
            "--tee",
            "3",
        ],
        [
            "--nproc-per-node=2",
            "--nnodes",
            "2",
            "--node-rank=1",
            "--rdzv-conf=join_timeout=60",
            "--log-dir",
            "/tmp/l",
            "-t",
            "3",
        ],
    ],
)
def test_torchrun_options_pass_through_in_either_spelling(tokens):
    options, overrides = TorchrunOptions.split(["epochs=1", *tokens, "batch_size=4"])
    assert overrides == ["epochs=1", "batch_size=4"]
    parsed = options.parsed()
    assert (parsed.nproc_per_node, parsed.nnodes, parsed.node_rank, parsed.log_dir, parsed.tee) == (
        "2",
        "2",
        1,
        "/tmp/l",
        "3",
    )
    assert parsed.rdzv_conf == "join_timeout=60"  # the user's timeout, not porter's default
    assert parsed.standalone  # no endpoint given: one machine
    assert NodePlace.of(options, {}) == NodePlace(1, 2) and world_size(options) == 4


def test_porter_bounds_the_rendezvous_unless_told_otherwise():
    options, _ = TorchrunOptions.split(
        ["--nnodes", "2", "--rdzv-endpoint", "head:29500", "--rdzv_conf", "read_timeout=30"]
    )
    parsed = options.parsed()
    assert parsed.rdzv_conf == f"read_timeout=30,join_timeout={RENDEZVOUS_TIMEOUT_S}" and not parsed.standalone
    assert options.rendezvous_timeout_s() == RENDEZVOUS_TIMEOUT_S <= 300


@pytest.mark.parametrize(
    "tokens, message",
    [
        (["--no-such-flag"], "--no-such-flag: not an option of porter run or of torchrun"),
        (["--nnodes"], "--nnodes: needs a value"),
        (["--standalone=yes"], "--standalone: takes no value"),
        (["--module"], "--module: porter run starts its own worker; drop --module"),
        (["--nnodes", "two"], "--nnodes: must be N or MIN:MAX, got 'two'"),
        (
            ["--nproc-per-node", "2", "--max-restarts", "x"],
            "torchrun options: argument --max-restarts/--max_restarts: invalid int value: 'x'",
        ),
    ],
)
def test_bad_torchrun_options_are_one_line(tokens, message):
    with pytest.raises(JobError, match=f"^{re.escape(message)}$"):
        options, _ = TorchrunOptions.split(tokens)
        NodePlace.of(options, {})


@pytest.mark.parametrize(
    "tokens, environ, place",
    [
        ([], {}, NodePlace(0, 1)),
        (["--nnodes", "2", "--node-rank", "1"], {"SLURM_NODEID": "0"}, NodePlace(1, 2)),  # the flag wins
        (["--nnodes", "2"], {"SLURM_NODEID": "1"}, NodePlace(1, 2)),
        (["--nnodes", "1:3"], {"PET_NODE_RANK": "2"}, NodePlace(2, 3)),
    ],
)
def test_a_node_knows_its_rank_from_the_flag_or_its_cluster(tokens, environ, place):
    options, _ = TorchrunOptions.split(tokens)
    assert NodePlace.of(options, environ) == place
    assert place.owner == (place.node_rank == 0)


@pytest.mark.parametrize(
    "tokens, environ, message",
    [
        (["--nnodes", "2"], {}, "--nnodes 2: which node is this? give --node-rank, or run under a cluster that says"),
        (["--nnodes", "2", "--node-rank", "2"], {}, "--node-rank 2: must be from 0 to 1 for 2 nodes"),
        (["--nnodes", "2"], {"SLURM_NODEID": "n1"}, "SLURM_NODEID: must be a whole number, got 'n1'"),
    ],
)
def test_a_node_that_cannot_tell_its_rank_is_refused(tokens, environ, message):
    options, _ = TorchrunOptions.split(tokens)
    with pytest.raises(JobError, match=f"^{re.escape(message)}"):
        NodePlace.of(options, environ)
