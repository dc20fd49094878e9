"""Put-if-absent on S3: the one write of the publication that must never replace an object, a
Delta log entry (PROTOCOL.md, "Creation of New Log Entries": a writer must never overwrite a
version, so two racing writers of version N must not both succeed).

pyarrow's S3 file system cannot send a conditional PUT, so this module sends it itself: ``PUT``
with ``If-None-Match: *`` (S3's conditional writes, August 2024), signed with Signature V4
(``lake.sigv4``), over ``http.client``. S3 answers 200 when it created the object, 412
Precondition Failed when the key exists, 409 ConditionalRequestConflict while another
conditional write of the key is in flight: both of the latter are a lost race, never retried.
A transient answer (5xx, a dropped connection) is sent again; when a retry then finds the key
taken, the object is read back: our own bytes mean the earlier attempt landed.

An endpoint that ignores ``If-None-Match`` would let the second PUT replace the first, so
before its first commit a publisher probes the bucket once (``require_put_if_absent``: the same
new key PUT twice, conditionally; the second must answer 412) and refuses to publish there when
it does not: never the unsafe check-then-write.

Where the requests go is resolved as pyarrow resolves it for the same ``s3://`` location
(``lake.location``): the endpoint from the location's ``endpoint_override``/``scheme`` query
parameters, else ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``, else AWS's regional endpoint;
the region as pyarrow's file system resolved it; path-style addressing with an endpoint
override (as pyarrow does, unless ``force_virtual_addressing``), virtual-hosted on AWS. The
credentials are the environment's (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``), else the shared credentials file's profile (``AWS_PROFILE``, default
``default``); other sources pyarrow's SDK knows (instance roles, SSO) are not read here, and a
publisher without credentials it can sign with is told so.
"""
from __future__ import annotations

import configparser
import http.client
import logging
import os
import re
import ssl
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping
from urllib.parse import parse_qs, urlsplit

from pyspark_theflash.lake.errors import LakeLocationError
from pyspark_theflash.lake.sigv4 import Credentials, signed_headers, uri_encode

log = logging.getLogger(__name__)

TIMEOUT_S = 60.0
TRANSIENT_STATUS = frozenset({500, 502, 503, 504})
TAKEN_STATUS = frozenset({409, 412})   # exists, or another conditional write of it is in flight


class S3RequestError(LakeLocationError):
    """The endpoint answered a request with an error that is not a lost race: the status, S3's
    error code and message, and what to check."""

    def __init__(self, where: str, method: str, status: int, code: str, message: str) -> None:
        self.status, self.code = status, code
        hint = {403: "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or AWS_SESSION_TOKEN) and AWS_REGION",
                404: "check the bucket exists", 501: "the endpoint does not implement this request"}.get(
                    status, "check the endpoint (AWS_ENDPOINT_URL) and the credentials")
        super().__init__(f"{where}: {method} answered {status} {code or ''} ({message or 'no message'}); {hint}")


@dataclass(frozen=True)
class S3Endpoint:
    """Where a bucket's objects are requested and how the requests are signed."""

    scheme: str              # http or https
    host: str                # the endpoint's host, without the bucket
    port: int | None         # None: the scheme's default
    region: str
    virtual_hosted: bool     # bucket.host/key, else host/bucket/key

    @classmethod
    def of(cls, uri: str, region: str) -> "S3Endpoint":
        """The endpoint of an ``s3://bucket/prefix[?query]`` location, resolved as pyarrow does."""
        query = {k: v[-1] for k, v in parse_qs(urlsplit(uri).query).items()}
        override = query.get("endpoint_override") or os.environ.get("AWS_ENDPOINT_URL_S3") \
            or os.environ.get("AWS_ENDPOINT_URL") or ""
        region = region or query.get("region") or os.environ.get("AWS_REGION") \
            or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        force_virtual = query.get("force_virtual_addressing", "").lower() in ("1", "true")
        if not override:
            return cls("https", f"s3.{region}.amazonaws.com", None, region, True)
        if "://" not in override:
            override = f"{query.get('scheme', 'https')}://{override}"
        parts = urlsplit(override)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise LakeLocationError(f"{override}: not an S3 endpoint URL (http[s]://host[:port]); check AWS_ENDPOINT_URL")
        return cls(parts.scheme, parts.hostname, parts.port, region, force_virtual)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}" + (f":{self.port}" if self.port else "")

    def address(self, bucket: str, key: str) -> tuple[str, str]:
        """(the Host header, the encoded path) of an object."""
        port = f":{self.port}" if self.port else ""
        if self.virtual_hosted:
            return f"{bucket}.{self.host}{port}", "/" + uri_encode(key, True)
        return f"{self.host}{port}", f"/{bucket}/" + uri_encode(key, True)


