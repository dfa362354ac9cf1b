"""The one owner of a job's lifecycle, and what every other process of the job does.

- The owner is `porter run` on node 0, or rank 0 of a job started without `porter run`
  (a team's own launcher calling `recipe_main`). It alone holds the job lock, refuses a
  rerun, writes `job_started`, and ends the log with one terminal event that names the
  first failure of any process on any node.
- Every other process (the training processes, `porter run` on the other nodes) joins
  the same job folder, appends its events to its node's log, and leaves its failure
  (errors/) and its sinks' drop counts (sinks/) for the owner. It never starts or ends
  the log.
- Each node's `porter run` says how it stands in `nodes/node-N.json`: running when it
  starts, then how it ended. From these the owner names a node that failed, one that
  was lost (it stopped without a word: killed, or its host went down) and one that
  never joined.

`porter run` (runtime/launch.py) and `run_recipe` (runtime/run.py) both go through
`Lifecycle.run`, built for them by runtime/job_setup.py; neither writes a start or
terminal event itself. A run hands back its `Outcome`: the terminal event and exit code,
whether the report was written, whether the files reached a remote output root.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from runtime.checkpoints import can_resume
from runtime.cluster import NodePlace, RendezvousFailed
from runtime.error_reports import first_failure, terminal_operation, write_error_report
from runtime.job import JobCancelled, JobError, JobLock, JobPaths, JobRef
from runtime.job_logger import JobLogger, logged_keys, read_job_events, sink_reports_since, utc_now
from runtime.sinks import Sink
from runtime.storage import JobMirror, StorageError
from runtime.files import write_atomically

# Exit codes of `porter run`; a job cancelled by a signal exits 128 + its number.
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2

# Errors that mean the job's inputs were wrong rather than the training: exit code 2.
BAD_INPUT_ERRORS = ("JobError", "DatasetError")

# How long the owner of a failed multi-node job waits for the other nodes to say how
# they ended before it names the silent ones lost.
NODE_REPORT_GRACE_S = 15.0


@dataclass(frozen=True)
class Outcome:
    exit_code: int
    operation: str  # the terminal event: job_completed, job_failed or job_cancelled
    data: Dict[str, Any]
    # Why the job's files did not all reach a remote output root (then exit code 1).
    upload_error: Optional[str] = None
    # Whether the job's report.html was written, and why not when it failed to be.
    report: bool = False
    report_error: Optional[str] = None
    # Where the job's folder is, as a person names it: a path, or a URL on a remote root.
    folder: str = ""


@dataclass
class Lifecycle:
    paths: JobPaths
    job: JobRef
    node: NodePlace
    rank: Optional[int]  # the training process's rank; None for `porter run` itself
    owner: bool
    resuming: bool = False
    # `--resume auto`: resume when an earlier attempt left state to resume from (a
    # scheduler's requeue, a resubmission), else start afresh.
    resume_if_possible: bool = False
    secrets: Sequence[str] = ()
    file_mode: int = 0o600
    sinks: Sequence[Sink] = ()
    # The job folder's copy on a remote output root (runtime/storage.py), if any.
    mirror: Optional[JobMirror] = None
    # Whether the owner writes the job's report.html after the terminal event.
    report: bool = False
    # The job's events before this run, read under the lock as the run starts.
    history: List[dict] = field(default_factory=list, init=False)

    @property
    def _uploads(self) -> bool:
        """Whether this process uploads: each node's `porter run`, its first training
        process (its checkpoints and epochs), and the owner of an unsupervised job."""
        return self.mirror is not None and (self.rank is None or int(os.environ.get("LOCAL_RANK", "0")) == 0)

    def run(self, started: Optional[Dict[str, Any]] = None) -> "JobRun":
        """This process's run of the job: entered, the job's log (`with lifecycle.run(...)
        as logger`); then its `outcome`. The owner writes `started` as `job_started` first
        and the terminal event last; the rest report their failure and re-raise."""
        return JobRun(self, started)

    @contextlib.contextmanager
    def _running(self, started: Optional[Dict[str, Any]], ended: Callable[[Outcome], None]) -> Iterator[JobLogger]:
        since = utc_now()
        with contextlib.ExitStack() as stack:
            try:
                self._admit(stack)
            except JobError as error:
                if self.owner and self.rank is None:
                    # Said where the other nodes' `porter run`, waiting for it, look.
                    refuse_everywhere(self.paths, str(error), self.mirror)
                raise
            logger = JobLogger(
                job=self.job,
                events_path=self.paths.events_of(self.node.node_rank),
                rank=self.rank,
                node_rank=self.node.node_rank,
                sinks=self.sinks,
                # A resumed job's steps and epochs are not logged again.
                already_logged=logged_keys(self.history) if self.resuming else (),
                drops_file=None if self.owner else self._drops_file(),
                secrets=self.secrets,
                file_mode=self.file_mode,
                after_durable=self.mirror.push if self._uploads else None,
            )
            if self.rank is None:
                self._say_how_the_node_stands("running")
            try:
                if self.owner:
                    logger.log("job_started", {**(started or {}), "resumed": self.resuming})
                yield logger
            except BaseException as error:
                ended(self._uploaded(self._failed(logger, error, since)))
                raise
            ended(self._uploaded(self._end(logger, Outcome(EXIT_OK, "job_completed", {}), since)))

    def _admit(self, stack: contextlib.ExitStack) -> None:
        """Take the job: its lock (the owner), its history, whether it resumes; a rerun
        that may not run is refused here."""
        if self.owner:
            stack.enter_context(JobLock(self.paths))
        if self.mirror is not None and (self.owner or (self.rank is None and self.resuming)):
            self.mirror.pull(everything=self.resuming)  # the rerun check, or what to resume
        self.history = read_job_events(self.paths)
        if self.resume_if_possible and not self.resuming and can_resume(self.history):
            self.resuming = True
            if self.mirror is not None and self.rank is None:
                self.mirror.pull(everything=True)
        if self.owner:
            refuse_rerun(self.paths, self.history, self.resuming)

    def _uploaded(self, outcome: Outcome) -> Outcome:
        """Everything, after the terminal event: by each node's `porter run`, or by the
        owner of a job without one. A failure fails the outcome, for the caller to report."""
        if self._uploads and (self.rank is None or self.owner):
            try:
                self.mirror.push()
            except StorageError as error:
                return replace(outcome, exit_code=EXIT_FAILED, upload_error=str(error))
        return outcome

    def _failed(self, logger: JobLogger, error: BaseException, since: str) -> Outcome:
        operation = terminal_operation(error)
        data = self._first_failure(error, since) if self.owner else self._report(error)
        if operation == "job_cancelled":
            code = 128 + getattr(error, "signum", 2)  # KeyboardInterrupt: SIGINT
        elif isinstance(error, JobError) or data.get("error_type") in BAD_INPUT_ERRORS:
            code = EXIT_BAD_INPUT
        else:
            code = EXIT_FAILED
        return self._end(logger, Outcome(code, operation, data), since, killed=getattr(error, "killed", False))

    def _report(self, error: BaseException) -> Dict[str, Any]:
        """This process's error report, or the one a launcher's error points at (a
        worker killed from outside wrote none, so its launcher writes it)."""
        rank = getattr(error, "rank", None) if getattr(error, "killed", False) else self.rank
        return write_error_report(self.paths, rank, self.node.node_rank, error, self.secrets)

    def _first_failure(self, error: BaseException, since: str) -> Dict[str, Any]:
        """What the terminal event names: the signal that cancelled the job, or a worker
        killed from outside, then another node that was lost, never joined or had a
        worker killed, then the first error any process reported, then this one's. (A
        cancelled job's processes report errors as they stop, a peer's lost connection
        say: consequences, not the cause.)"""
        if isinstance(error, (JobCancelled, KeyboardInterrupt)) or getattr(error, "killed", False):
            return self._report(error)
        # Nodes say how they stand only under `porter run`, whose supervisor owns the job.
        nodes_report = self.rank is None and self.node.nnodes > 1
        if nodes_report and not isinstance(error, JobError):
            # A rendezvous that failed: the silent nodes never came; no need to wait.
            failed = self._failed_node(since, wait=not isinstance(error, RendezvousFailed))
            if failed:
                return failed
        return first_failure(self.paths, since) or self._report(error)

    def _failed_node(self, since: str, wait: bool) -> Optional[Dict[str, Any]]:
        """A node that never joined, or stopped without saying how, or whose process
        was killed, when the other nodes have had NODE_REPORT_GRACE_S to say. How a
        node ended before this run began is an earlier attempt's (a requeue's): that
        node has not joined this one. (Its "running" may be older: nodes wait at the
        rendezvous before node 0 starts.)"""
        deadline = time.monotonic() + (NODE_REPORT_GRACE_S if wait else 0)
        while True:
            if self.mirror is not None:
                with contextlib.suppress(StorageError):  # then what is here says
                    self.mirror.pull_reports()
            states = {
                node: state
                for node, state in node_states(self.paths).items()
                if state.get("state") == "running" or state.get("update_ts", "") >= since
            }
            others = range(1, self.node.nnodes)
            if all(states.get(n, {}).get("state") not in (None, "running") for n in others):
                break
            if time.monotonic() >= deadline:
                break
            time.sleep(0.5)
        for node in range(1, self.node.nnodes):
            state = states.get(node, {}).get("state")
            if state is None:
                return _node_failure(node, f"node {node} never joined the job")
            if state == "running":
                return _node_failure(
                    node,
                    f"node {node} was lost: its porter run stopped without saying how (killed, or its host went down)",
                )
        killed = [states[n]["failure"] for n in range(1, self.node.nnodes) if states[n].get("killed")]
        return killed[0] if killed else None

    def _end(self, logger: JobLogger, outcome: Outcome, since: str, killed: bool = False) -> Outcome:
        """The terminal event (the owner), the report, how this node stands: the outcome
        with whether the report was written."""
        if self.owner:
            logger.close(outcome.operation, outcome.data, sink_reports_since(self.paths.sink_drops, since))
            if self.report:
                written, problem = self._write_report()
                outcome = replace(outcome, report=written, report_error=problem)
        else:
            logger.close()
        if self.rank is None:
            self._say_how_the_node_stands(outcome.operation, outcome.data, killed)
        return outcome

    def _write_report(self) -> Tuple[bool, Optional[str]]:
        """report.html from the finished log: (written, why not). A report that cannot be
        made is a warning, never the job's failure."""
        from runtime.report import write_report

        try:
            write_report(read_job_events(self.paths), self.paths.report, self.paths.root, self.file_mode)
            return True, None
        except Exception as error:
            # Said on the console by `porter run` (its stderr is the output log now).
            problem = f"{self.paths.report} not written: {type(error).__name__}: {error}".splitlines()[0]
            print(f"porter: warning: {problem}", file=sys.stderr)
            return False, problem

    # -- nodes ----------------------------------------------------------------------

    def _say_how_the_node_stands(
        self, state: str, failure: Optional[Dict[str, Any]] = None, killed: bool = False
    ) -> None:
        write_node_state(self.paths, self.node.node_rank, state, failure, killed)
        if state == "running" and self.mirror is not None:
            self.mirror.push()  # the owner reads it from there; an unreachable root fails now

    def _drops_file(self):
        who = f"rank-{self.rank}" if self.rank is not None else f"node-{self.node.node_rank}"
        return self.paths.sink_drops / f"{who}-{os.getpid()}.json"


