"""The REST API (Dkron-compatible paths, fields and status codes) and the web UI's files.

Served by a threading HTTP server with connection limits (`http_conn`); every request passes
the checks of `http_guard` (Host, Origin, length, token, type) before its body is read.
Everything the API does goes through the agent object (`Backend` below), so the same handlers
work on a single node and in a cluster.
Reads of replicated state (jobs, executions, busy, the leader, the Raft peers) are linearizable
on every server: each first waits for a read point (`backend.read_barrier`, ReadIndex through
the leader) and then reads the local store. `?stale` (Consul's name) reads the local store at
once instead; a server that cannot reach a leader answers 503 to the other reads.
Errors are plain-text bodies as in Dkron; validation errors also name the job field in the
`X-Error-Field` header so the UI can show the message next to it.
"""

from __future__ import annotations

import hmac
import json
import logging
import mimetypes
import re
import threading
import time
from email.parser import BytesParser
from email.policy import HTTP
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from dkron_pkg import __version__, strict_json
from dkron_pkg.backend import ApiBackend, ReadUnavailable
from dkron_pkg.http_conn import GuardedRequestHandler, LimitedHTTPServer
from dkron_pkg.http_guard import (
    STATE_CHANGING,
    HttpPolicy,
    Refused,
    check_body_type,
    check_host,
    check_origin,
    content_length,
    cors_headers,
    header_safe,
    origin_allowed,
    policy_source,
)
from dkron_pkg.job_compat import ClientJob, accept_client_job
from dkron_pkg.jobs import JobError, normalize_job, public_job, validate_job_semantics
from dkron_pkg.metrics import PROMETHEUS_CONTENT_TYPE
from dkron_pkg.node_tags import job_tag_warnings
from dkron_pkg.timefmt import ZERO_TIME, format_rfc3339, ns_to_datetime, parse_rfc3339

log = logging.getLogger("dkron.http")

SORTABLE_JOB_FIELDS = {
    "id": "name",
    "name": "name",
    "displayname": "displayname",
    "schedule": "schedule",
    "success_count": "success_count",
    "error_count": "error_count",
    "last_success": "last_success",
    "last_error": "last_error",
    "next": "next",
}
# What a non-server agent answers (Dkron's agents serve no API; these help operators).
AGENT_PATHS = {"/health", "/v1", "/v1/", "/v1/members", "/metrics", "/debug/vars"}
PUBLIC_EXECUTION_FIELDS = (
    "id",
    "job_name",
    "started_at",
    "finished_at",
    "success",
    "output",
    "node_name",
    "group",
    "attempt",
)
KNOWN_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
JSON = "application/json"
CRONTAB = "text/x-crontab"
MULTIPART = "multipart/form-data"


class ApiError(Refused):
    """An error answered as a plain-text body with a status code (and the job field at fault)."""

    def __init__(
        self, status: int, message: str, field: str = "", headers: dict[str, str] | None = None
    ):
        super().__init__(status, message, headers)
        self.field = field


class Response:
    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None):
        self.status = status
        self.body = body
        self.headers = headers or {}


def _tz_for(job: dict | None):
    from dkron_pkg.schedule import load_timezone

    if not job or not job.get("timezone"):
        return None
    try:
        return load_timezone(job["timezone"])
    except ValueError:
        return None


def public_execution(ex: dict, tz=None, output_limit: int | None = None) -> dict:
    """An execution as Dkron's API shows it; times in the job's zone when it has one."""
    out = {k: ex.get(k) for k in PUBLIC_EXECUTION_FIELDS}
    scheduled_ns = ex.get("scheduled_ns")
    out["scheduled_at"] = format_rfc3339(ns_to_datetime(scheduled_ns)) if scheduled_ns else None
    if tz is not None:
        for key in ("started_at", "finished_at", "scheduled_at"):
            if out[key] and out[key] != ZERO_TIME:
                out[key] = format_rfc3339(parse_rfc3339(out[key]), tz)
    output = out.get("output") or ""
    if output_limit is not None and output_limit >= 0:
        raw = output.encode("utf-8", "replace")
        if len(raw) > output_limit:
            out["output"] = raw[len(raw) - output_limit :].decode("utf-8", "ignore")
            out["output_truncated"] = True
        else:
            out["output_truncated"] = False
    return out


def _time_sort_key(value: str | None) -> float:
    if not value or value == ZERO_TIME:
        return float("-inf")
    try:
        return parse_rfc3339(value).timestamp()
    except ValueError:
        return float("-inf")


