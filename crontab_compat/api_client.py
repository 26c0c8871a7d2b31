"""A small client for the agent's Dkron-compatible REST API (stdlib urllib only)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request


class ApiError(Exception):
    """The API could not be reached or refused a request; the message says which and why."""


class DkronClient:
    def __init__(
        self, base_url: str, token: str | None = None, timeout: float = 15.0, source: str = ""
    ) -> None:
        parsed = urllib.parse.urlparse(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ApiError(f"bad --api address {base_url!r}: expected http://host:port")
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.source = source  # where the address came from, said when it cannot be reached

    def _request(self, method: str, path: str, body: dict | None = None) -> object:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace").strip()[:500]
            raise ApiError(f"{method} {path} failed: HTTP {exc.code} {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiError(
                f"cannot reach the Dkron API at {self.base_url}: {reason}{self.source}"
            ) from None
        if not payload.strip():
            return None
        try:
            return json.loads(payload)
        except ValueError:
            raise ApiError(f"{method} {path}: the API answered with something that is not JSON")

    def list_jobs(self) -> list[dict]:
        jobs = self._request("GET", "/v1/jobs")
        if not isinstance(jobs, list):
            raise ApiError("GET /v1/jobs: expected a JSON list of jobs")
        return [job for job in jobs if isinstance(job, dict)]

    def put_job(self, job: dict) -> None:
        self._request("POST", "/v1/jobs", job)

    def delete_job(self, name: str) -> None:
        self._request("DELETE", "/v1/jobs/" + urllib.parse.quote(name, safe=""))