class JobRun:
    """One run of a job in this process (`Lifecycle.run`). Entered, it takes the job (a
    refusal raises JobError) and gives the job's log; when it ends, `outcome` says how.
    `outcome` stays None when the job was refused before it started."""

    def __init__(self, lifecycle: Lifecycle, started: Optional[Dict[str, Any]]) -> None:
        self.outcome: Optional[Outcome] = None
        self._running = lifecycle._running(started, self._ended)

    def _ended(self, outcome: Outcome) -> None:
        self.outcome = outcome

    def __enter__(self) -> JobLogger:
        return self._running.__enter__()

    def __exit__(self, *exception) -> Optional[bool]:
        return self._running.__exit__(*exception)


def _node_failure(node: int, message: str) -> Dict[str, Any]:
    return {"error_type": "NodeLost", "message": message, "gpu_rank": None, "node_rank": node, "traceback_file": None}


def refuse_rerun(paths: JobPaths, history: List[dict], resuming: bool) -> None:
    """A job id runs again only to resume, or when its last attempt left nothing."""
    operations = {event.get("operation") for event in history}
    if "job_completed" in operations:
        raise JobError(f"job {paths.root} already completed: use a new job id")
    if "weights" in operations and not resuming:
        raise JobError(
            f"job {paths.root} has checkpoints: --resume auto (or resume_from_checkpoint=True) continues it, "
            "or use a new job id"
        )