class Api:
    """Maps requests to backend calls (`backend.ApiBackend`; the agent in production)."""

    def __init__(self, backend: ApiBackend):
        self.backend = backend
        self.compat_log = CompatLog()
        self.routes: list[tuple[str, re.Pattern, Any, str]] = []
        add = self._route
        add("GET", r"/health", self.health)
        add("GET", r"/v1/?", self.status)
        add("GET", r"/v1/members", self.members)
        add("GET", r"/v1/leader", self.leader)
        add("GET", r"/v1/isleader", self.isleader)
        add("POST", r"/v1/leave", self.leave)
        add("POST", r"/v1/restore", self.restore, body=MULTIPART)
        add("GET", r"/v1/busy", self.busy)
        add("GET", r"/v1/pause", self.pause_status)
        add("POST", r"/v1/pause", self.pause)
        add("POST", r"/v1/unpause", self.unpause)
        add("GET", r"/v1/jobs", self.list_jobs)
        add("POST", r"/v1/jobs", self.upsert_job)
        add("PATCH", r"/v1/jobs", self.upsert_job)
        add("PUT", r"/v1/jobs/(?P<job>[^/]+)", self.upsert_job)
        add("GET", r"/v1/jobs/(?P<job>[^/]+)", self.get_job)
        add("DELETE", r"/v1/jobs/(?P<job>[^/]+)", self.delete_job)
        add("POST", r"/v1/jobs/(?P<job>[^/]+)", self.run_job)
        add("POST", r"/v1/jobs/(?P<job>[^/]+)/run", self.run_job)
        add("POST", r"/v1/jobs/(?P<job>[^/]+)/toggle", self.toggle_job)
        add("GET", r"/v1/jobs/(?P<job>[^/]+)/executions", self.list_executions)
        add("DELETE", r"/v1/jobs/(?P<job>[^/]+)/executions", self.delete_executions)
        add("GET", r"/v1/jobs/(?P<job>[^/]+)/executions/(?P<ex>[^/]+)", self.get_execution)
        add("DELETE", r"/v1/jobs/(?P<job>[^/]+)/executions/(?P<ex>[^/]+)", self.delete_execution)
        add("GET", r"/v1/schedule/preview", self.schedule_preview)
        add("GET", r"/v1/raft/peers", self.raft_peers)
        add("DELETE", r"/v1/raft/peers/(?P<peer>[^/]+)", self.raft_remove_peer)
        add("POST", r"/v1/crontab/preview", self.crontab_preview, body=CRONTAB)
        add("POST", r"/v1/crontab/apply", self.crontab_apply, body=CRONTAB)
        add("GET", r"/metrics", self.metrics)
        add("GET", r"/debug/vars", self.debug_vars)

    def _route(self, method: str, pattern: str, handler: Any, body: str = JSON) -> None:
        """`body` is the media type a request body must have (bodyless calls need none)."""
        self.routes.append((method, re.compile(pattern + r"\Z"), handler, body))

    def match(self, method: str, path: str) -> tuple[Any, dict[str, str], str] | None:
        """(handler, path parameters, body media type); None for an unknown path."""
        for m, pattern, handler, body in self.routes:
            found = pattern.match(path)
            if found and m == method:
                return handler, {k: unquote(v) for k, v in found.groupdict().items()}, body
        allowed = self.allowed_methods(path)
        if allowed:
            raise ApiError(
                405, f"method {method} not allowed on {path}", headers={"Allow": allowed}
            )
        return None

    def slash_target(self, method: str, path: str) -> str | None:
        """The path without its trailing slash when only that form is routed for `method`
        (Dkron's router redirects such requests: 301 for GET, 307 for other methods)."""
        if len(path) < 2 or not path.endswith("/"):
            return None
        if any(m == method and p.match(path) for m, p, _, _ in self.routes):
            return None
        stripped = path[:-1]
        if any(m == method and p.match(stripped) for m, p, _, _ in self.routes):
            return stripped
        return None

    def allowed_methods(self, path: str) -> str:
        """The Allow header for `path` ("" when no route matches it)."""
        methods = {m for m, pattern, _, _ in self.routes if pattern.match(path)}
        if not methods:
            return ""
        methods |= {"HEAD"} if "GET" in methods else set()
        return ", ".join(m for m in KNOWN_METHODS if m in methods | {"OPTIONS"})

    # ----- node --------------------------------------------------------------------------

    def health(self, req: Request) -> Response:
        """Alive, with the security mode and the misconfigurations this node sees (each
        {"kind", "message"}): a problem is for the operator, not a reason to fail the check.
        /health needs no token; without it (when one is set) only the kinds are shown, as
        the messages name nodes and addresses."""
        security = getattr(self.backend, "security_mode", None)  # "key" or "insecure-dev"
        listed = getattr(self.backend, "problem_list", None)
        problems = listed() if listed is not None else None
        if problems and not token_given(getattr(self.backend, "api_token", ""), req.headers):
            hidden = "details are shown with the API token"
            problems = [{"kind": p["kind"], "message": hidden} for p in problems]
        return Response(
            200,
            {
                "status": "healthy",
                **({"security": security} if security else {}),
                **({"problems": problems} if problems is not None else {}),
            },
        )

    def status(self, req: Request) -> Response:
        b = self.backend
        return Response(
            200,
            {
                "agent": {"name": b.node_name, "version": __version__},
                "serf": b.gossip_stats(),
                "tags": b.local_tags(),
            },
        )

    def members(self, req: Request) -> Response:
        members = self.backend.members()
        return Response(200, members, {"X-Total-Count": str(len(members))})

    def leader(self, req: Request) -> Response:
        self._read_point(req)
        leader = self.backend.leader_member()
        if leader is None:
            return Response(404, None)
        return Response(200, leader)

    def isleader(self, req: Request) -> Response:
        if self.backend.is_leader():
            return Response(200, "I am a leader")
        return Response(404, "I am a follower")

    def leave(self, req: Request) -> Response:
        peers = self.backend.members()
        self.backend.request_leave()
        return Response(200, peers)

    def raft_peers(self, req: Request) -> Response:
        self._read_point(req)
        return Response(200, self.backend.raft_peers())

    def raft_remove_peer(self, req: Request) -> Response:
        result = self.backend.remove_peer(req.params["peer"])
        if not result.ok:
            raise ApiError(result.status, result.error)
        return Response(200, result.value)

    def metrics(self, req: Request) -> Response:
        text = self.backend.metrics_text()
        if text is None:
            raise ApiError(404, "metrics are disabled (start the agent with --enable-prometheus)")
        return Response(200, text.encode(), {"Content-Type": PROMETHEUS_CONTENT_TYPE})

    def debug_vars(self, req: Request) -> Response:
        return Response(200, self.backend.debug_vars())

    # ----- pause -------------------------------------------------------------------------

    def pause_status(self, req: Request) -> Response:
        return Response(200, {"paused": self.backend.paused})

    def pause(self, req: Request) -> Response:
        self.backend.paused = True
        return Response(200, {"paused": True})

    def unpause(self, req: Request) -> Response:
        self.backend.paused = False
        return Response(200, {"paused": False})

    # ----- jobs --------------------------------------------------------------------------

    def _public(self, job: dict) -> dict:
        out = public_job(job)
        nxt = self.backend.next_for(job["name"])
        if nxt is not None:
            out["next"] = nxt
        return out

    def list_jobs(self, req: Request) -> Response:
        self._read_point(req)
        q = req.query
        jobs, running = self.backend.store.jobs_view()
        meta_filters = {
            key[len("metadata[") : -1]: values[-1]
            for key, values in q.items()
            if key.startswith("metadata[") and key.endswith("]")
        }
        if meta_filters:
            jobs = [
                j
                for j in jobs
                if j.get("metadata")
                and all(j["metadata"].get(k) == v for k, v in meta_filters.items())
            ]
        tag_filters = {
            key[len("tags[") : -1]: values[-1]
            for key, values in q.items()
            if key.startswith("tags[") and key.endswith("]")
        }
        if tag_filters:
            jobs = [
                j
                for j in jobs
                if j.get("tags") and all(j["tags"].get(k) == v for k, v in tag_filters.items())
            ]
        text = req.arg("q")
        if text:
            jobs = [j for j in jobs if text in j["name"] or text in (j.get("displayname") or "")]
        status = req.arg("status")
        if status:
            want = "" if status == "untriggered" else status
            if status == "running":
                jobs = [j for j in jobs if j["name"] in running]
            else:
                jobs = [j for j in jobs if (j.get("status") or "") == want]
        disabled = req.arg("disabled")
        if disabled:
            if disabled not in ("true", "false"):
                raise ApiError(400, f'disabled must be "true" or "false", got "{disabled}"')
            jobs = [j for j in jobs if bool(j.get("disabled")) == (disabled == "true")]
        sort = req.arg("_sort") or "id"
        if sort not in SORTABLE_JOB_FIELDS:
            raise ApiError(
                400,
                f'cannot sort by "{sort}": use one of ' + ", ".join(sorted(SORTABLE_JOB_FIELDS)),
            )
        field = SORTABLE_JOB_FIELDS[sort]
        order = req.arg("_order") or "ASC"
        if order.upper() not in ("ASC", "DESC"):
            raise ApiError(400, f'_order must be ASC or DESC, got "{order}"')
        if field == "next":
            nexts = {j["name"]: self.backend.next_for(j["name"]) or j.get("next") for j in jobs}
            jobs.sort(key=lambda j: (_time_sort_key(nexts[j["name"]]), j["name"]))
        elif field in ("last_success", "last_error"):
            jobs.sort(key=lambda j: (_time_sort_key(j.get(field)), j["name"]))
        elif field == "name":
            pass  # the store's view is in name order already, and filters keep it
        elif field in ("success_count", "error_count"):
            jobs.sort(key=lambda j: (j.get(field) or 0, j["name"]))
        else:
            jobs.sort(key=lambda j: (j.get(field) or "", j["name"]))
        if order.upper() == "DESC":
            jobs.reverse()
        total = len(jobs)
        start = _int_arg(req, "_start", 0)
        end = _int_arg(req, "_end", total)
        start = max(0, min(start, total))
        end = max(start, min(end, total))
        page = [self._public({**j, "running": j["name"] in running}) for j in jobs[start:end]]
        return Response(200, page, {"X-Total-Count": str(total)})

    def upsert_job(self, req: Request) -> Response:
        if self.backend.paused:
            raise ApiError(503, "New job submissions are currently paused")
        payload = req.json()
        sent = ClientJob(payload)
        try:
            sent = accept_client_job(payload)
            job = normalize_job(sent.payload)
            validate_job_semantics(job)
        except JobError as e:
            raise ApiError(e.status, _with_ignored(str(e), sent), e.field) from None
        result = self.backend.submit_job(job)
        if not result.ok:
            raise ApiError(result.status, result.error, (result.value or {}).get("field", ""))
        self.compat_log.note(job["name"], sent)
        if "runoncreate" in req.query:
            self.backend.run_now(job["name"])
        headers = {"Location": _job_location(job["name"]), **_ignored_header(sent.ignored)}
        return Response(201, self._with_warnings(self._public(result.value)), headers)

    def _read_point(self, req: Request) -> None:
        """Wait until this server's store holds every write acknowledged before the request,
        by any server (a linearizable read), unless the request asks for `?stale`."""
        if _wants_stale(req):
            return
        try:
            self.backend.read_barrier()
        except ReadUnavailable as e:
            raise ApiError(503, str(e)) from None

    def _job_or_404(self, name: str) -> dict:
        job = self.backend.store.get_job(name)
        if job is None:
            raise ApiError(404, f'job "{name}" not found')
        return job

    def get_job(self, req: Request) -> Response:
        self._read_point(req)
        return Response(200, self._with_warnings(self._public(self._job_or_404(req.params["job"]))))

    def _with_warnings(self, out: dict) -> dict:
        """Beyond Dkron: `warnings` lists what keeps the job from running (tags that select no
        known node), computed on each read; absent when there is nothing to say."""
        region = getattr(self.backend, "region", None)
        warnings = job_tag_warnings(out.get("tags"), self.backend.members(), region)
        return {**out, "warnings": warnings} if warnings else out

    def delete_job(self, req: Request) -> Response:
        result = self.backend.delete_job(req.params["job"])
        if not result.ok:
            raise ApiError(404, result.error)
        return Response(200, public_job(result.value))

    def run_job(self, req: Request) -> Response:
        self._read_point(req)
        name = req.params["job"]
        job = self._job_or_404(name)
        result = self.backend.run_now(name)
        if not result.ok:
            raise ApiError(result.status, result.error)
        return Response(202, self._public(job), {"Location": _job_location(name)})

    def toggle_job(self, req: Request) -> Response:
        self._read_point(req)
        name = req.params["job"]
        self._job_or_404(name)
        result = self.backend.toggle_job(name)
        if not result.ok:
            raise ApiError(422 if result.status != 404 else 404, result.error)
        return Response(200, self._public(result.value), {"Location": _job_location(name)})

    def restore(self, req: Request) -> Response:
        data = req.multipart_file("file")
        try:
            payload = strict_json.loads(data)
        except strict_json.JsonError as e:
            raise ApiError(400, f"Unable to parse payload: {e}") from None
        if not isinstance(payload, list):
            raise ApiError(400, "Unable to parse payload: the file must hold a JSON array of jobs")
        jobs: list[dict] = []
        accepted: list[ClientJob] = []
        errors: list[str] = []
        for i, raw in enumerate(payload):
            try:
                sent = accept_client_job(raw)
                job = normalize_job(sent.payload)
                validate_job_semantics(job)
                jobs.append(job)
                accepted.append(sent)
            except JobError as e:
                label = raw.get("name") if isinstance(raw, dict) else None
                errors.append(f"job {i} ({label or '?'}): {e}")
        if errors:
            raise ApiError(400, "restore rejected, nothing was changed:\n" + "\n".join(errors))
        counters = {j["name"]: sent.payload for j, sent in zip(jobs, accepted, strict=True)}
        self._read_point(req)
        ordered = _parents_first(jobs, self.backend.store.job_names())
        if isinstance(ordered, str):
            raise ApiError(400, ordered)
        results = self.backend.submit_jobs(ordered, counters)
        messages = [
            f"success create {j['name']}" if r.ok else f"fail create {j['name']}: {r.error}"
            for j, r in zip(ordered, results, strict=True)
        ]
        for job, sent in zip(jobs, accepted, strict=True):
            self.compat_log.note(job["name"], sent)
        ignored = sorted({name for sent in accepted for name in sent.ignored})
        return Response(200, json.dumps(messages), _ignored_header(ignored))

    # ----- executions --------------------------------------------------------------------

    def busy(self, req: Request) -> Response:
        self._read_point(req)
        runs = self.backend.busy()
        out = [public_execution(ex) for ex in runs]
        return Response(200, out, {"X-Total-Count": str(len(out))})

    def list_executions(self, req: Request) -> Response:
        self._read_point(req)
        job = self._job_or_404(req.params["job"])
        executions = self.backend.executions(job["name"])
        sort = req.arg("_sort") or ""
        order = (req.arg("_order") or "DESC").upper()
        if sort in ("", "id", "started_at"):
            executions.sort(key=lambda e: (e.get("started_ns", 0), e["id"]))
        elif sort == "finished_at":
            executions.sort(key=lambda e: _time_sort_key(e.get("finished_at")))
        elif sort == "attempt":
            executions.sort(key=lambda e: e.get("attempt", 0))
        else:
            raise ApiError(
                400, f'cannot sort executions by "{sort}": use id, started_at, finished_at, attempt'
            )
        if order == "DESC":
            executions.reverse()
        limit = req.arg("output_size_limit")
        output_limit = None
        if limit is not None and limit != "":
            try:
                output_limit = int(limit)
            except ValueError:
                raise ApiError(400, f'output_size_limit must be a number, got "{limit}"') from None
        tz = _tz_for(job)
        out = [public_execution(e, tz, output_limit) for e in executions]
        return Response(200, out, {"X-Total-Count": str(len(out))})

    def delete_executions(self, req: Request) -> Response:
        self._read_point(req)
        self._job_or_404(req.params["job"])
        result = self.backend.delete_executions(req.params["job"])
        if not result.ok:
            raise ApiError(result.status if result.status == 404 else 500, result.error)
        return Response(200, self._public(result.value))

    def get_execution(self, req: Request) -> Response:
        self._read_point(req)
        job = self._job_or_404(req.params["job"])
        ex = self.backend.execution(job["name"], req.params["ex"])
        if ex is None:
            raise ApiError(404, f'execution "{req.params["ex"]}" not found')
        return Response(200, public_execution(ex, _tz_for(job)))

    def delete_execution(self, req: Request) -> Response:
        """Beyond Dkron: stops a running execution (202), deletes a finished one (200)."""
        self._read_point(req)
        job = self._job_or_404(req.params["job"])
        ex = self.backend.execution(job["name"], req.params["ex"])
        if ex is None:
            raise ApiError(404, f'execution "{req.params["ex"]}" not found')
        if ex.get("finished_at") == ZERO_TIME:
            if not self.backend.stop_execution(job["name"], ex["id"]):
                raise ApiError(409, f'execution "{ex["id"]}" is not running on a reachable node')
            return Response(202, public_execution(ex))
        result = self.backend.delete_execution(job["name"], ex["id"])
        if not result.ok:
            raise ApiError(result.status, result.error)
        return Response(200, public_execution(ex))

    # ----- schedules and crontabs ---------------------------------------------------------

    def schedule_preview(self, req: Request) -> Response:
        from datetime import UTC, datetime

        from dkron_pkg.schedule import load_timezone, parse_schedule

        spec = req.arg("schedule") or ""
        tz_name = req.arg("timezone") or ""
        count = min(max(_int_arg(req, "count", 5), 1), 50)
        try:
            if tz_name:
                load_timezone(tz_name)
            schedule = parse_schedule(spec, tz_name, req.arg("name") or "")
        except ValueError as e:
            field = "schedule" if str(e).startswith("can't parse job schedule") else "timezone"
            raise ApiError(400, str(e), field) from None
        times: list[str] = []
        t = datetime.now(UTC)
        for _ in range(count):
            nxt = schedule.next_after(t)
            if nxt is None:
                break
            times.append(format_rfc3339(nxt.astimezone(UTC)))
            t = nxt
        return Response(200, {"description": schedule.describe(), "next": times})

    def _crontab_plan(self, req: Request, apply: bool) -> Response:
        self._read_point(req)  # the plan compares the crontab with the jobs as they are
        text = req.body.decode("utf-8", "replace")
        result = self.backend.crontab_import(
            text,
            dialect=req.arg("dialect") or "debian",
            user=req.arg("user") or "",
            apply=apply,
            source=req.arg("file") or "ui-upload",
        )
        failed = result.get("blocked") or (apply and result.get("applied") is False)
        return Response(400 if failed else 200, result)

    def crontab_preview(self, req: Request) -> Response:
        return self._crontab_plan(req, apply=False)

    def crontab_apply(self, req: Request) -> Response:
        return self._crontab_plan(req, apply=True)


