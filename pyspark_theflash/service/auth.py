"""Bearer tokens: with ``--token-file`` every call must carry ``Authorization: Bearer <token>``
(HTTP header, or the same gRPC metadata on Flight calls)."""
from __future__ import annotations

import hmac
from pathlib import Path

from pyspark_theflash.service.errors import ServiceError, UnauthenticatedError


def read_token_file(path: str | Path) -> str:
    """The token: the file's first line, stripped. An unreadable or empty file is an error (a
    service that was asked to need a token must never start without one)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ServiceError(f"cannot read the token file {path}: {exc}", code="config", status=500) from None
    token = text.strip().splitlines()[0].strip() if text.strip() else ""
    if not token:
        raise ServiceError(f"the token file {path} is empty: put the bearer token on its first line",
                           code="config", status=500)
    return token


class BearerAuth:
    """Checks an Authorization header value against the token (None: no token needed)."""

    def __init__(self, token: str | None) -> None:
        self.token = token

    @property
    def required(self) -> bool:
        return self.token is not None

    def check(self, authorization: str | None) -> None:
        if self.token is None:
            return
        if not authorization:
            raise UnauthenticatedError("this service needs a bearer token: send the header "
                                       "'Authorization: Bearer <token>' (the token is in the server's --token-file)")
        scheme, _, given = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.token.encode()):
            raise UnauthenticatedError("the bearer token is wrong (compare it with the server's --token-file)")
