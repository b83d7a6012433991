"""A small client of the partner API over HTTP (httpx): what the demo seeding, the end-to-end tests
and partners' scripts use. Writes wait for their outcome by default; a problem answer raises."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import httpx

UNDER_WAY = ("queued", "running")  # an operation's states before its outcome


class ApiProblem(RuntimeError):
    """The API answered with an RFC 9457 problem document."""

    def __init__(self, status: int, body: Mapping[str, Any]) -> None:
        self.status = status
        self.body = dict(body)
        self.type = str(body.get("type", ""))
        super().__init__(f"{status} {body.get('title', '')}: {body.get('detail', '')} ({self.type})")


class RxClient:
    def __init__(self, base_url: str, token: str | None = None, *, timeout: float = 60.0) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=timeout)
        self.token = token

    def with_token(self, token: str) -> RxClient:
        other = RxClient.__new__(RxClient)
        other.http, other.token = self.http, token
        return other

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        headers.update(extra or {})
        return headers

    @staticmethod
    def _check(response: httpx.Response) -> Any:
        if response.headers.get("content-type", "").startswith("application/problem+json"):
            raise ApiProblem(response.status_code, response.json())
        response.raise_for_status()
        return response.json()

    def get(self, path: str, **params: Any) -> Any:
        return self._check(self.http.get(path, params=params, headers=self._headers()))

    def post(
        self,
        path: str,
        json: Any = None,
        *,
        wait: bool = True,
        idempotency_key: str | None = None,
        files: Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> Any:
        headers = self._headers({"Idempotency-Key": idempotency_key} if idempotency_key else None)
        params = {"wait": "true"} if wait else None
        response = self.http.post(path, json=json, params=params, headers=headers, files=files, data=data)
        answer = self._check(response)
        if wait and isinstance(answer, dict) and answer.get("status") in UNDER_WAY and "id" in answer:
            # the server's wait is bounded; on a slow chain a long operation outlasts it
            return self.outcome(answer["id"])
        return answer

    def outcome(self, operation_id: str, *, timeout: float = 900.0, poll: float = 0.5) -> Any:
        """Follow an operation to its end: its view when it succeeded, ApiProblem when it failed."""
        deadline = time.monotonic() + timeout
        while True:
            op = self.get(f"/v1/operations/{operation_id}")
            if op["status"] == "failed":
                error = dict(op.get("error") or {})
                raise ApiProblem(int(error.get("status", 409)), {**error, "operation": op})
            if op["status"] not in UNDER_WAY or time.monotonic() > deadline:
                return op
            time.sleep(poll)

    def patch(self, path: str, json: Any = None) -> Any:
        return self._check(self.http.patch(path, json=json, headers=self._headers()))

    def close(self) -> None:
        self.http.close()