def _parents_first(jobs: list[dict], existing: list[str]) -> list[dict] | str:
    """Order jobs so each parent is created before its children; an error text if impossible."""
    by_name = {j["name"]: j for j in jobs}
    known = set(existing)
    ordered: list[dict] = []
    placed: set[str] = set()
    pending = list(jobs)
    while pending:
        progress = False
        rest = []
        for job in pending:
            parent = job["parent_job"]
            if not parent or parent in placed or (parent in known and parent not in by_name):
                ordered.append(job)
                placed.add(job["name"])
                progress = True
            else:
                rest.append(job)
        if not progress:
            missing = [j["name"] for j in rest]
            return (
                "restore rejected, nothing was changed: parent job missing or cyclic for "
                + ", ".join(missing)
            )
        pending = rest
    return ordered


class CompatLog:
    """Logs, once per job, the fields a client sent that were ignored or mapped (Dkron 1.x).

    A client that re-sends the same job every minute must not fill the log: a job's fields are
    logged again only when they change; at most MAX_JOBS jobs are remembered."""

    MAX_JOBS = 4096

    def __init__(self) -> None:
        self._seen: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        self._lock = threading.Lock()

    def note(self, name: str, sent: ClientJob) -> None:
        key = (tuple(sent.ignored), tuple(sent.mapped))
        with self._lock:
            if self._seen.get(name, ((), ())) == key:
                return
            self._seen.pop(name, None)
            if key == ((), ()):
                return
            if len(self._seen) >= self.MAX_JOBS:
                self._seen.pop(next(iter(self._seen)))
            self._seen[name] = key
        if sent.ignored:
            log.warning(
                "job %s: ignored unknown fields %s (as Dkron does)",
                header_safe(name),
                header_safe(sent.hints()),
            )
        if sent.mapped:
            log.info(
                'job %s: Dkron 1.x fields %s mapped to executor "shell" and its executor_config',
                header_safe(name),
                ", ".join(sent.mapped),
            )


