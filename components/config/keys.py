"""Keys of this project's namespace that the program does not read are refused, each with the nearest key it does
read and the commands that move the value there: the Pulumi CLI checks only the keys Pulumi.yaml declares, so
`minWorker 0` (for minWorkers) or `alertEmial` would otherwise be ignored without a word. A retired key gets its own
message. Other namespaces (`aws:`, `pulumi:`, other projects) are not this program's and are left alone."""

from __future__ import annotations

import json
import shlex
from collections.abc import Collection

import pulumi
from pulumi.runtime import config as runtime_config

from components.config.reader import NAMESPACE, Reader, full_key, nearest

# Keys the program once read: (problem, allowed, fix), as for any other bad key.
RETIRED: dict[str, tuple[str, str, str]] = {
    # The image's Prefect must be the client's that `pulumi up` manages the pool with.
    "prefectVersion": (
        "is no longer read: the worker image's Prefect is the version pinned in requirements.txt",
        "no value; to change Prefect, edit prefect==... in requirements.txt, run pulumi install, then pulumi up",
        f"pulumi config rm {NAMESPACE}:prefectVersion",
    ),
}


def given_keys() -> set[str]:
    """Every config key the program was given, as `namespace:key`.

    The SDK has no call that lists them, so this reads where they are kept. The CLI's Python language host passes
    the stack's whole config (Pulumi.yaml's declared defaults included) as JSON in PULUMI_CONFIG, and its exec shim
    loads it with `pulumi.runtime.set_all_config(get_config_env(), get_config_secret_keys_env())`
    (pulumi/pulumi, sdk/python/cmd/pulumi-language-python-exec); `set_all_config` stores the map in the
    ContextVar `pulumi.runtime.config.CONFIG`, which `get_config` reads first, then a PULUMI_CONFIG_<KEY>
    variable, then PULUMI_CONFIG (pulumi/runtime/config.py). The tests and devtools.check_config give config
    through `set_all_config` too. A PULUMI_CONFIG_<KEY> variable names its key only in a scrubbed form
    (`get_config_env_key`: upper case, ':' made '_'), so it cannot be listed and is left out."""
    return set(runtime_config.CONFIG.get()) | set(runtime_config.get_config_env())


def refuse_unread(r: Reader, known: Collection[str]) -> None:
    """A problem for each key of this project's namespace that is not in `known` (what the program read)."""
    choices = tuple(sorted(known))
    for full in sorted(given_keys()):
        namespace, _, key = full.partition(":")
        if namespace != NAMESPACE or key in known:
            continue
        if key in RETIRED:
            r.fail(key, *RETIRED[key])
            continue
        meant = nearest(key, choices)
        r.fail(
            key,
            f"is not a key this program reads, so its value would be ignored (the nearest key is {meant})",
            "the keys docs/configuration.md lists, as Pulumi.yaml declares them",
            _move_command(key, meant),
        )


def _move_command(key: str, meant: str) -> str:
    """The commands that move `key`'s value to `meant`, keeping its type; a secret's value stays out of the message
    (the CLI copies it, decrypted only in the shell) and stays a secret."""
    old, new = full_key(key), full_key(meant)
    if pulumi.runtime.is_config_secret(old):
        return f'pulumi config set --secret {new} "$(pulumi config get {old})" && pulumi config rm {old}'
    value = str(runtime_config.get_config(old))
    try:
        items = json.loads(value)
    except json.JSONDecodeError:
        items = None
    if isinstance(items, list):  # set with --path: one command per item keeps the array type
        sets = [f"pulumi config set --path '{new}[{i}]' {shlex.quote(str(item))}" for i, item in enumerate(items)]
        return " && ".join([f"pulumi config rm {old}", *sets])
    return f"pulumi config rm {old} && pulumi config set {new} {shlex.quote(value)}"