def credentials() -> Credentials:
    """The credentials to sign with: the environment's, else the shared credentials file's profile."""
    access, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if access and secret:
        return Credentials(access, secret, os.environ.get("AWS_SESSION_TOKEN") or None)
    profile = os.environ.get("AWS_PROFILE") or os.environ.get("AWS_DEFAULT_PROFILE") or "default"
    path = Path(os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or Path.home() / ".aws" / "credentials").expanduser()
    shared = configparser.ConfigParser()
    try:
        shared.read(path)
    except configparser.Error as exc:  # (a damaged file is said so, not read as "no credentials")
        raise LakeLocationError(f"{path}: the AWS credentials file does not parse ({str(exc).splitlines()[0]}); "
                                "fix it, or give AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment") from exc
    if shared.has_option(profile, "aws_access_key_id") and shared.has_option(profile, "aws_secret_access_key"):
        return Credentials(shared.get(profile, "aws_access_key_id"), shared.get(profile, "aws_secret_access_key"),
                           shared.get(profile, "aws_session_token", fallback=None) or None)
    raise LakeLocationError("publishing to S3 signs the Delta log's conditional PUT itself and found no credentials: "
                            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary "
                            f"ones) in the environment, or profile [{profile}] in {path}")


@dataclass(frozen=True)
class _Answer:
    status: int
    body: bytes
    headers: Mapping[str, str]

    def error(self) -> tuple[str, str]:
        """S3's error code and message from the XML body (empty when there is none)."""
        text = self.body.decode(errors="replace")
        code = re.search(r"<Code>(.*?)</Code>", text, re.S)
        message = re.search(r"<Message>(.*?)</Message>", text, re.S)
        return (code.group(1) if code else ""), (message.group(1).strip() if message else "")


def _request(endpoint: S3Endpoint, creds: Credentials, method: str, bucket: str, key: str, body: bytes = b"",
             headers: Mapping[str, str] | None = None) -> _Answer:
    host, path = endpoint.address(bucket, key)
    amz_date = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    sent = signed_headers(creds, amz_date, endpoint.region, method, host, path, headers or {}, body)
    server = f"{bucket}.{endpoint.host}" if endpoint.virtual_hosted else endpoint.host
    conn: http.client.HTTPConnection
    if endpoint.scheme == "https":
        context = ssl.create_default_context(cafile=os.environ.get("AWS_CA_BUNDLE") or None)
        conn = http.client.HTTPSConnection(server, endpoint.port, timeout=TIMEOUT_S, context=context)
    else:
        conn = http.client.HTTPConnection(server, endpoint.port, timeout=TIMEOUT_S)
    try:
        conn.request(method, path, body=body if method == "PUT" else None, headers=sent)
        response = conn.getresponse()
        return _Answer(response.status, response.read(), {k.lower(): v for k, v in response.getheaders()})
    finally:
        conn.close()


