"""A connector for any HTTP service that publishes an OpenAPI document.

Each operation with an ``operationId`` becomes one tool. Its JSON-schema parameters merge
the path parameters, the query parameters and the properties of the JSON request body,
with ``$ref`` resolved and titles dropped, so the caller model sees one flat object.
GET and HEAD are reads, everything else writes, unless the operation says otherwise with
``x-umiq-effect: read|write``. Writes carry the ``Idempotency-Key`` header.

Deriving the tools (``tools_from_openapi``) is pure; only ``HttpConnector`` does I/O.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from connectors._base import ToolCall, ToolResult, ToolSpec
from connectors._errors import (
    ConnectorError,
    ConnectorTimeout,
    ConnectorUnavailable,
    InvalidArguments,
    UnknownTool,
)
from connectors._schema import validate_arguments

_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_READ_METHODS = ("get", "head")
_IDEMPOTENCY_HEADER = "Idempotency-Key"
_BODY_ARGUMENT = "body"  # where a request body that is not an object goes


@dataclass(frozen=True)
class Operation:
    """How to turn a call of one tool into an HTTP request."""

    spec: ToolSpec
    method: str
    path: str
    path_params: tuple[str, ...] = ()
    query_params: tuple[str, ...] = ()
    body_params: tuple[str, ...] = ()
    body_required: bool = False
    body_whole: bool = False  # the body is the single ``body`` argument, not its properties


def tools_from_openapi(openapi: Mapping[str, Any], connector: str = "") -> list[ToolSpec]:
    """One ToolSpec per operationId of an OpenAPI 3 document, in document order."""
    return [op.spec for op in operations_from_openapi(openapi, connector).values()]


def operations_from_openapi(
    openapi: Mapping[str, Any], connector: str = ""
) -> dict[str, Operation]:
    """The operations of an OpenAPI 3 document, by tool name."""
    operations: dict[str, Operation] = {}
    for path, item in openapi.get("paths", {}).items():
        item = _deref(openapi, item)
        shared = item.get("parameters", [])
        for method in _METHODS:
            if method in item and item[method].get("operationId"):
                op = _operation(openapi, connector, path, method, item[method], shared)
                if op.spec.name in operations:
                    raise ValueError(f"OpenAPI document: operationId {op.spec.name!r} repeats")
                operations[op.spec.name] = op
    return operations


def _operation(
    doc: Mapping[str, Any],
    connector: str,
    path: str,
    method: str,
    raw: Mapping[str, Any],
    shared: Sequence[Any],
) -> Operation:
    name = re.sub(r"\W", "_", raw["operationId"])
    properties: dict[str, Any] = {}
    required: list[str] = []
    where: dict[str, list[str]] = {"path": [], "query": []}

    def add(arg: str, schema: dict[str, Any], is_required: bool) -> None:
        if arg in properties:
            raise ValueError(f"operation {name}: argument {arg!r} appears twice")
        properties[arg] = schema
        if is_required:
            required.append(arg)

    # operation-level parameters override path-item ones with the same name and place
    params = {}
    for param in [*shared, *raw.get("parameters", [])]:
        param = _deref(doc, param)
        params[(param["name"], param["in"])] = param
    for (arg, place), param in params.items():
        if place not in where:  # headers and cookies are the connector's business
            continue
        schema = _clean(doc, param.get("schema", {"type": "string"}))
        if param.get("description"):
            schema["description"] = param["description"]
        add(arg, schema, place == "path" or bool(param.get("required")))
        where[place].append(arg)

    body_params: list[str] = []
    body_required, body_whole = False, False
    body = _json_body(doc, raw)
    if body is not None:
        body_required = bool(body.get("required"))
        schema = _clean(doc, body.get("schema", {}))
        if schema.get("type", "object") == "object" and "properties" in schema:
            body_fields = set(schema.get("required", []))
            for arg, sub in schema["properties"].items():
                add(arg, sub, body_required and arg in body_fields)
                body_params.append(arg)
        else:
            add(_BODY_ARGUMENT, schema, body_required)
            body_params.append(_BODY_ARGUMENT)
            body_whole = True

    effect = raw.get("x-umiq-effect") or ("read" if method in _READ_METHODS else "write")
    description = (raw.get("description") or raw.get("summary") or name).strip()
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        parameters["required"] = required
    return Operation(
        spec=ToolSpec(
            name=name,
            description=description,
            parameters=parameters,
            effect=effect,
            connector=connector,
        ),
        method=method.upper(),
        path=path,
        path_params=tuple(where["path"]),
        query_params=tuple(where["query"]),
        body_params=tuple(body_params),
        body_required=body_required,
        body_whole=body_whole,
    )


def _json_body(doc: Mapping[str, Any], raw: Mapping[str, Any]) -> dict[str, Any] | None:
    if "requestBody" not in raw:
        return None
    body = _deref(doc, raw["requestBody"])
    for media, content in body.get("content", {}).items():
        if media == "application/json" or media.endswith("+json"):
            return {"required": body.get("required", False), "schema": content.get("schema", {})}
    return None


def _deref(doc: Mapping[str, Any], node: Any) -> Any:
    """Follow a local ``$ref`` (``#/components/...``) to what it points at."""
    seen = set()
    while isinstance(node, Mapping) and "$ref" in node:
        ref = node["$ref"]
        if ref in seen or not ref.startswith("#/"):
            raise ValueError(f"OpenAPI document: cannot resolve $ref {ref!r}")
        seen.add(ref)
        target: Any = doc
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, Mapping) or part not in target:
                raise ValueError(f"OpenAPI document: $ref {ref!r} points at nothing")
            target = target[part]
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        node = {**target, **siblings} if siblings else target
    return node