MAX_IGNORED_IN_HEADER = 20


def _ignored_header(names: list[str]) -> dict[str, str]:
    """X-Dkron-Ignored-Fields: the ignored names, each percent-encoded (so a comma or a line
    break in a name cannot break the list or the header), at most MAX_IGNORED_IN_HEADER."""
    if not names:
        return {}
    shown = [quote(n[:100], safe="") for n in names[:MAX_IGNORED_IN_HEADER]]
    if len(names) > MAX_IGNORED_IN_HEADER:
        shown.append(f"...{len(names) - MAX_IGNORED_IN_HEADER} more")
    return {"X-Dkron-Ignored-Fields": ", ".join(shown)}


def _with_ignored(message: str, sent: ClientJob) -> str:
    """A validation error names the ignored fields too: one may be the misspelt field."""
    if not sent.ignored:
        return message
    return f"{message} (ignored unknown fields: {sent.hints()})"


def _wants_stale(req: Request) -> bool:
    """`?stale`, `?stale=true` (or 1): read this server's copy without a read point."""
    value = req.arg("stale")
    if value is None:
        return False
    if value.lower() in ("", "true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise ApiError(
        400, f'stale must be "true" or "false" (or given without a value), got "{value[:40]}"'
    )


def _job_location(name: str) -> str:
    """The Location of a job: its name percent-encoded (names may be any lowercase letters)."""
    return "/v1/jobs/" + quote(name, safe="")