# -- node states ----------------------------------------------------------------------


def write_node_state(
    paths: JobPaths, node_rank: int, state: str, failure: Optional[Dict[str, Any]] = None, killed: bool = False
) -> None:
    """`nodes/node-N.json`: how node N's `porter run` stands (replaced whole, atomically):
    its state, and how it failed, if it did (`killed`: one of its processes was killed
    from outside, the likely cause of its peers' errors)."""
    target = paths.nodes / f"node-{node_rank}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "node_rank": node_rank,
        "state": state,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "update_ts": utc_now(),
    }
    if failure:
        record.update(failure=failure, killed=killed)
    write_atomically(target, json.dumps(record))


# Node 0's states after which the other nodes have nothing to wait for.
OWNER_ENDED = ("refused", "job_failed", "job_cancelled")


def refuse_everywhere(paths: JobPaths, reason: str, mirror: Optional[JobMirror] = None) -> None:
    """Node 0 refused the job: say so in its node state, where the other nodes' `porter
    run` look while they wait for it (runtime/launch.py, `_following_the_owner`)."""
    failure = {"error_type": "JobError", "message": reason, "gpu_rank": None, "node_rank": 0, "traceback_file": None}
    write_node_state(paths, 0, "refused", failure)
    if mirror is not None:
        with contextlib.suppress(StorageError):
            mirror.push()


def owner_ended(paths: JobPaths, since: str, mirror: Optional[JobMirror] = None) -> Optional[str]:
    """Why node 0 ended the job after `since` (refused it, failed, was cancelled), as
    its `porter run` said; None while it has not."""
    if mirror is not None:
        with contextlib.suppress(StorageError):
            mirror.pull_reports()
    state = node_states(paths).get(0)
    if state is None or state.get("state") not in OWNER_ENDED or state.get("update_ts", "") <= since:
        return None
    failure = state.get("failure") or {}
    verb = {"refused": "refused the job", "job_failed": "failed", "job_cancelled": "was cancelled"}[state["state"]]
    return f"node 0 {verb}: {failure.get('message') or state['state']}"


def node_states(paths: JobPaths) -> Dict[int, Dict[str, Any]]:
    """How each node's `porter run` stands, as it last said. (Not filtered by time: a
    node waits at the rendezvous for minutes before the owner starts.)"""
    states = {}
    for path in paths.nodes.glob("node-*.json") if paths.nodes.exists() else ():
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        states[int(record["node_rank"])] = record
    return states
