"""What every concern's validation shares: the reader that collects one message per bad key, and the
`pulumi config set` fix each message ends with. Messages only accumulate here; `load_config` raises them
as one ConfigError."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable
from typing import Any

import pulumi

NAMESPACE = "prefect-fargate"

UUID_TEXT = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
UUID = re.compile(rf"^{UUID_TEXT}$")
AWS_ID = {prefix: re.compile(rf"^{prefix}-[0-9a-f]{{8}}([0-9a-f]{{9}})?$") for prefix in ("vpc", "subnet", "sg")}


class ConfigError(pulumi.RunError):
    """Invalid stack configuration; RunError makes Pulumi print the message without a traceback."""


def nearest(typed: str, allowed: tuple[str, ...]) -> str:
    """The allowed value closest to what was typed (difflib's ratio, ignoring case), for the fix."""
    return max(allowed, key=lambda value: difflib.SequenceMatcher(None, typed.lower(), value.lower()).ratio())


def full_key(key: str) -> str:
    """`key` as the CLI names it: this project's keys get the namespace, another's (`aws:region`) is given whole."""
    return key if ":" in key else f"{NAMESPACE}:{key}"


def set_command(key: str, example: str, *, secret: bool = False) -> str:
    """The exact command that sets `key`; lists use --path so the value keeps its array type."""
    flag = "--secret " if secret else ""
    return f"pulumi config set {flag}{full_key(key)} {example}"


class Reader:
    """Reads raw config strings and collects one message per bad key; remembers which of this project's keys it
    was asked for, so that a key nobody reads is refused (components/config/keys.py)."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.read: set[str] = set()

    def raw(self, key: str) -> str | None:
        self.read.add(key)
        value = pulumi.runtime.get_config(f"{NAMESPACE}:{key}")
        return None if value in (None, "") else str(value)

    def fail(self, key: str, problem: str, allowed: str, fix: str) -> None:
        self.errors.append(f"{full_key(key)}: {problem}. Allowed: {allowed}. Fix: {fix}")

    def string(self, key: str, default: str, check: Callable[[str], bool], allowed: str, example: str) -> str:
        value = self.raw(key)
        if value is None:
            return default
        if not check(value):
            self.fail(key, f"{value!r} is not valid", allowed, set_command(key, example))
            return default
        return value

    def integer(self, key: str, default: int, allowed: str, example: str) -> int:
        value = self.raw(key)
        if value is None:
            return default
        try:
            return int(value)
        except ValueError:
            self.fail(key, f"{value!r} is not a whole number", allowed, set_command(key, example))
            return default

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw(key)
        if value is None:
            return default
        if value.lower() in ("true", "false"):
            return value.lower() == "true"
        self.fail(key, f"{value!r} is not a boolean", "true or false", set_command(key, str(default).lower()))
        return default

    def id_list(self, key: str, prefix: str) -> tuple[str, ...]:
        """A list of AWS ids, set with `--path 'key[0]'` (the CLI hands the program a JSON array; Pulumi.yaml's
        `type: array` makes the CLI refuse anything else, a comma-separated string included)."""
        value = self.raw(key)
        if value is None:
            return ()
        example = f"{prefix}-0123456789abcdef0"
        fix = f"pulumi config set --path '{NAMESPACE}:{key}[0]' {example}"
        try:
            parsed: Any = json.loads(value)
        except json.JSONDecodeError:  # only with --skip-config-validation: shown as the bad value it is
            parsed = value
        items = parsed if isinstance(parsed, list) else [parsed]
        bad = [item for item in items if not (isinstance(item, str) and AWS_ID[prefix].match(item))]
        if bad:
            self.fail(key, f"{bad!r} are not {prefix} ids", f"a list of {prefix}-... ids", fix)
            return ()
        return tuple(items)


def read_bounded(r: Reader, key: str, default: int, low: int, high: int, allowed: str) -> int:
    """A whole number from `low` to `high`; one out of range is a problem (its fix: the default) and is
    returned as read, so later checks see what was given."""
    value = r.integer(key, default, allowed, str(default))
    if not low <= value <= high:
        r.fail(key, f"{value} is out of range", allowed, set_command(key, str(default)))
    return value


def read_minutes(r: Reader, key: str, default: int, low: int, high: int) -> int:
    """A whole number of minutes from `low` to `high` (lateRunMinutes, scaleLeadMinutes)."""
    return read_bounded(r, key, default, low, high, f"{low} to {high} minutes")
