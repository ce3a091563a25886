"""Reading request bodies: orjson for speed, with a lenient second pass so NaN is reported, not choked on."""

from __future__ import annotations

import json
from typing import Any

import orjson
from django.conf import settings
from django.http import HttpRequest
from ninja import UploadedFile
from ninja.openapi.schema import REF_TEMPLATE
from ninja.parser import Parser
from pydantic import BaseModel

from monitoring.services import ServiceError, TooLarge, ValidationFailed

# Python's json.dumps writes these for float('nan') and float('inf'). They are not JSON (RFC 8259), so orjson refuses them.
_NON_FINITE_LITERALS = (b"NaN", b"Infinity")


def loads(raw: bytes) -> Any:
    """Parse JSON bytes with orjson.

    A body that orjson refuses only because it holds NaN or Infinity is parsed again with the
    standard library, which accepts them, so that the service can reject the value and name its row
    and field instead of answering "not JSON". Raises json.JSONDecodeError otherwise.
    """
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        if not any(literal in raw for literal in _NON_FINITE_LITERALS):
            raise
    try:
        return json.loads(raw)
    except RecursionError:
        # orjson stops at 1024 levels ("depth limit exceeded"); the standard library recurses until Python's
        # recursion limit, which a body of [[[[...]]]] with a NaN in it reaches.
        raise _TooDeep("depth limit exceeded: the body is nested more deeply than JSON bodies here may be", "", 0) from None


class _TooDeep(json.JSONDecodeError):
    def __str__(self) -> str:
        return self.msg  # no line and column: the whole body is at fault


class OrjsonParser(Parser):
    """ninja's body parser for schema-typed endpoints (orjson.JSONDecodeError is a json.JSONDecodeError)."""

    def parse_body(self, request: HttpRequest) -> Any:
        return loads(request.body)


def json_object_body(request: HttpRequest, key: str) -> list:
    """The list under `key` in a JSON object body, for endpoints that validate rows in a service."""
    return json_object(request, key)[key]


def json_object(request: HttpRequest, key: str) -> dict:
    """The JSON object body, checked to hold a list under `key` (its other fields are the caller's to read)."""
    try:
        body = loads(request.body)
    except json.JSONDecodeError as exc:
        raise ServiceError(f"The body is not valid JSON: {exc}") from None
    if not isinstance(body, dict) or not isinstance(body.get(key), list):
        raise ValidationFailed(f'The body must be a JSON object with a "{key}" list.')
    return body


def uploaded_file(request: HttpRequest, file: UploadedFile | None) -> tuple[bytes, str]:
    """(content, file name) of an upload sent as a multipart field or as the whole request body.

    The raw body is read from the stream, not through request.body, whose limit is the JSON endpoints'
    (DATA_UPLOAD_MAX_MEMORY_SIZE); RequestBodyLimitMiddleware has already refused a declared length over
    MAX_UPLOAD_BYTES, and the read stops one byte past it anyway. A chunked body (no Content-Length) is read
    only on a server that ends its stream (gunicorn), capped the same way; elsewhere Django reads none of
    it, so that gets its own message.
    """
    if file is not None:
        return file.read(), file.name or ""
    if request.content_type.startswith("multipart/"):
        raise ValidationFailed('The form has no "file" field.')
    limit = settings.MAX_UPLOAD_BYTES
    data = request.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(f"The request body is larger than {limit} bytes.")
    if not data and request.headers.get("Transfer-Encoding", "").lower() == "chunked":
        raise ValidationFailed("Send the file with a Content-Length: chunked bodies are not read.")
    if not data:
        raise ValidationFailed("Send the file as a multipart field named file, or as the request body.")
    return data, ""


def request_body_doc(model: type[BaseModel]) -> dict:
    """An OpenAPI requestBody for `model`, self-contained, for endpoints that read the body themselves."""
    schema = model.model_json_schema(ref_template=REF_TEMPLATE)
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(definitions[node["$ref"].rsplit("/", 1)[-1]])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    return {"requestBody": {"required": True, "content": {"application/json": {"schema": inline(schema)}}}}
