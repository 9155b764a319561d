"""The Prefect API the stack talks to and how it authenticates: prefectApiUrl or the Prefect Cloud
account/workspace ids, and the one credential rule (prefectApiKey or prefectApiAuthString, a Pulumi secret
whose value never appears in a message)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlparse

import pulumi

from components.config.reader import NAMESPACE, UUID, UUID_TEXT, Reader, set_command

PREFECT_CLOUD_API = "https://api.prefect.cloud/api"
PREFECT_CLOUD_DOMAIN = "prefect.cloud"

# A Prefect Cloud API URL, and the UI URL people paste instead (app.prefect.cloud/account/<a>/workspace/<w>/...).
_CLOUD_API_PATH = re.compile(rf"^/api/accounts/{UUID_TEXT}/workspaces/{UUID_TEXT}$", re.IGNORECASE)
_CLOUD_UI_PATH = re.compile(rf"^/account/(?P<account>{UUID_TEXT})/workspace/(?P<workspace>{UUID_TEXT})(/|$)", re.I)
# The ids in any Prefect Cloud URL, the UI's (/account/<a>/workspace/<w>) or the API's (/accounts/<a>/workspaces/<w>).
_CLOUD_URL_IDS = {
    "prefectAccountId": re.compile(rf"/accounts?/({UUID_TEXT})(/|$)", re.I),
    "prefectWorkspaceId": re.compile(rf"/workspaces?/({UUID_TEXT})(/|$)", re.I),
}

# The two ways a client authenticates to the Prefect API: config key -> the client's environment variable.
CREDENTIAL_ENV = {"prefectApiKey": "PREFECT_API_KEY", "prefectApiAuthString": "PREFECT_API_AUTH_STRING"}


@dataclass(frozen=True, kw_only=True)
class PrefectCredential:
    """What clients send the Prefect API: an API key, or a self-hosted server's basic-auth string."""

    config_key: str  # prefectApiKey or prefectApiAuthString, for messages
    env_name: str  # PREFECT_API_KEY or PREFECT_API_AUTH_STRING, as Prefect's clients read it
    value: pulumi.Output[str]  # a Pulumi secret


def read_api_url(r: Reader) -> tuple[str, bool]:
    """The API URL from exactly one of: prefectAccountId + prefectWorkspaceId (Prefect Cloud), or
    prefectApiUrl; and whether the stack points at Prefect Cloud (which needs a key). A prefectApiUrl
    that is not Cloud's counts as self-hosted even when it is refused, so its one error is the URL's."""
    account, workspace, url = r.raw("prefectAccountId"), r.raw("prefectWorkspaceId"), r.raw("prefectApiUrl")
    uuid_fix = "a UUID from your Prefect Cloud URL (app.prefect.cloud/account/<account>/workspace/<workspace>)"
    if url is not None and (account or workspace):
        r.fail(
            "prefectApiUrl",
            "is set together with prefectAccountId/prefectWorkspaceId",
            "either prefectApiUrl or the two Prefect Cloud ids, not both",
            f"pulumi config rm {NAMESPACE}:prefectApiUrl  (or remove the ids)",
        )
        return "", False
    if url is not None:
        return _checked_api_url(r, url)
    # A Prefect Cloud URL pasted into either key: its ids are the fix, for both keys.
    pasted = {
        key: found[1].lower()
        for key, pattern in _CLOUD_URL_IDS.items()
        for value in (account, workspace)
        if value is not None and (found := pattern.search(urlparse(value).path))
    }
    for key, value in (("prefectAccountId", account), ("prefectWorkspaceId", workspace)):
        if value is None:
            r.fail(
                key,
                "is not set (and prefectApiUrl is not set either)",
                f"{uuid_fix}; or set prefectApiUrl instead",
                set_command(key, pasted.get(key, "<uuid>")),
            )
        elif not UUID.match(value.lower()):
            problem = "is a Prefect Cloud URL, not the id in it" if key in pasted and "/" in value else "is not a UUID"
            r.fail(key, f"{value!r} {problem}", uuid_fix, set_command(key, pasted.get(key, "<uuid>")))
    if account and workspace:
        return f"{PREFECT_CLOUD_API}/accounts/{account.lower()}/workspaces/{workspace.lower()}", True
    return "", True


