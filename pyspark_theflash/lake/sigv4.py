"""AWS Signature Version 4 (``AWS4-HMAC-SHA256``) for one request in the ``Authorization``
header, written from AWS's own description ("Create a signed AWS API request", and for S3
"Signature Calculations for the Authorization Header: Transferring Payload in a Single Chunk"):
the canonical request, the string to sign, the signing key derived from the secret by four
HMAC-SHA256 steps (date, region, service, ``aws4_request``), and the header.

It exists for one request pyarrow cannot send: the Delta log's conditional PUT
(``lake.s3_put``). It is checked against AWS's published vectors (the generic test suite's
``get-vanilla`` and the S3 guide's PUT Object example: ``tests/unit/test_lake_sigv4.py``), not
against a server, which may be lenient.

Paths follow S3's rule: the key is URI-encoded once (every byte but ``A-Za-z0-9-._~`` and
``/``), and the same encoded path is both sent and signed (other services encode it twice;
S3 does not).
"""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Mapping, Sequence
from urllib.parse import quote

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True)
class Credentials:
    """An access key pair, and the session token of temporary credentials (sent as
    ``x-amz-security-token`` and signed)."""

    access_key: str
    secret_key: str
    session_token: str | None = None

    def __repr__(self) -> str:  # never the secret in a log or a traceback
        return f"Credentials(access_key={self.access_key!r}, secret_key=..., session_token={'...' if self.session_token else None})"


def uri_encode(text: str, keep_slash: bool) -> str:
    """AWS's ``UriEncode``: every byte of the UTF-8 form but the unreserved ones as ``%XY``
    (upper-case hex); ``/`` kept in a path, encoded in a query value."""
    return quote(text, safe="/~" if keep_slash else "~")


def canonical_query(query: Sequence[tuple[str, str]]) -> str:
    """The query string: each name and value encoded, sorted by name then value."""
    return "&".join(f"{k}={v}" for k, v in sorted((uri_encode(k, False), uri_encode(v, False)) for k, v in query))


def canonical_request(method: str, path: str, query: Sequence[tuple[str, str]], headers: Mapping[str, str],
                      payload_sha256: str) -> tuple[str, str]:
    """(the canonical request, its signed header names): ``path`` already encoded as sent;
    every header in ``headers`` is signed, its name lower-cased, its value trimmed with inner
    runs of spaces made one."""
    canonical = {name.lower(): " ".join(value.strip().split()) for name, value in headers.items()}
    names = sorted(canonical)
    signed = ";".join(names)
    lines = "".join(f"{n}:{canonical[n]}\n" for n in names)
    return "\n".join([method, path, canonical_query(query), lines, signed, payload_sha256]), signed


def scope(date: str, region: str, service: str) -> str:
    return f"{date}/{region}/{service}/aws4_request"


def string_to_sign(amz_date: str, credential_scope: str, request: str) -> str:
    return "\n".join([ALGORITHM, amz_date, credential_scope, hashlib.sha256(request.encode()).hexdigest()])


def signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret_key).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def authorization(credentials: Credentials, amz_date: str, region: str, service: str, method: str, path: str,
                  query: Sequence[tuple[str, str]], headers: Mapping[str, str], payload_sha256: str) -> str:
    """The ``Authorization`` header of a request whose headers (``host``, ``x-amz-date`` =
    ``amz_date`` and, for S3, ``x-amz-content-sha256``, among them) are all signed."""
    request, signed = canonical_request(method, path, query, headers, payload_sha256)
    credential_scope = scope(amz_date[:8], region, service)
    key = signing_key(credentials.secret_key, amz_date[:8], region, service)
    signature = hmac.new(key, string_to_sign(amz_date, credential_scope, request).encode(), hashlib.sha256).hexdigest()
    return (f"{ALGORITHM} Credential={credentials.access_key}/{credential_scope}, SignedHeaders={signed}, "
            f"Signature={signature}")


def signed_headers(credentials: Credentials, amz_date: str, region: str, method: str, host: str, path: str,
                   headers: Mapping[str, str], payload: bytes, service: str = "s3") -> dict[str, str]:
    """Every header of an S3 request with no query: ``headers`` plus ``Host``, ``x-amz-date``,
    ``x-amz-content-sha256`` (the payload's hash: a signed payload), the session token if any,
    and ``Authorization`` over all of them."""
    payload_sha256 = hashlib.sha256(payload).hexdigest()
    out = {**headers, "Host": host, "x-amz-date": amz_date, "x-amz-content-sha256": payload_sha256}
    if credentials.session_token:
        out["x-amz-security-token"] = credentials.session_token
    out["Authorization"] = authorization(credentials, amz_date, region, service, method, path, (), out, payload_sha256)
    return out
