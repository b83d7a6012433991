"""A small client of the partner API over HTTP (httpx): what the demo seeding, the end-to-end tests
and partners' scripts use. Writes wait for their outcome by default; a problem answer raises."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx


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
        return self._check(response)

    def patch(self, path: str, json: Any = None) -> Any:
        return self._check(self.http.patch(path, json=json, headers=self._headers()))

    def close(self) -> None:
        self.http.close()