def _where(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def put_if_absent(endpoint: S3Endpoint, bucket: str, key: str, data: bytes, attempts: int = 5,
                  first_delay_s: float = 0.25) -> bool:
    """PUT ``data`` at ``key`` unless an object is there: True when this call created it,
    False when the key was taken (412) or another conditional write of it was in flight
    (409). A transient failure is sent again (after ``first_delay_s``, doubling), up to
    ``attempts``; its outcome being unknown, a later 412 is checked by reading the object."""
    creds = credentials()
    unknown = False           # an earlier attempt may have landed
    last: Exception | None = None
    for attempt in range(max(1, attempts)):
        if attempt:
            time.sleep(first_delay_s * 2 ** (attempt - 1))
        try:
            answer = _request(endpoint, creds, "PUT", bucket, key, data, {"If-None-Match": "*"})
        except (OSError, http.client.HTTPException) as exc:   # refused, reset, timed out: it may have landed
            unknown, last = True, exc
            continue
        if answer.status == 200:
            return True
        if answer.status in TAKEN_STATUS:
            return unknown and _holds(endpoint, creds, bucket, key, data)
        code, message = answer.error()
        if answer.status in TRANSIENT_STATUS or code in ("SlowDown", "InternalError", "ServiceUnavailable"):
            unknown, last = True, S3RequestError(_where(bucket, key), "PUT", answer.status, code, message)
            continue
        raise S3RequestError(_where(bucket, key), "a conditional PUT (If-None-Match: *)", answer.status, code, message)
    raise LakeLocationError(f"{_where(bucket, key)}: the conditional PUT failed {attempts} times ({last}); "
                            f"the S3 endpoint {endpoint.url} is unreachable or failing: publish again once it answers")


def _holds(endpoint: S3Endpoint, creds: Credentials, bucket: str, key: str, data: bytes) -> bool:
    """Whether the object at ``key`` is ``data`` (an earlier attempt of ours landed)."""
    answer = _request(endpoint, creds, "GET", bucket, key)
    if answer.status == 404:
        return False
    if answer.status != 200:
        code, message = answer.error()
        raise S3RequestError(_where(bucket, key), "GET", answer.status, code, message)
    return answer.body == data


def delete(endpoint: S3Endpoint, bucket: str, key: str) -> None:
    answer = _request(endpoint, credentials(), "DELETE", bucket, key)
    if answer.status not in (200, 204, 404):
        code, message = answer.error()
        raise S3RequestError(_where(bucket, key), "DELETE", answer.status, code, message)


_probed: dict[tuple[str, str], bool] = {}
_probe_lock = threading.Lock()


def honours_put_if_absent(endpoint: S3Endpoint, bucket: str, prefix: str) -> bool:
    """Whether the endpoint refuses a second ``If-None-Match: *`` PUT of a key (once per
    endpoint and bucket in a process): a new key under ``prefix`` is PUT twice, then deleted.
    An endpoint that answers 501 Not Implemented to the header does not honour it either."""
    with _probe_lock:
        known = _probed.get((endpoint.url, bucket))
        if known is not None:
            return known
        key = f"{prefix.strip('/')}/.theflash-put-if-absent-probe-{uuid.uuid4().hex}".lstrip("/")
        try:
            first = put_if_absent(endpoint, bucket, key, b"first")
            second = put_if_absent(endpoint, bucket, key, b"second")
        except S3RequestError as exc:   # 501 Not Implemented: the header is not understood
            if exc.status != 501:
                raise
            first = second = True
        finally:
            try:
                delete(endpoint, bucket, key)
            except (LakeLocationError, OSError, http.client.HTTPException) as exc:
                # a stray probe object is harmless: no reader lists it as a table's file
                log.debug("the put-if-absent probe %s was not deleted: %s", _where(bucket, key), exc)
        if not first:
            raise LakeLocationError(f"{_where(bucket, key)}: a conditional PUT of a new key answered that it exists; "
                                    f"the S3 endpoint {endpoint.url} does not behave as S3")
        _probed[(endpoint.url, bucket)] = honoured = not second
        return honoured


def require_put_if_absent(endpoint: S3Endpoint, bucket: str, prefix: str) -> None:
    """Refuse (``LakeLocationError``) an endpoint that does not honour ``If-None-Match: *``."""
    if not honours_put_if_absent(endpoint, bucket, prefix):
        raise LakeLocationError(
            f"s3://{bucket}/{prefix}: the S3 endpoint {endpoint.url} ignores If-None-Match on PUT (a second "
            "conditional PUT of a new key replaced it instead of answering 412 Precondition Failed), so a Delta "
            "version written there could be overwritten by a racing publisher; TheFlash does not publish to it. "
            "Publish to an S3 endpoint with conditional writes (AWS S3, SeaweedFS 4) or to a local or shared directory")
