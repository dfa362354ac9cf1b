"""Secrets: redacted by key wherever config leaves the job, scrubbed by value from text."""

from __future__ import annotations

from omegaconf import OmegaConf

from runtime.secrets import redact, redact_url, scrub, secret_values

CONFIG = OmegaConf.create(
    {
        "metric_logger": {"_component_": "x.WandBLogger", "api_key": "wandb-key-123", "project": "p"},
        "extra": {"hf_token": "hf_abcdef", "HF_TOKEN_FILE": None},
        "porter": {
            "webhook": {"url": "https://h/e", "headers": {"Authorization": "Bearer tok-987654", "X-Team": "ml-7"}}
        },
        "db": {"Password": "hunter22", "user": "me"},
        "lr": 1e-3,
        "tokenizer": {
            "_component_": "torchtune.models.llama3.llama3_tokenizer",
            "path": "/models/tokenizer.model",
            "max_seq_len": 512,
        },
        "generation": {"max_tokens": 128, "apiKey": "camel-key-42", "HF_TOKEN": "upper-token-77"},
        "servers": [{"client_secret": "shh-secret", "name": "a"}],
    }
)


def test_secret_values_are_redacted_by_key_at_any_depth_and_the_rest_is_kept():
    redacted = redact(CONFIG)
    assert redacted["metric_logger"] == {"_component_": "x.WandBLogger", "api_key": "***", "project": "p"}
    assert redacted["extra"] == {"hf_token": "***", "HF_TOKEN_FILE": None}
    assert redacted["porter"]["webhook"]["headers"] == {"Authorization": "***", "X-Team": "***"}
    assert redacted["db"] == {"Password": "***", "user": "me"}
    assert redacted["servers"] == [{"client_secret": "***", "name": "a"}]
    assert redacted["lr"] == 1e-3
    assert redacted["tokenizer"] == CONFIG.tokenizer  # a word of the key, not a part of one
    assert redacted["generation"] == {"max_tokens": 128, "apiKey": "***", "HF_TOKEN": "***"}
    assert CONFIG.metric_logger.api_key == "wandb-key-123"  # the recipe keeps the real values


def test_secret_values_are_scrubbed_from_text_bearer_tokens_too():
    secrets = secret_values(CONFIG)
    assert {"wandb-key-123", "hf_abcdef", "Bearer tok-987654", "tok-987654", "hunter22", "shh-secret"} <= secrets
    text = "401 from https://h/e with Authorization tok-987654; wandb said wandb-key-123 is bad"
    assert scrub(text, secrets) == "401 from https://h/e with Authorization ***; wandb said *** is bad"


def test_urls_lose_their_passwords_and_secret_query_values():
    assert redact_url("https://user:pa55word@host:8443/data.jsonl") == "https://user:***@host:8443/data.jsonl"
    assert redact_url("https://b.s3.amazonaws.com/k?X-Amz-Credential=AKIA&X-Amz-Signature=abc&part=1") == (
        "https://b.s3.amazonaws.com/k?X-Amz-Credential=***&X-Amz-Signature=***&part=1"
    )
    assert redact_url("s3://bucket/data.jsonl") == "s3://bucket/data.jsonl"
    assert redact({"dataset": "https://u:p@h/d"}) == {"dataset": "https://u:***@h/d"}


def test_an_error_report_scrubs_the_secrets_from_its_message_and_traceback(tmp_path):
    from runtime.error_reports import write_error_report
    from runtime.job import JobPaths

    paths = JobPaths.for_job(tmp_path, "u", "j").create(0o700)
    try:
        raise PermissionError("wandb refused key wandb-key-123 for project p")
    except PermissionError as error:
        data = write_error_report(paths, 0, 0, error, secret_values(CONFIG))
    assert data["message"] == "wandb refused key *** for project p"
    report = (paths.root / data["traceback_file"]).read_text()
    assert "wandb-key-123" not in report and "refused key ***" in report


def test_an_error_leaves_with_the_secrets_scrubbed_from_its_message_and_its_causes():
    from runtime.secrets import scrub_exception

    try:
        try:
            raise OSError(13, "wandb refused key wandb-key-123", "/keys/hf_abcdef")
        except OSError as cause:
            raise PermissionError("tracker: wandb-key-123 rejected", 401) from cause
    except PermissionError as error:
        scrub_exception(error, secret_values(CONFIG))
        assert type(error) is PermissionError and error.args == ("tracker: *** rejected", 401)
        assert str(error.__cause__) == "[Errno 13] wandb refused key ***: '/keys/***'"
