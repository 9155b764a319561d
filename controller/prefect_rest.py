"""The controller's Prefect REST client: the standard library's urllib, nothing else.

Why not httpx: the Lambda runtime has boto3 but not httpx, and bundling httpx means shipping seven
packages (httpx, httpcore, h11, anyio, sniffio, idna, certifi) into the zip and proving they import on
the runtime's Python; the controller makes a handful of requests a minute, which needs neither
connection pooling nor HTTP/2. Each endpoint is cited from prefect/server/api/*.py (Prefect 3.9.1); a
Prefect Cloud workspace URL serves the same paths under /api/accounts/<a>/workspaces/<w>.

Read-only calls only, plus two writes: `set_state` (recovery.py) and `set_labels` (notify.py). Never
`POST /work_pools/{name}/get_scheduled_flow_runs`: it counts as a worker poll and would mark the pool READY
(prefect/server/api/workers.py).

How it reads, so that nothing is judged from a partial answer:
- every page of a listing is read, or the call raises (a listing is never returned cut short);
- a `limit` above what the server allows is answered 422 (a self-hosted server's PREFECT_SERVER_API_DEFAULT_LIMIT,
  prefect/server/api/dependencies.py `LimitBody`): the request is sent again at the limit the error names (half
  the limit when it names none), and every later request of this client stays within it;
- a `next_page` link is followed by its query only, on the stack's own API URL (Prefect builds the link from the
  request's base URL, `generate_next_page_link` in events.py, so behind a TLS-terminating proxy it says `http://`);
- each call's timeout is cut to the invocation's time left (`time_left`), and none starts once it is gone;
- an answer 401/403 re-reads the credential once (`renew`: a rotated key) and sends the request again.
"""

from __future__ import annotations

import base64
import json
import math
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

TIMEOUT_SECONDS = 10  # per request, at most; the invocation's time left cuts it further
PAGE = 200  # PREFECT_API_DEFAULT_LIMIT, the most /flow_runs/filter returns at once (lower on some servers)
EVENTS_PAGE = 50  # INTERACTIVE_PAGE_SIZE, the most /events/filter returns (prefect/server/api/events.py)
NEXT_EVENTS_PAGE = "/events/filter/next"  # read_account_events_page (events.py)
_LIMIT_NAMED = re.compile(r"less than or equal to (\d+)")


class PrefectError(Exception):
    """A Prefect call failed: one line with the method, path and status, never the credential."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class OutOfTime(PrefectError):
    """The invocation's time is up: the call was not sent."""


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
    if request.type not in ("http", "https"):  # the API URL is validated by config/prefect.py
        raise PrefectError(f"Prefect API: refusing a {request.type}: URL")
    return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (http(s) only, checked above)


def allowed_limit(error_body: bytes, sent: int) -> int:
    """The most a 422 answer says the server allows, when it is about `limit`; else 0. `LimitBody` answers
    `{"detail": "Invalid limit: must be less than or equal to N."}`; a Body(le=N) field, as on /events/filter,
    answers pydantic's `exception_detail` with `loc` [body, limit] and `ctx.le`. Naming no number: half."""
    try:
        answer = json.loads(error_body or b"{}")
    except ValueError:
        return 0
    detail = answer.get("detail") if isinstance(answer, dict) else None
    if isinstance(detail, str) and "limit" in detail:
        named = _LIMIT_NAMED.search(detail)
        return int(named[1]) if named else sent // 2
    for item in (answer.get("exception_detail") or []) if isinstance(answer, dict) else []:
        if isinstance(item, dict) and list(item.get("loc") or [])[-1:] == ["limit"]:
            le = (item.get("ctx") or {}).get("le")
            return int(le) if isinstance(le, int) else sent // 2
    return 0


