"""Keyed pseudonyms for ids the lakehouse must not keep: HMAC-SHA-256 computed by Spark itself.

``hmac_sha256(value, key)`` = SHA-256((K ⊕ opad) ‖ SHA-256((K ⊕ ipad) ‖ value)) (RFC 2104) as
column expressions on binary values (no Python UDF: it runs in the executors' JVM and the same way
on Spark Connect). The same key gives the same pseudonym for the same id in every run; without the
key an id cannot be recovered or recomputed. The key comes from an environment variable
(:func:`key_from_environment`), never from the config file, and is masked in the log
(:mod:`~shopai_spark.secrets`). Its limit: the padded key is a literal of the Spark plan, so whoever
can read the running job's plans (Spark UI, event logs) can derive it.
"""

from __future__ import annotations

import hashlib
import os

from pyspark.sql import Column
from pyspark.sql import functions as F

from shopai_spark.secrets import remember

BLOCK_BYTES = 64          # SHA-256 block size
MIN_KEY_CHARACTERS = 16
PSEUDONYM_HEX = 32        # 128 bits of the digest


class PseudonymKeyError(ValueError):
    """The key's environment variable is unset or too short."""


def key_from_environment(variable: str) -> bytes:
    """The UTF-8 bytes of environment variable ``variable`` (at least MIN_KEY_CHARACTERS characters),
    remembered as a secret; raises PseudonymKeyError naming the variable otherwise."""
    value = os.environ.get(variable)
    if value is None or len(value) < MIN_KEY_CHARACTERS:
        state = "is not set" if value is None else f"is shorter than {MIN_KEY_CHARACTERS} characters"
        raise PseudonymKeyError(f"environment variable {variable} (the pseudonymisation key) {state}")
    remember(value)
    return value.encode("utf-8")


def hmac_sha256(value: Column, key: bytes) -> Column:
    """Hex HMAC-SHA-256 of the UTF-8 bytes of string column ``value`` under ``key`` (null stays null)."""
    if len(key) > BLOCK_BYTES:
        key = hashlib.sha256(key).digest()
    key = key.ljust(BLOCK_BYTES, b"\0")
    inner_pad = F.lit(bytes(b ^ 0x36 for b in key))
    outer_pad = F.lit(bytes(b ^ 0x5C for b in key))
    inner = F.unhex(F.sha2(F.concat(inner_pad, F.encode(value, "UTF-8")), 256))
    return F.sha2(F.concat(outer_pad, inner), 256)


def pseudonym(value: Column, key: bytes) -> Column:
    """The pseudonym of id column ``value``: ``P-`` + the first PSEUDONYM_HEX hex digits of its HMAC."""
    return F.when(value.isNotNull(), F.concat(F.lit("P-"), F.substring(hmac_sha256(value, key), 1, PSEUDONYM_HEX)))
