"""Remote output roots and datasets, against real servers on 127.0.0.1: moto's S3 API
(started and stopped by the fixture, reached through s3fs) and a plain HTTP server."""

from __future__ import annotations

import functools
import http.server
import json
import socket
import threading
import time

import pytest

from conftest import JOB_ENV, run_porter

pytest.importorskip("s3fs", reason="s3fs is a test dependency (pip install -e '.[test]')")
moto_server = pytest.importorskip("moto.server", reason="moto is a test dependency (pip install -e '.[test]')")

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class S3:
    """moto's S3 server on 127.0.0.1, and the environment that points fsspec at it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        self.env = {**CREDENTIALS, "FSSPEC_S3_ENDPOINT_URL": f"http://127.0.0.1:{self.port}"}
        self.fs = self.filesystem()

    def filesystem(self):
        import s3fs

        return s3fs.S3FileSystem(
            key="testing", secret="testing", endpoint_url=self.env["FSSPEC_S3_ENDPOINT_URL"], skip_instance_cache=True
        )

    def stop(self) -> None:
        self.server.stop()

    def events(self, url: str) -> list:
        return [json.loads(line) for line in self.fs.cat(url).decode().splitlines()]


@pytest.fixture(scope="module")
def s3(demo):
    server = S3()
    server.fs.mkdir("runs")
    server.fs.mkdir("data")
    server.fs.put_file(str(demo.data / "chat.jsonl"), "data/chat.jsonl")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def remote_runs(s3, demo, generated, tmp_path_factory):
    """`porter run` with an S3 output root and a staging folder of the test's."""
    staging = tmp_path_factory.mktemp("staging")

    def run(
        job_id: str, *args: str, server: S3 = s3, recipe: str = "full_finetune_single_device", timeout: float = 300
    ):
        done = run_porter(
            "run",
            recipe,
            "--config",
            demo.config(recipe),
            "--job-id",
            job_id,
            "--user-id",
            "tester",
            "--output-root",
            "s3://runs/jobs",
            "--recipes-dir",
            generated,
            "--no-console",
            *args,
            env={**JOB_ENV, **server.env, "PORTER_STAGING_DIR": str(staging)},
            timeout=timeout,
        )
        return done

    run.staging = staging
    return run


def test_a_job_uploads_its_folder_and_reads_its_dataset_from_the_bucket(s3, remote_runs):
    done = remote_runs("uploaded", "--dataset", "s3://data/chat.jsonl", "epochs=1")
    assert done.returncode == 0, done.stderr[-3000:]
    remote = "runs/jobs/tester/uploaded"
    events = s3.events(f"{remote}/events.jsonl")
    assert [e["operation"] for e in events][0] == "job_started" and events[-1]["operation"] == "job_completed"
    assert events[0]["data"]["dataset"] == "s3://data/chat.jsonl"
    final = [e["data"] for e in events if e["operation"] == "weights" and e["data"]["kind"] == "final"][0]
    for name in final["files"]:
        assert s3.fs.size(f"{remote}/{name}") > 0, name
    assert s3.fs.exists(f"{remote}/config.yaml") and s3.fs.exists(f"{remote}/dataset/records.jsonl")
    assert not s3.fs.exists(f"{remote}/.lock") and not s3.fs.exists(f"{remote}/.uploaded.json")
    # Everything reached the bucket, so nothing is left on local disk.
    assert not (remote_runs.staging / "s3" / "runs" / "jobs" / "tester" / "uploaded").exists()
    assert "events:  s3://runs/jobs/tester/uploaded/events.jsonl" in done.stdout


def test_a_job_resumes_from_the_bucket(s3, remote_runs):
    crashed = remote_runs(
        "resumed", "epochs=2", "metric_logger._component_=helpers.faults.FailingLogger", "metric_logger.fail_at_step=15"
    )
    assert crashed.returncode == 1, crashed.stderr[-3000:]
    staging = remote_runs.staging / "s3" / "runs" / "jobs" / "tester" / "resumed"
    assert not staging.exists()  # uploaded, then removed: the resume must read the bucket
    resumed = remote_runs("resumed", "epochs=2", "resume_from_checkpoint=True")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    events = s3.events("runs/jobs/tester/resumed/events.jsonl")
    assert [e["data"]["resumed"] for e in events if e["operation"] == "job_started"] == [False, True]
    assert [e["operation"] for e in events][-1] == "job_completed"
    assert [e["data"]["epoch_num"] for e in events if e["operation"] == "epoch"] == [1, 2]
    steps = [e["data"]["step_num"] for e in events if e["operation"] == "step"]
    assert steps == list(range(1, 21)), "no step lost or logged twice"


