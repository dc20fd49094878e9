"""The bearer token a read sends to a TheFlash API service started with ``--token-file``
(``theflash serve``, ``writer run --serve-token-file``).

The same rules as the JVM connector's ``BearerToken`` (jvm-shim/README.md, "Bearer token"):
option ``token``, else option ``token_file`` (its first line, read by the driver as it plans
the read), else the ``THEFLASH_TOKEN`` environment variable of the process that sends it. The
options' token travels to the executors inside the planned partitions; the environment's is
looked up where the call is made. Only :meth:`BearerToken.header` gives the value: ``repr``,
``str`` and every message name where the token came from, so a partition, a plan or an error
can be printed or logged without it.
"""
from __future__ import annotations

import os
from pathlib import Path

from pyspark_theflash.engine.partition import ServiceToken
from pyspark_theflash.scan.errors import ScanOptionError

TOKEN_ENVIRONMENT = "THEFLASH_TOKEN"

# said on a 401 when the read sent no token (the JVM connector says the same)
NO_TOKEN_ADVICE = (f"this read sent no token: give it with option token or token_file, or set {TOKEN_ENVIRONMENT} "
                   "on the driver and the executors")


class BearerToken:
    """A token and where it came from (``option token``, ``option token_file /etc/t``, ``the
    THEFLASH_TOKEN environment variable``). Picklable: Spark ships it to the executors."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str) -> None:
        for position, char in enumerate(value, start=1):
            if not 0x21 <= ord(char) <= 0x7E:
                # refused here: http.client's own refusal of a header value quotes the value
                raise ScanOptionError(f"the bearer token from {source} has a character at position {position} that "
                                      "an HTTP header cannot carry (a token is printable ASCII without spaces)")
        self._value = value
        self.source = source

    @staticmethod
    def from_options(token: str | None, token_file: str | None) -> "BearerToken | None":
        """The token the read's options give (``token`` over ``token_file``), or None: then the
        sender's ``THEFLASH_TOKEN`` is used, if set. A blank option counts as not given."""
        if token is not None and str(token).strip():
            return BearerToken(str(token).strip(), "option token")
        if token_file is None or not str(token_file).strip():
            return None
        path = str(token_file).strip()
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ScanOptionError(f"cannot read the token file {path} (option token_file): {exc}") from None
        first = text.strip().splitlines()[0].strip() if text.strip() else ""
        if not first:
            raise ScanOptionError(f"the token file {path} (option token_file) is empty: put the bearer token on "
                                  "its first line")
        return BearerToken(first, f"option token_file {path}")

    @staticmethod
    def from_environment() -> "BearerToken | None":
        """This process's ``THEFLASH_TOKEN``, or None when it is unset or blank."""
        token = os.environ.get(TOKEN_ENVIRONMENT, "").strip()
        return BearerToken(token, f"the {TOKEN_ENVIRONMENT} environment variable") if token else None

    def header(self) -> str:
        """The ``Authorization`` header's value."""
        return f"Bearer {self._value}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BearerToken) and (self._value, self.source) == (other._value, other.source)

    def __hash__(self) -> int:
        return hash((self._value, self.source))

    def __repr__(self) -> str:
        return f"BearerToken(from {self.source})"

    def __getstate__(self) -> tuple[str, str]:
        return self._value, self.source

    def __setstate__(self, state: tuple[str, str]) -> None:
        self._value, self.source = state


def sent_token(given: ServiceToken | None) -> ServiceToken | None:
    """The token a call sends: the read's own (its options'), else this process's
    ``THEFLASH_TOKEN``, else none."""
    return given if given is not None else BearerToken.from_environment()


def unauthenticated_advice(sent: ServiceToken | None) -> str:
    """What to add to a service's 401: where the token sent came from, or how to give one."""
    return NO_TOKEN_ADVICE if sent is None else f"this read sent the bearer token from {sent.source}"