def _int_arg(req: Request, name: str, default: int) -> int:
    value = req.arg(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ApiError(400, f'{name} must be a whole number, got "{value}"') from None


def token_given(token: str, headers: Any) -> bool:
    """Whether the request carries the API token (always, when none is configured)."""
    if not token:
        return True
    auth = headers.get("Authorization", "")
    given = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
    given = given or headers.get("X-Dkron-Token", "")
    return bool(given) and hmac.compare_digest(given.encode(), token.encode())


class Request:
    """What a handler needs from the HTTP request."""

    def __init__(self, method: str, path: str, query: dict, headers: Any, body: bytes):
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.params: dict[str, str] = {}

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None

    def json(self) -> Any:
        if not self.body.strip():
            raise ApiError(400, "Unable to parse payload: empty body, expected a JSON job")
        try:
            return strict_json.loads(self.body)
        except strict_json.JsonError as e:
            raise ApiError(400, f"Unable to parse payload: {e}") from None

    def multipart_file(self, field: str) -> bytes:
        ctype = self.headers.get("Content-Type", "")
        if not ctype.startswith("multipart/form-data"):
            raise ApiError(404, f'no "{field}" field: send multipart/form-data with a file')
        head = f"Content-Type: {ctype}\r\nMIME-Version: 1.0\r\n\r\n".encode()
        msg = BytesParser(policy=HTTP).parsebytes(head + self.body)
        if not msg.is_multipart():
            raise ApiError(400, "Unable to parse payload: malformed multipart body")
        for part in msg.iter_parts():
            if part.get_param("name", header="content-disposition") == field:
                return part.get_payload(decode=True) or b""
        raise ApiError(404, f'no "{field}" field in the form')


class Handler(GuardedRequestHandler):
    """One request: Host, Origin, length, token and type checks, then routing; CORS, X-Whom."""

    protocol_version = "HTTP/1.1"
    server_version = f"dkron-py/{__version__}"
    api: Api  # set on the subclass made by make_server
    expect_continue = False

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.client_address[0], *args)

    def handle_expect_100(self) -> bool:
        """Say "100 Continue" only once the checks passed and the body is wanted."""
        self.expect_continue = True
        return True

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_OPTIONS(self) -> None:
        self._handle("OPTIONS")

    def do_HEAD(self) -> None:
        self._handle("GET")

    def unknown_method(self) -> None:
        self._handle(self.command)

    def _handle(self, method: str) -> None:
        started = time.monotonic()
        self._status = 0
        self._cors: dict[str, str] = {}
        url = urlsplit(self.path)
        path = url.path
        route = "unmatched"  # a bounded label for metrics, never the raw path
        label = method if method in KNOWN_METHODS else "OTHER"
        try:
            policy = self.server.policy()
            host, origin = self.headers.get("Host"), self.headers.get("Origin")
            self.unread_body = True  # until the length is known
            check_host(policy, host)
            self._cors = cors_headers(
                policy, origin, self.headers.get("Access-Control-Request-Headers")
            )
            length = content_length(self.headers, self.api.backend.max_body_bytes)
            self.unread_body = length > 0
            if method not in KNOWN_METHODS:
                allow = self.api.allowed_methods(path) or ", ".join(KNOWN_METHODS)
                raise ApiError(405, f"method {method} is not supported", headers={"Allow": allow})
            if method == "OPTIONS":
                self._options(policy, path, origin, host)
                return
            if path == "/" or path == "/ui" or path.startswith("/ui/"):
                route = "ui"
                if method != "GET":
                    raise ApiError(405, f"method {method} not allowed on {path}", "", _UI_ALLOW)
                self._static(path)
                return
            check_origin(policy, method, origin, host)
            target = self.api.slash_target(method, path)
            if target is not None:
                route = "redirect"
                location = target + (f"?{url.query}" if url.query else "")
                status = 301 if method == "GET" else 307
                self._send(status, b"", "text/plain", {"Location": location})
                return
            if path != "/health" and not self._authorized():
                raise ApiError(401, "missing or invalid API token (Authorization: Bearer <token>)")
            found = self.api.match(method, path)
            if found is None:
                raise ApiError(404, f"no such endpoint: {method} {path}")
            if not self.api.backend.is_server and path not in AGENT_PATHS:
                raise ApiError(
                    404, "this agent is not a server: send API calls to a server (--server)"
                )
            handler, params, body_type = found
            route = handler.__name__
            body = b""
            if length and method in STATE_CHANGING:
                check_body_type(self.headers.get("Content-Type"), body_type)
                body = self._read_body(length, policy)
            query = parse_qs(url.query, keep_blank_values=True)
            req = Request(method, path, query, self.headers, body)
            req.params = params
            resp = handler(req)
            self._send_json(resp, "pretty" in query)
        except Refused as e:
            if not isinstance(e, ApiError) or e.status in (401, 403, 405):
                self.server.refusals.warn(
                    "refused %s %s from %s: %d %s",
                    label,
                    header_safe(path[:200]),
                    self.client_address[0],
                    e.status,
                    e.message,
                )
            headers = dict(e.headers)
            field = getattr(e, "field", "")
            if field:
                headers["X-Error-Field"] = field
            self._send(e.status, e.message.encode(), "text/plain; charset=utf-8", headers)
        except Exception:
            log.exception("internal error on %s %s", label, header_safe(path))
            self._send(500, b"internal server error (see the agent's log)", "text/plain", {})
        finally:
            self.expect_continue = False
            if self.unread_body:
                self.close_connection = True
            observe = getattr(self.api.backend, "observe_request", None)
            if observe:
                observe(route, label, self._status, time.monotonic() - started)

    def _options(self, policy: HttpPolicy, path: str, origin: str | None, host: str | None) -> None:
        """A CORS preflight: allowed for listed origins (and this server's own pages)."""
        if origin is not None and not origin_allowed(policy, origin, host):
            raise ApiError(
                403,
                f'cross-origin requests from "{header_safe(origin)}" are not allowed: add the '
                "origin to --cors-allowed-origins",
            )
        allow = self.api.allowed_methods(path) or ", ".join(KNOWN_METHODS)
        self._send(204, b"", "text/plain", {"Allow": allow})

    def _read_body(self, length: int, policy: HttpPolicy) -> bytes:
        """Read the announced body within the read timeout."""
        self.reader.start(policy.read_timeout)
        if self.expect_continue:
            self.expect_continue = False
            self.send_response_only(100)
            self.end_headers()
        try:
            data = self.rfile.read(length)
        except TimeoutError:
            raise ApiError(
                408, f"request body not received within {policy.read_timeout:g} s"
            ) from None
        if len(data) < length:
            raise ApiError(400, f"request body ended after {len(data)} of {length} bytes")
        self.unread_body = False
        return data

    def _authorized(self) -> bool:
        return token_given(self.api.backend.api_token, self.headers)

    def _static(self, path: str) -> None:
        if not self.api.backend.ui_enabled:
            raise ApiError(404, "the web UI is disabled on this agent")
        if path in ("/", "/ui"):
            accept = self.headers.get("Accept", "")
            if path == "/" and "text/html" not in accept:
                raise ApiError(404, "not found (the web UI is at /ui/)")
            self._send(303, b"", "text/plain", {"Location": "/ui/"})
            return
        rel = path[len("/ui/") :] or "index.html"
        if ".." in rel.split("/"):
            raise ApiError(404, "not found")
        try:
            data = resources.files("dkron_pkg").joinpath("ui", *rel.split("/")).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError, OSError, ValueError):
            raise ApiError(404, f"no such UI file: {rel}") from None
        ctype = mimetypes.guess_type(rel)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype in ("application/javascript",):
            ctype += "; charset=utf-8"
        self._send(200, data, ctype, {"Cache-Control": "no-cache"})

    def _send_json(self, resp: Response, pretty: bool) -> None:
        if isinstance(resp.body, bytes):
            data = resp.body
            ctype = resp.headers.pop("Content-Type", "application/octet-stream")
        else:
            indent = 4 if pretty else None
            data = json.dumps(resp.body, indent=indent, ensure_ascii=False).encode()
            ctype = "application/json; charset=utf-8"
        self._send(resp.status, data, ctype, resp.headers)

    def _send(self, status: int, data: bytes, ctype: str, headers: dict[str, str]) -> None:
        """Send the answer; every header value made safe for HTTP (see header_safe)."""
        self._status = status
        self.send_response(status)
        out = {
            "Content-Type": ctype,
            "Content-Length": str(len(data)),
            "X-Whom": self.api.backend.node_name,
            **self._cors,
            **headers,
        }
        if self.unread_body or self.close_connection:
            out["Connection"] = "close"
        for key, value in out.items():
            self.send_header(key, header_safe(str(value)))
        # Headers and body leave in one write: split writes meet Nagle and delayed ACKs.
        if self.command != "HEAD":
            self._headers_buffer.append(b"\r\n" + data)
            self.flush_headers()
        else:
            self.end_headers()


_UI_ALLOW = {"Allow": "GET, HEAD"}


def make_server(host: str, port: int, backend: ApiBackend) -> LimitedHTTPServer:
    """Bind the API on host:port (port 0 picks a free one) for `backend`.

    The HTTP limits follow `backend.config` (re-read when a SIGHUP replaces it).
    """
    api = Api(backend)
    handler = type("BoundHandler", (Handler,), {"api": api})
    return LimitedHTTPServer(
        (host, port), handler, policy_source(lambda: getattr(backend, "config", None))
    )
