"""The one error type API handlers raise. The HTTP layer turns it into a JSON string answer."""

from __future__ import annotations


class ApiError(Exception):
    """A refused request: `status` is the HTTP status, `message` the JSON string answered."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def bad_request(message: str) -> ApiError:
    return ApiError(message, 400)


def not_found(message: str) -> ApiError:
    return ApiError(message, 404)


def forbidden(message: str = "forbidden") -> ApiError:
    return ApiError(message, 403)
