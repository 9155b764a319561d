"""The controller's Prefect REST client: the standard library's urllib, nothing else.

Why not httpx: the Lambda runtime has boto3 but not httpx, and bundling httpx means shipping seven
packages (httpx, httpcore, h11, anyio, sniffio, idna, certifi) into the zip and proving they import on
the runtime's Python; the controller makes a handful of requests a minute, which needs neither
connection pooling nor HTTP/2. Each endpoint is cited from prefect/server/api/*.py (Prefect 3.9.1); a
Prefect Cloud workspace URL serves the same paths under /api/accounts/<a>/workspaces/<w>.

Read-only calls only, plus the one write, `set_state`. Never `POST /work_pools/{name}/get_scheduled_flow_runs`:
it counts as a worker poll and would mark the pool READY (prefect/server/api/workers.py).
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

TIMEOUT_SECONDS = 10  # per request; the function's whole run stays under its 50 s timeout
PAGE = 200  # PREFECT_API_DEFAULT_LIMIT, the most /flow_runs/filter returns at once
EVENTS_PAGE = 50  # INTERACTIVE_PAGE_SIZE, the most /events/filter returns (prefect/server/api/events.py)


class PrefectError(Exception):
    """A Prefect call failed: one line with the method, path and status, never the credential."""


def auth_header(credential: str | None, kind: str) -> dict[str, str]:
    """What Prefect's own client sends (prefect/client/orchestration/__init__.py, get_client): an auth string
    as `Basic base64(user:pass)`, an API key as `Bearer <key>`; nothing for a server without authentication."""
    if not credential:
        return {}
    if kind == "PREFECT_API_AUTH_STRING":
        return {"Authorization": "Basic " + base64.b64encode(credential.encode()).decode()}
    return {"Authorization": f"Bearer {credential}"}


def pool_filter(pool: str) -> dict[str, Any]:
    """The body part that limits `/flow_runs/filter` and `/flow_runs/count` to one work pool (schemas/filters.py,
    WorkPoolFilterName)."""
    return {"work_pools": {"name": {"any_": [pool]}}}


Opener = Callable[[urllib.request.Request, float], Any]


def _open(request: urllib.request.Request, timeout: float) -> Any:
    if request.type not in ("http", "https"):  # the API URL is validated by config/prefect.py; a next-page link is not
        raise PrefectError(f"Prefect API: refusing a {request.type}: URL")
    return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (http(s) only, checked above)


class PrefectRest:
    """JSON over HTTP to one Prefect API; `opener` lets tests record or fake what goes out."""

    def __init__(self, api_url: str, headers: dict[str, str], opener: Opener = _open) -> None:
        self.api_url = api_url.rstrip("/")
        self._headers = {"Content-Type": "application/json", "Accept": "application/json", **headers}
        self._open = opener

    def request(self, method: str, path: str, body: Any = None) -> Any:
        url = path if "://" in path else f"{self.api_url}{path}"  # a next-page link is absolute
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method, headers=self._headers)  # noqa: S310 (_open)
        where = f"{method} {urllib.parse.urlsplit(url).path}"
        try:
            with self._open(request, TIMEOUT_SECONDS) as response:
                text = response.read()
        except urllib.error.HTTPError as exc:
            reason = {401: "credential rejected", 403: "credential not allowed"}.get(exc.code, exc.reason)
            raise PrefectError(f"Prefect API {where}: HTTP {exc.code} ({reason})") from None
        except (urllib.error.URLError, OSError) as exc:
            cause = getattr(exc, "reason", exc)
            raise PrefectError(f"Prefect API {where}: unreachable ({type(cause).__name__}: {cause})") from None
        return json.loads(text) if text else None

    # -- reads ------------------------------------------------------------------------------------

    def pool_runs(self, pool: str, state_types: list[str]) -> list[dict[str, Any]]:
        """This pool's runs in these states: `POST /flow_runs/filter` (flow_runs.py, read_flow_runs), every page."""
        runs: list[dict[str, Any]] = []
        while True:
            page = self.request(
                "POST",
                "/flow_runs/filter",
                {
                    **pool_filter(pool),
                    "flow_runs": {"state": {"type": {"any_": state_types}}},
                    "sort": "ID_DESC",
                    "limit": PAGE,
                    "offset": len(runs),
                },
            )
            runs += page
            if len(page) < PAGE:
                return runs

    def flow_run(self, run_id: str) -> dict[str, Any]:
        """`GET /flow_runs/{id}` (flow_runs.py, read_flow_run)."""
        return dict(self.request("GET", f"/flow_runs/{run_id}"))

    def states(self, run_id: str) -> list[dict[str, Any]]:
        """A run's state history: `GET /flow_run_states/?flow_run_id=` (flow_run_states.py, read_flow_run_states)."""
        return list(self.request("GET", f"/flow_run_states/?flow_run_id={run_id}"))

    def runs_heard_from(self, run_ids: list[str], event: str, since: str, until: str) -> set[str]:
        """Which of these runs emitted `event` in [since, until]: `POST /events/filter`, then each
        `GET /events/filter/next` page it links (events.py, read_events / read_account_events_page)."""
        if not run_ids:
            return set()
        resources = [f"prefect.flow-run.{run_id}" for run_id in run_ids]
        body = {
            "filter": {
                "occurred": {"since": since, "until": until},
                "event": {"name": [event]},
                "resource": {"id": resources},
            },
            "limit": EVENTS_PAGE,
        }
        page = self.request("POST", "/events/filter", body)
        heard: set[str] = set()
        origin = urllib.parse.urlsplit(self.api_url)[:2]
        while True:
            heard.update(e["resource"]["prefect.resource.id"].removeprefix("prefect.flow-run.") for e in page["events"])
            link = page.get("next_page")
            if not link:
                return heard
            if urllib.parse.urlsplit(link)[:2] != origin:  # the credential goes to the stack's API only
                raise PrefectError("Prefect API POST /events/filter: next page is on another host")
            page = self.request("GET", link)

    # -- the one write ----------------------------------------------------------------------------

    def set_state(self, run_id: str, state: dict[str, Any]) -> dict[str, Any]:
        """Propose `state` through orchestration (force false, so the server's rules apply):
        `POST /flow_runs/{id}/set_state` (flow_runs.py, set_flow_run_state). Returns the OrchestrationResult."""
        return dict(self.request("POST", f"/flow_runs/{run_id}/set_state", {"state": state, "force": False}))