def test_an_unreachable_bucket_mid_job_fails_it_and_keeps_every_file_locally(demo, generated, remote_runs):
    server = S3()  # a second endpoint to the same buckets (moto's are per process)
    holder = {}
    try:

        def stop_after_the_first_upload():
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                try:
                    if b'"operation":"epoch"' in server.filesystem().cat("runs/jobs/tester/cut-off/events.jsonl"):
                        break
                except FileNotFoundError:
                    pass
                time.sleep(0.2)
            server.stop()
            holder["stopped"] = True

        stopper = threading.Thread(target=stop_after_the_first_upload, daemon=True)
        stopper.start()
        done = remote_runs("cut-off", "epochs=4", server=server)
        stopper.join(timeout=60)
    finally:
        if not holder.get("stopped"):
            server.stop()
    assert done.returncode == 1, done.stderr[-3000:]
    staging = remote_runs.staging / "s3" / "runs" / "jobs" / "tester" / "cut-off"
    lines = [json.loads(line) for line in (staging / "events.jsonl").read_text().splitlines()]
    assert lines[-1]["operation"] == "job_failed"
    assert lines[-1]["data"]["error_type"] == "StorageError"
    assert lines[-1]["data"]["message"].startswith("output_root s3://runs/jobs/tester/cut-off: upload failed:")
    assert [e["data"]["epoch_num"] for e in lines if e["operation"] == "epoch"][0] == 1
    assert any(path.name.endswith(".safetensors") for path in (staging / "checkpoints").rglob("*"))
    assert f"the job's files are kept in {staging}" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "root, message",
    [
        ("foo://bucket/runs", "porter: error: output_root foo://bucket/runs: unknown storage scheme foo://"),
        (
            "gs://bucket/runs",
            "porter: error: output_root gs://bucket/runs: gs:// needs a package that is not installed: ",
        ),
    ],
)
def test_an_unknown_scheme_or_a_missing_backend_is_one_line_and_exit_2(root, message, demo, generated, tmp_path):
    pytest.importorskip("fsspec")
    if root.startswith("gs://"):
        try:
            import gcsfs  # noqa: F401
        except ImportError:
            pass
        else:
            pytest.skip("gcsfs is installed here")
    done = run_porter(
        "run",
        "lora_finetune_single_device",
        "--config",
        demo.config("lora_finetune_single_device"),
        "--job-id",
        "j",
        "--user-id",
        "u",
        "--output-root",
        root,
        "--recipes-dir",
        generated,
        env={"PORTER_STAGING_DIR": str(tmp_path / "staging")},
    )
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "staging").exists()  # and no local folder named after the URL
    assert not any(path.name in ("foo:", "gs:") for path in tmp_path.iterdir())


class _Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def http_files(tmp_path):
    """A plain HTTP server on 127.0.0.1 serving `tmp_path / "www"`."""
    folder = tmp_path / "www"
    folder.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Files, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_dataset_is_read_over_http_with_its_line_numbers(http_files, demo, tmp_path):
    from runtime.datasets import Dataset, DatasetError

    folder, url = http_files
    (folder / "chat.jsonl").write_bytes((demo.data / "chat.jsonl").read_bytes())
    dataset = Dataset.fetch(f"{url}/chat.jsonl", tmp_path / "job")
    assert dataset.kind == "chat" and dataset.size == len((demo.data / "chat.jsonl").read_text().splitlines())
    lines = (demo.data / "chat.jsonl").read_text().splitlines()
    (folder / "bad.jsonl").write_text("\n".join([lines[0], lines[1], '{"messages": [}']) + "\n")
    with pytest.raises(DatasetError, match=rf"^{url}/bad.jsonl:3: malformed JSON"):
        Dataset.fetch(f"{url}/bad.jsonl", tmp_path / "job2")
    (folder / "long.jsonl").write_text(lines[0] + "\n" + "x" * (1 << 20 | 1) + "\n")
    with pytest.raises(DatasetError, match=rf"^{url}/long.jsonl:2: line longer than 1 MiB"):
        Dataset.fetch(f"{url}/long.jsonl", tmp_path / "job3")
