"""JSON request bodies of the hub's own (non-FHIR) routes go through the one JSON reader.

FastAPI parses a JSON body with ``json.loads``, which accepts ``NaN``, duplicate member names and
nesting deep enough to raise ``RecursionError`` (a 500). :class:`JsonBodyRoute` reads the body with
:func:`mappings.fhir.jsonio.loads` first, with its refusals (depth, encoding, NaN, duplicates, lone
surrogates), and answers 400 with a problem that names the body and the place in it; the value it
read is what FastAPI then validates against the route's pydantic model, so the request models and
the OpenAPI schemas stay as they are.

Use it as ``APIRouter(route_class=JsonBodyRoute)``.
"""

from __future__ import annotations

import email.message
from collections.abc import Awaitable, Callable

from fastapi import Request, Response
from fastapi.routing import APIRoute

from hub.errors import BadRequest
from mappings.fhir import jsonio


def reads_as_json(content_type: str | None, *, strict: bool = True) -> bool:
    """Whether FastAPI would parse a body with this Content-Type as JSON (its own rule)."""
    if not content_type:
        return not strict
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


class JsonBodyRoute(APIRoute):
    """An APIRoute whose JSON body is read by :func:`jsonio.loads` before FastAPI validates it."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:  # no body to read
            return handler
        strict = getattr(self.strict_content_type, "value", self.strict_content_type)

        async def read_checked(request: Request) -> Response:
            if reads_as_json(request.headers.get("content-type"), strict=bool(strict)):
                body = await request.body()
                if body:
                    try:
                        value = jsonio.loads(body, exact_numbers=False)
                    except jsonio.InvalidJson as exc:
                        raise BadRequest(f"The body is not valid JSON: {exc}", expression="body") from None
                    request._json = value  # what request.json() returns to FastAPI's own reading
            return await handler(request)

        return read_checked
