"""Status objects, the API server's error answers (and how kubectl prints them).

``ApiError`` carries the HTTP code and the Status body; handlers raise it and the server writes it.
Messages follow kube-apiserver's wording, which kubectl shows as ``Error from server (Reason): message``.
"""

from __future__ import annotations

from typing import Any

from podnet.api.resources import Resource

REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed",
           406: "NotAcceptable", 409: "AlreadyExists", 410: "Expired", 415: "UnsupportedMediaType",
           422: "Invalid", 500: "InternalError", 504: "Timeout"}


class ApiError(Exception):
    def __init__(self, code: int, message: str, reason: str | None = None,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or REASONS.get(code, "Unknown")
        self.details = details

    def status(self) -> dict[str, Any]:
        return status(self.code, self.message, self.reason, self.details)


def status(code: int, message: str, reason: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                            "message": message, "reason": reason}
    if details:
        body["details"] = details
    body["code"] = code
    return body


def success(res: Resource, name: str, uid: str = "") -> dict[str, Any]:
    details: dict[str, Any] = {"name": name, "kind": res.plural}
    if res.group:
        details["group"] = res.group
    if uid:
        details["uid"] = uid
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}


def _details(res: Resource, name: str) -> dict[str, Any]:
    d: dict[str, Any] = {"name": name}
    if res.group:
        d["group"] = res.group
    d["kind"] = res.plural
    return d


def not_found(res: Resource, name: str) -> ApiError:
    return ApiError(404, f'{res.qualified} "{name}" not found', "NotFound", _details(res, name))


def already_exists(res: Resource, name: str) -> ApiError:
    return ApiError(409, f'{res.qualified} "{name}" already exists', "AlreadyExists", _details(res, name))


def conflict(res: Resource, name: str) -> ApiError:
    return ApiError(409, f'Operation cannot be fulfilled on {res.qualified} "{name}": the object has been '
                    "modified; please apply your changes to the latest version and try again", "Conflict",
                    _details(res, name))


def namespace_not_found(ns: str) -> ApiError:
    return ApiError(404, f'namespaces "{ns}" not found', "NotFound", {"name": ns, "kind": "namespaces"})


def invalid(res: Resource, name: str, causes: list[tuple[str, str, str]]) -> ApiError:
    """422 Invalid; ``causes`` are (reason, field, message) with reason FieldValueInvalid, FieldValueForbidden..."""
    texts = [f"{f}: {m}" if f else m for _, f, m in causes]
    joined = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    details: dict[str, Any] = {"name": name}
    if res.group:
        details["group"] = res.group
    details["kind"] = res.kind
    details["causes"] = [{"reason": r, "message": m, "field": f} for r, f, m in causes]
    return ApiError(422, f'{res.kind} "{name}" is invalid: {joined}', "Invalid", details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, message, "BadRequest")


def method_not_allowed() -> ApiError:
    return ApiError(405, "the server does not allow this method on the requested resource", "MethodNotAllowed")


def no_resource() -> ApiError:
    return ApiError(404, "the server could not find the requested resource", "NotFound")


def expired(rv: int | str) -> ApiError:
    return ApiError(410, f"too old resource version: {rv}", "Expired")