def _checked_api_url(r: Reader, url: str) -> tuple[str, bool]:
    """prefectApiUrl, without a trailing '/', if it is a Prefect API's: a Prefect Cloud workspace's
    (/api/accounts/<uuid>/workspaces/<uuid>) or a self-hosted server's (a path ending in /api); and
    whether it is Prefect Cloud's."""
    parsed = urlparse(url)
    path = parsed.path.rstrip("/")
    host = (parsed.hostname or "").lower()
    cloud = host == PREFECT_CLOUD_DOMAIN or host.endswith(f".{PREFECT_CLOUD_DOMAIN}")
    ui = _CLOUD_UI_PATH.match(parsed.path) if cloud else None
    if ui:
        ids = (("prefectAccountId", ui["account"].lower()), ("prefectWorkspaceId", ui["workspace"].lower()))
        r.fail(
            "prefectApiUrl",
            f"{url!r} is the Prefect Cloud UI's address, not the API's",
            "the ids in it, from which the API URL is built",
            " && ".join([f"pulumi config rm {NAMESPACE}:prefectApiUrl", *(set_command(k, v) for k, v in ids)]),
        )
        return "", cloud
    valid_path = _CLOUD_API_PATH.match(path) if cloud else path.rsplit("/", 1)[-1] == "api"
    if parsed.scheme not in ("http", "https") or not host or parsed.query or parsed.fragment or not valid_path:
        if cloud:
            fix = (
                f"pulumi config rm {NAMESPACE}:prefectApiUrl && {set_command('prefectAccountId', '<uuid>')} "
                f"&& {set_command('prefectWorkspaceId', '<uuid>')}"
            )
            allowed = f"for Prefect Cloud, {PREFECT_CLOUD_API}/accounts/<uuid>/workspaces/<uuid>, or the two ids"
        else:
            scheme = parsed.scheme if parsed.scheme in ("http", "https") else "https"
            fix = set_command("prefectApiUrl", f"{scheme}://{parsed.netloc or 'prefect.example.com'}/api")
            allowed = "the http(s) URL of a Prefect server's API, its path ending in /api"
        r.fail("prefectApiUrl", f"{url!r} is not a Prefect API URL", allowed, fix)
        return "", cloud
    return url.rstrip("/"), cloud


def read_credential(r: Reader, cloud: bool) -> PrefectCredential | None:
    """How clients authenticate to the Prefect API, the one rule (None: no credential):
    - Prefect Cloud: prefectApiKey, required;
    - a self-hosted server with basic auth (`PREFECT_SERVER_API_AUTH_STRING`): prefectApiAuthString;
    - a self-hosted server that checks a key: prefectApiKey;
    - a self-hosted server without authentication: nothing (load_config warns that its API is then
      open to anything that reaches it).
    Never both; either one a Pulumi secret. A value never appears in a message.
    """
    given = {key: r.raw(key) for key in CREDENTIAL_ENV}
    key_fix = credential_fix("prefectApiKey")
    if cloud and given["prefectApiAuthString"] is not None:
        r.fail(
            "prefectApiAuthString",
            "is set but the API is Prefect Cloud's, which takes an API key, not a basic-auth string",
            "prefectApiAuthString only with a self-hosted prefectApiUrl",
            f"pulumi config rm {NAMESPACE}:prefectApiAuthString"
            + ("" if given["prefectApiKey"] is not None else f" && {key_fix}"),
        )
        return None
    set_keys = [key for key, value in given.items() if value is not None]
    if len(set_keys) > 1:
        r.fail(
            "prefectApiAuthString",
            "is set together with prefectApiKey (values not shown)",
            "one credential: prefectApiKey (Prefect Cloud, or a server that checks a key) or "
            "prefectApiAuthString (a self-hosted server's PREFECT_SERVER_API_AUTH_STRING)",
            f"pulumi config rm {NAMESPACE}:prefectApiKey  (or: pulumi config rm {NAMESPACE}:prefectApiAuthString)",
        )
        return None
    if not set_keys:
        if cloud:
            r.fail(
                "prefectApiKey",
                "is not set",
                "a Prefect API key stored as a Pulumi secret (Prefect Cloud needs one; only a self-hosted "
                "prefectApiUrl may go without)",
                key_fix,
            )
        return None
    (key,) = set_keys
    value = given[key]
    assert value is not None
    fix = credential_fix(key)
    if not pulumi.runtime.is_config_secret(f"{NAMESPACE}:{key}"):
        r.fail(
            key,
            "is stored in plaintext in the stack file",
            "a Pulumi secret only",
            f"{fix}  (this re-stores it encrypted)",
        )
    elif key == "prefectApiKey" and any(ch.isspace() for ch in value):
        r.fail(key, "contains whitespace (value not shown)", "the key exactly as Prefect shows it", fix)
    elif value != value.strip():  # a password may hold spaces, but not a pasted newline at either end
        r.fail(
            key,
            "starts or ends with whitespace (value not shown)",
            "user:password exactly as the server's PREFECT_SERVER_API_AUTH_STRING",
            fix,
        )
    return PrefectCredential(config_key=key, env_name=CREDENTIAL_ENV[key], value=pulumi.Output.secret(value))


def credential_fix(key: str) -> str:
    example = "<your-prefect-api-key>" if key == "prefectApiKey" else "'<user>:<password>'"
    return set_command(key, example, secret=True)
