"""Secrets in the configuration: taken from the environment, masked wherever config is shown.

A config value (in the YAML file or a ``--set`` override) may name environment variables:
``${NAME}`` is replaced by the variable's value when the config is read (:func:`from_environment`;
an unset variable is a :class:`~shopai_spark.config.ConfigError` naming the key), so a key or a
password never has to be written into a config file. Three kinds of values are secrets:

* every value that came from the environment;
* the value of a key that looks secret (:data:`SECRET_KEY` anywhere in the dotted key, such as
  ``spark.conf.fs.s3a.secret.key``: ``secret``, ``password``, ``token``, ``credential``,
  ``access.key``, ...);
* the password of a URI (``scheme://user:password@host``).

:func:`redact_params` masks them as ``***`` before config becomes MLflow params; :func:`mask` and
:class:`RedactingFilter` mask every secret seen so far in log lines. The limit: lines the Spark JVM
writes to the log file itself bypass Python logging (Spark masks keys matching its own
``spark.redaction.regex`` there).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from typing import Any

MASK = "***"
ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
SECRET_KEY = re.compile(r"secret|password|passwd|token|credential|private|api[._-]?key|access[._-]?key|"
                        r"sas[._-]?key|connection[._-]?string", re.IGNORECASE)
URI_PASSWORD = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^/:@\s]*:)(?P<password>[^@/\s]+)(?=@)", re.IGNORECASE)

_known: set[str] = set()


class UnsetVariableError(KeyError):
    """``${NAME}`` names a variable that is not set; carries the dotted key and the name."""

    def __init__(self, key: str, name: str):
        super().__init__(f"{key}: environment variable {name} is not set (the config takes it from ${{{name}}})")
        self.key, self.name = key, name

    def __str__(self) -> str:
        return self.args[0]


def remember(value: str) -> None:
    """Mask ``value`` in every later :func:`mask` (values shorter than 4 characters are ignored:
    masking them would mangle ordinary text)."""
    if len(value) >= 4:
        _known.add(value)


def from_environment(data: Any, key: str = "") -> Any:
    """``data`` (a raw config mapping, list or scalar) with every ``${NAME}`` in a string replaced by
    the environment variable's value; the values taken are remembered as secrets, and so are the
    values of keys that look secret. Raises UnsetVariableError for an unset variable."""
    if isinstance(data, Mapping):
        return {k: from_environment(v, f"{key}.{k}" if key else str(k)) for k, v in data.items()}
    if isinstance(data, list):
        return [from_environment(v, f"{key}[{i}]") for i, v in enumerate(data)]
    if not isinstance(data, str):
        return data

    def value_of(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise UnsetVariableError(key, name)
        remember(os.environ[name])
        return os.environ[name]

    resolved = ENV_REFERENCE.sub(value_of, data)
    if SECRET_KEY.search(key):
        remember(resolved)
    return resolved


def mask(text: str) -> str:
    """``text`` with URI passwords and every remembered secret replaced by ``***``."""
    text = URI_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
    for secret in sorted(_known, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def redact_params(params: Mapping[str, str]) -> dict[str, str]:
    """Config params (dotted key → value) fit for MLflow: secret-looking keys' values replaced by
    ``***``, secrets inside other values masked (:func:`mask`)."""
    return {key: MASK if SECRET_KEY.search(key) and value not in ("", "None") else mask(value)
            for key, value in params.items()}


class RedactingFilter(logging.Filter):
    """A handler filter that masks secrets in the formatted message of every record it passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask(message)
        if masked != message:
            record.msg, record.args = masked, ()
        return True
