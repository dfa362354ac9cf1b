"""Secrets never leave the process: redacted from everything the job writes or sends.

A value is secret when its key looks secret (a word of it is `token`, `secret`,
`password`, `authorization`, `credential`, `signature`, or `api key`, in any case and
spelling: `hf_token`, `apiKey`, `X-Amz-Signature`; but not `tokenizer`) or sits under a
`headers` mapping, at any depth. Redaction keeps the key and writes `***`. The recipe
itself still gets the real values: only the copies that leave it are redacted (events,
the console, every sink, the config files in the job folder, torchtune's own config
dump and metric loggers). Text that may quote a secret (an error's message, a
traceback) is scrubbed of the secret values the config holds, and URLs lose their
passwords and secret-looking query values.
"""

from __future__ import annotations

import re
from itertools import pairwise
import urllib.parse
from typing import Any, Iterable, Set

REDACTED = "***"
# A key is secret when one of its words is one of these (`hf_token`, `HF_TOKEN`,
# `client_secret`, `X-Amz-Signature`), or two of its words make `api key` or `private
# key` (`api_key`, `apiKey`). Words, not substrings: `tokenizer` and `max_tokens` are
# configuration, not secrets.
_SECRET_WORDS = {
    "token",
    "secret",
    "password",
    "passwd",
    "authorization",
    "credential",
    "credentials",
    "signature",
    "apikey",
}
_SECRET_PAIRS = {("api", "key"), ("private", "key")}
_WORD = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
# Shorter values would scrub ordinary words out of messages.
_MIN_SCRUBBED = 6


def is_secret_key(key: Any) -> bool:
    if not isinstance(key, str):
        return False
    words = [word.lower() for word in _WORD.findall(key)]
    return any(word in _SECRET_WORDS for word in words) or any(pair in _SECRET_PAIRS for pair in pairwise(words))


def redact(value: Any, under_headers: bool = False) -> Any:
    """A copy of `value` (dicts, lists, OmegaConf containers) with every secret value
    replaced by `***`."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, dict):
        return {
            key: REDACTED
            if (under_headers or is_secret_key(key)) and item is not None
            else redact(item, _is_headers(key))
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [redact(item, under_headers) for item in value]
    if isinstance(value, str) and "://" in value:
        return redact_url(value)
    return value


def _is_headers(key: Any) -> bool:
    return isinstance(key, str) and key.lower() == "headers"


def secret_values(value: Any, under_headers: bool = False) -> Set[str]:
    """The secret strings `value` holds, to scrub from free text."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=True)
    found: Set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if (under_headers or is_secret_key(key)) and isinstance(item, str):
                found |= _parts(item)
            else:
                found |= secret_values(item, _is_headers(key))
    elif isinstance(value, (list, tuple)):
        for item in value:
            found |= secret_values(item, under_headers)
    return found


def _parts(secret: str) -> Set[str]:
    """The secret and, for `Bearer <token>`, the token alone."""
    parts = {secret, *secret.split()[1:]} if " " in secret else {secret}
    return {part for part in parts if len(part) >= _MIN_SCRUBBED}


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with each of `secrets` replaced by `***`, longest first."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def scrub_exception(error: BaseException, secrets: Iterable[str]) -> None:
    """Scrub `secrets` from the messages of `error` and of the errors it was raised from,
    in place: the same exceptions go on up to the caller (a team's launcher handles them
    by type) and print without the secrets when nothing handles them."""
    secrets = tuple(secrets)
    seen: Set[int] = set()
    while error is not None and id(error) not in seen and secrets:
        seen.add(id(error))
        error.args = tuple(scrub(arg, secrets) if isinstance(arg, str) else arg for arg in error.args)
        if isinstance(error, OSError):  # its message is made of these when it has an errno
            for name in ("strerror", "filename", "filename2"):
                if isinstance(getattr(error, name), str):
                    setattr(error, name, scrub(getattr(error, name), secrets))
        error = error.__cause__ or error.__context__


def redact_url(url: str) -> str:
    """`url` without its password and with secret-looking query values redacted."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return url
    if not parts.scheme or not parts.netloc:
        return url
    netloc = parts.netloc
    if parts.password is not None:
        netloc = f"{parts.username}:{REDACTED}@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    query = urllib.parse.urlencode(
        [
            (key, REDACTED if is_secret_key(key) else item)
            for key, item in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        ],
        safe="*",
    )
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def keep_secrets_out_of_torchtune() -> None:
    """torchtune logs the whole config (`config.log_config`, at INFO) and its metric
    loggers save it beside the checkpoints and send it to their services
    (`log_config`): from now on they get redacted copies. The recipe's own config keeps
    the real values."""
    import torchtune.config
    import torchtune.config._utils
    from omegaconf import OmegaConf
    from torchtune.training import metric_logging

    if getattr(torchtune.config, "_porter_redacts", False):
        return
    dump = torchtune.config.log_config

    def log_config(recipe_name: str, cfg: Any) -> None:
        dump(recipe_name, OmegaConf.create(redact(cfg)))

    torchtune.config.log_config = torchtune.config._utils.log_config = log_config
    for cls in vars(metric_logging).values():
        if isinstance(cls, type) and "log_config" in vars(cls):
            cls.log_config = _redacting(cls.log_config)
    torchtune.config._porter_redacts = True


def _redacting(log_config):
    def redacted(self, config: Any) -> None:
        from omegaconf import OmegaConf

        log_config(self, OmegaConf.create(redact(config)))

    return redacted
