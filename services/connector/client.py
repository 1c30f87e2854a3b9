"""A client of the regional gateway (openapi.yaml), for the CM connector, the simulators and
the tests: HTTPS with the configured CA, a bearer token, JSON in and out."""

from __future__ import annotations

import base64
import json
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Iterable

import aiohttp

__all__ = ["GatewayClient", "GatewayError", "TokenFile"]


class GatewayError(Exception):
    """An answer other than success: the status, the gateway's error code and message."""

    def __init__(self, status: int, code: str, message: str, body: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.body = status, code, body


@dataclass(frozen=True)
class TokenFile:
    """What a CM connector is configured with for one tenant: where its gateway is, and its
    token (a JSON file, written by ``mdmbus token --write`` or the demo)."""

    tenant_id: str
    gateway: str
    token: str

    @classmethod
    def read(cls, path: Path) -> "TokenFile":
        data = json.loads(path.read_text())
        return cls(data["tenant_id"], data["gateway"], data["token"])


class GatewayClient:
    def __init__(self, base_url: str, token: str, ssl_context: ssl.SSLContext,
                 timeout_s: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ssl_context),
            timeout=aiohttp.ClientTimeout(total=timeout_s))

    async def close(self) -> None:
        await self._session.close()

    async def __aenter__(self) -> "GatewayClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def _headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", **extra}

    async def request(self, method: str, path: str, **kw: Any) -> Any:
        async with self._session.request(method, self.base_url + path,
                                         headers=self._headers(**kw.pop("headers", {})),
                                         **kw) as response:
            text = await response.text()
            body = json.loads(text) if text and response.content_type == "application/json" \
                else text
            if response.status >= 400:
                error = body if isinstance(body, dict) else {}
                raise GatewayError(response.status, error.get("error", "error"),
                                   error.get("message", str(text)[:200]), body)
            return body

    async def upload(self, lines: Iterable[dict]) -> dict:
        """Records in the JSON form (``{"kind", "record"}`` each)."""
        data = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
        return await self.request("POST", "/v1/records", data=data,
                                  headers={"Content-Type": "application/x-ndjson"})

    async def upload_avro(self, messages: Iterable[bytes]) -> dict:
        """Single-object-encoded records, length-prefixed."""
        data = b"".join(len(m).to_bytes(4, "big") + m for m in messages)
        return await self.request("POST", "/v1/records", data=data,
                                  headers={"Content-Type": "application/vnd.mdmbus.avro-batch"})

    async def download(self, limit: int = 100, wait: float = 0.0) -> list[dict]:
        """Pending relay records, oldest first; each with its ``value`` decoded from base64."""
        body = await self.request("GET", "/v1/relay", params={"limit": limit, "wait": wait})
        for record in body["records"]:
            record["value"] = base64.b64decode(record["value"])
        return body["records"]

    async def ack(self, record_ids: Iterable[str], cm_committed_at: str | None = None) -> dict:
        body: dict[str, Any] = {"record_ids": list(record_ids)}
        if cm_committed_at:
            body["cm_committed_at"] = cm_committed_at
        return await self.request("POST", "/v1/relay/ack", json=body)

    async def status(self) -> dict:
        return await self.request("GET", "/v1/status")

    async def export(self) -> AsyncIterator[dict]:
        async with self._session.get(self.base_url + "/v1/export",
                                     headers=self._headers()) as response:
            if response.status >= 400:
                body = await response.json()
                raise GatewayError(response.status, body.get("error", "error"),
                                   body.get("message", ""), body)
            async for line in response.content:
                if line.strip():
                    yield json.loads(line)

    async def delete(self) -> dict:
        """A cancellation with a deletion request; the erasure receipt."""
        return await self.request("POST", "/v1/deletion-request")

    async def receipt(self, receipt_id: str) -> dict:
        return await self.request("GET", f"/v1/erasure-receipts/{receipt_id}")