class PrefectRest:
    """JSON over HTTP to one Prefect API; `opener` lets tests record or fake what goes out, `time_left` bounds
    every call (controller/context.py), `renew` gives fresh auth headers after a 401/403 (once per client)."""

    def __init__(
        self,
        api_url: str,
        headers: dict[str, str],
        opener: Opener = _open,
        time_left: Callable[[], float] = lambda: math.inf,
        renew: Callable[[], dict[str, str]] | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self._headers = {"Content-Type": "application/json", "Accept": "application/json", **headers}
        self._open = opener
        self._time_left = time_left
        self._renew = renew
        self.max_limit: int | None = None  # learned from a 422: the server's own limit, for this client's life

    def request(self, method: str, path: str, body: Any = None) -> Any:
        return self._send(method, path, body)[0]

    def _send(self, method: str, path: str, body: Any) -> tuple[Any, int | None]:
        """The answer, and the `limit` the body was finally sent with (None: it had none)."""
        url = f"{self.api_url}{path}"
        where = f"{method} {urllib.parse.urlsplit(url).path}"
        while True:
            if isinstance(body, dict) and "limit" in body and self.max_limit is not None:
                body = {**body, "limit": min(body["limit"], self.max_limit)}
            try:
                return self._call(method, url, where, body), body.get("limit") if isinstance(body, dict) else None
            except urllib.error.HTTPError as exc:
                error_body = exc.read() if exc.fp is not None else b""
                if exc.code in (401, 403) and self._renew is not None:
                    self._headers.update(self._renew())  # a rotated credential: read again, tried once
                    self._renew = None
                    continue
                lower = (
                    allowed_limit(error_body, body["limit"])
                    if exc.code == 422 and isinstance(body, dict) and "limit" in body
                    else 0
                )
                if 0 < lower < body["limit"]:
                    self.max_limit = lower
                    continue
                reason = {401: "credential rejected", 403: "credential not allowed"}.get(exc.code, exc.reason)
                raise PrefectError(f"Prefect API {where}: HTTP {exc.code} ({reason})", exc.code) from None

    def _call(self, method: str, url: str, where: str, body: Any) -> Any:
        timeout = min(TIMEOUT_SECONDS, self._time_left())
        if timeout <= 0:
            raise OutOfTime(f"Prefect API {where}: not sent, the invocation's time is up")
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method, headers=self._headers)  # noqa: S310 (_open)
        try:
            with self._open(request, timeout) as response:
                text = response.read()
        except urllib.error.HTTPError:
            raise
        except (urllib.error.URLError, OSError) as exc:
            cause = getattr(exc, "reason", exc)
            raise PrefectError(f"Prefect API {where}: unreachable ({type(cause).__name__}: {cause})") from None
        return json.loads(text) if text else None

    # -- reads ------------------------------------------------------------------------------------

    def pool_runs(self, pool: str, state_types: list[str], **flow_runs: Any) -> list[dict[str, Any]]:
        """This pool's runs in these states (and `flow_runs` filters, e.g. end_time): `POST /flow_runs/filter`
        (flow_runs.py, read_flow_runs), every page. A run that moves between two pages may be missed until the
        next minute; one seen twice is kept once."""
        runs: dict[str, dict[str, Any]] = {}
        offset = 0
        while True:
            body = {
                **pool_filter(pool),
                "flow_runs": {"state": {"type": {"any_": state_types}}, **flow_runs},
                "sort": "ID_DESC",
                "limit": PAGE,
                "offset": offset,
            }
            page, size = self._send("POST", "/flow_runs/filter", body)
            for run in page:
                runs.setdefault(str(run["id"]), run)
            offset += len(page)
            if len(page) < (size or PAGE):
                return list(runs.values())

    def flow_run(self, run_id: str) -> dict[str, Any]:
        """`GET /flow_runs/{id}` (flow_runs.py, read_flow_run)."""
        return dict(self.request("GET", f"/flow_runs/{run_id}"))

    def flow(self, flow_id: str) -> dict[str, Any]:
        """`GET /flows/{id}` (flows.py, read_flow)."""
        return dict(self.request("GET", f"/flows/{flow_id}"))

    def deployment(self, deployment_id: str) -> dict[str, Any]:
        """`GET /deployments/{id}` (deployments.py, read_deployment)."""
        return dict(self.request("GET", f"/deployments/{deployment_id}"))

    def states(self, run_id: str) -> list[dict[str, Any]]:
        """A run's whole state history, oldest first: `GET /flow_run_states/?flow_run_id=` (flow_run_states.py,
        read_flow_run_states; models/flow_run_states.py orders it by timestamp)."""
        return list(self.request("GET", f"/flow_run_states/?flow_run_id={run_id}"))

    def runs_heard_from(self, run_ids: list[str], event: str, since: str, until: str) -> set[str]:
        """Which of these runs emitted `event` in [since, until]: `POST /events/filter` asking for one event per
        run (`resource.distinct`, events/filters.py EventResourceFilter), then each `GET /events/filter/next` page
        it links (events.py, read_events / read_account_events_page)."""
        if not run_ids:
            return set()
        resources = [f"prefect.flow-run.{run_id}" for run_id in run_ids]
        body = {
            "filter": {
                "occurred": {"since": since, "until": until},
                "event": {"name": [event]},
                "resource": {"id": resources, "distinct": True},
            },
            "limit": EVENTS_PAGE,
        }
        page = self.request("POST", "/events/filter", body)
        heard: set[str] = set()
        while True:
            heard.update(e["resource"]["prefect.resource.id"].removeprefix("prefect.flow-run.") for e in page["events"])
            link = page.get("next_page")
            if not link:
                return heard
            page = self.request("GET", next_events_page(link))

    # -- the writes -------------------------------------------------------------------------------

    def set_state(self, run_id: str, state: dict[str, Any]) -> dict[str, Any]:
        """Propose `state` through orchestration (force false, so the server's rules apply):
        `POST /flow_runs/{id}/set_state` (flow_runs.py, set_flow_run_state). Returns the OrchestrationResult."""
        return dict(self.request("POST", f"/flow_runs/{run_id}/set_state", {"state": state, "force": False}))

    def set_labels(self, run_id: str, labels: dict[str, str]) -> None:
        """Merge `labels` into the run's: `PATCH /flow_runs/{id}/labels` (flow_runs.py, update_flow_run_labels;
        models/flow_runs.py `update_flow_run_labels` reads the run's labels, merges these in and writes the labels
        column alone: the run's state is never touched). Answered 204, no body."""
        self.request("PATCH", f"/flow_runs/{run_id}/labels", labels)


def next_events_page(link: str) -> str:
    """The path to request for a `next_page` link: `GET /events/filter/next` with the link's query, on the stack's
    API URL whatever scheme, host or prefix the link names (the credential goes to that URL only)."""
    parts = urllib.parse.urlsplit(link)
    if not parts.path.endswith(NEXT_EVENTS_PAGE) or not parts.query:
        raise PrefectError("Prefect API POST /events/filter: a next_page link that is not /events/filter/next")
    return f"{NEXT_EVENTS_PAGE}?{parts.query}"