def _clean(doc: Mapping[str, Any], schema: Any, stack: tuple[str, ...] = ()) -> Any:
    """A self-contained copy of ``schema``: refs inlined, titles dropped, Optional unwrapped."""
    if isinstance(schema, list):
        return [_clean(doc, item, stack) for item in schema]
    if not isinstance(schema, Mapping):
        return copy.deepcopy(schema)
    if "$ref" in schema:
        ref = schema["$ref"]
        if ref in stack:  # a recursive model: stop at an open object
            return {"type": "object"}
        return _clean(doc, _deref(doc, schema), (*stack, ref))
    out = {
        key: value if key in ("enum", "const", "default", "examples") else _clean(doc, value, stack)
        for key, value in schema.items()
        if key != "title"
    }
    if isinstance(out.get("properties"), Mapping):  # property names are not keywords
        out["properties"] = {
            arg: _clean(doc, sub, stack) for arg, sub in schema["properties"].items()
        }
    # Optional[X] (anyOf X, null) -> X: an absent argument already means "none"
    options = out.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:
        rest = [option for option in options if option != {"type": "null"}]
        if len(rest) == 1:
            del out["anyOf"]
            out = {**rest[0], **out}
            if out.get("default") is None:
                out.pop("default", None)
    return out


def _error_message(response: httpx.Response) -> str:
    """The server's own words for a refusal: FastAPI's ``detail``, or ``error``/``message``."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip() or f"HTTP {response.status_code}"
    if isinstance(body, Mapping):
        for key in ("detail", "error", "message"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
            if isinstance(value, list) and value:  # FastAPI/pydantic validation errors
                return "; ".join(_validation_item(item) for item in value)
    return str(body)


def _validation_item(item: Any) -> str:
    if not isinstance(item, Mapping):
        return str(item)
    loc = [str(part) for part in item.get("loc", [])]
    if loc and loc[0] in ("body", "query", "path"):
        loc = loc[1:]
    where = ".".join(loc)
    message = item.get("msg", str(item))
    return f"{where}: {message}" if where else message


class HttpConnector:
    """A connector to an HTTP service, its tools derived from the service's OpenAPI doc.

    ``openapi`` is fetched from ``<base_url>/openapi.json`` when not given. Pass a
    ``client`` to share a connection pool or to test with ``httpx.MockTransport``; a
    client the connector made itself is closed by ``close()``.
    """

    def __init__(
        self,
        name: str,
        base_url: str,
        openapi: Mapping[str, Any] | None = None,
        client: httpx.Client | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self._owns_client = client is None
        self._client = client if client is not None else httpx.Client(timeout=timeout)
        self._timeout = timeout
        if openapi is None:
            openapi = self._fetch_openapi()
        self.openapi = openapi
        self._operations = operations_from_openapi(openapi, connector=name)

    @classmethod
    def from_url(
        cls,
        name: str,
        base_url: str,
        *,
        client: httpx.Client | None = None,
        timeout: float = 10.0,
    ) -> HttpConnector:
        """A connector whose tools come from the live ``<base_url>/openapi.json``."""
        return cls(name, base_url, openapi=None, client=client, timeout=timeout)

    def tools(self) -> Sequence[ToolSpec]:
        """The tools, one per operationId."""
        return [op.spec for op in self._operations.values()]

    def invoke(self, call: ToolCall, idempotency_key: str) -> ToolResult:
        """Validate ``call``, send it, and return the service's answer.

        A 2xx is ``ok``; a 4xx is a refusal the model may read (``ok=False`` with the
        server's message); a 5xx or a transport failure raises ConnectorUnavailable
        (ConnectorTimeout when it did not answer in time), so the task can be retried
        with the same idempotency key.
        """
        request = self._request(call, idempotency_key)
        response = self._send(request, call.tool)
        if response.is_success:
            return ToolResult(ok=True, data=_json_or_text(response), status=response.status_code)
        if response.is_client_error:
            return ToolResult(ok=False, error=_error_message(response), status=response.status_code)
        raise ConnectorUnavailable(
            f"{self.name}: {call.tool} failed with HTTP {response.status_code}: "
            f"{_error_message(response)}"
        )

    def dry_run(self, call: ToolCall, idempotency_key: str) -> ToolResult:
        """Validate ``call`` and build its request exactly as ``invoke`` would, without
        sending it (a department in shadow): the data is the request that would go out."""
        request = self._request(call, idempotency_key)
        body = request.content.decode("utf-8") if request.content else None
        would_send: dict[str, Any] = {
            "method": request.method,
            "url": str(request.url),
            "headers": {
                k: v for k, v in request.headers.items() if k.lower() == _IDEMPOTENCY_HEADER.lower()
            },
            "json": json.loads(body) if body else None,
        }
        return ToolResult(ok=True, data={"dry_run": True, "sent": False, "would_send": would_send})

    def _request(self, call: ToolCall, idempotency_key: str) -> httpx.Request:
        op = self._operations.get(call.tool)
        if op is None:
            known = ", ".join(self._operations) or "none"
            raise UnknownTool(
                f"connector {self.name!r} has no tool {call.tool!r} (it has: {known})"
            )
        try:
            validate_arguments(op.spec.parameters, call.arguments)
        except InvalidArguments as exc:
            raise InvalidArguments(f"{call.tool}: {exc}") from exc
        headers = {"Accept": "application/json"}
        if op.spec.effect == "write":
            if not idempotency_key:
                raise ConnectorError(
                    f"refusing write {call.tool!r} without an idempotency key: a retried "
                    "task could repeat it"
                )
            headers[_IDEMPOTENCY_HEADER] = idempotency_key
        return self._client.build_request(
            op.method,
            self.base_url + _fill_path(op, call.arguments),
            params={
                k: _query_value(call.arguments[k]) for k in op.query_params if k in call.arguments
            },
            json=_body(op, call.arguments),
            headers=headers,
            timeout=self._timeout,
        )

    def close(self) -> None:
        """Close the HTTP client if this connector made it."""
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> HttpConnector:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _fetch_openapi(self) -> Mapping[str, Any]:
        url = f"{self.base_url}/openapi.json"
        request = self._client.build_request("GET", url, timeout=self._timeout)
        response = self._send(request, "openapi.json")
        if not response.is_success:
            raise ConnectorUnavailable(
                f"{self.name}: GET {url} answered HTTP {response.status_code}"
            )
        try:
            document = response.json()
        except ValueError as exc:
            raise ConnectorError(f"{self.name}: {url} is not JSON") from exc
        if not isinstance(document, Mapping) or "paths" not in document:
            raise ConnectorError(f"{self.name}: {url} is not an OpenAPI document (no 'paths')")
        return document

    def _send(self, request: httpx.Request, what: str) -> httpx.Response:
        try:
            return self._client.send(request)
        except httpx.TimeoutException as exc:
            raise ConnectorTimeout(
                f"{self.name}: {what} got no answer from {self.base_url} in {self._timeout}s"
            ) from exc
        except httpx.TransportError as exc:
            raise ConnectorUnavailable(
                f"{self.name}: cannot reach {self.base_url} for {what}: {exc}"
            ) from exc


def _fill_path(op: Operation, arguments: Mapping[str, Any]) -> str:
    def value(match: re.Match[str]) -> str:
        text = quote(_query_value(arguments[match.group(1)]), safe="")
        if text in ("", ".", ".."):
            # "." and ".." survive quoting and would name another endpoint once the
            # URL is normalised (/invoices/.. is /): an id is never one of them
            raise InvalidArguments(
                f"{op.spec.name}: path parameter {match.group(1)!r} must not be empty, '.' or '..'"
            )
        return text

    return re.sub(r"\{([^}/]+)\}", value, op.path)


def _query_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return [_query_value(v) for v in value]
    return str(value)


def _body(op: Operation, arguments: Mapping[str, Any]) -> Any:
    if op.body_whole:
        return arguments.get(_BODY_ARGUMENT)
    fields = {k: arguments[k] for k in op.body_params if k in arguments}
    if fields or op.body_required:
        return fields
    return None


def _json_or_text(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return response.text
