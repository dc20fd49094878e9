"""The SQL a native-engine store answers over Flight SQL: one table, its columns, a pushed
filter, a row limit, a snapshot. Parsed into a read request (``service/request.py``), so a SQL
client reads exactly what a read session reads.

    SELECT <* | col, ...> FROM [theflash.]db.table
        [AS OF TSO <ts> | AS OF TIMESTAMP '<time>']
        [WHERE <predicate>] [LIMIT <n>] [;]

A predicate is ``col <op> literal`` (``= != <> < <= > >=``, either side), ``col [NOT] IN
(literal, ...)``, ``col IS [NOT] NULL``, ``col [NOT] BETWEEN a AND b``, ``col [NOT] LIKE
'prefix%'``, combined with ``AND``, ``OR``, ``NOT`` and parentheses. Literals: integers,
decimals (exact), ``1e3`` (a double), ``'text'`` (also dates and times, read by the column's
type), ``TRUE``/``FALSE``. Identifiers may be quoted with backquotes or double quotes. Anything
else is refused with :class:`UnsupportedSqlError`, which says what is supported; nothing is
ever read with a clause ignored.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from pyspark_theflash.service.errors import BadRequestError

CATALOG = "theflash"
SUPPORTED = ("SELECT <* | col, ...> FROM db.table [AS OF TSO <ts> | AS OF TIMESTAMP '<time>'] "
             "[WHERE col = | != | < | <= | > | >= literal, col [NOT] IN (...), col IS [NOT] NULL, "
             "col [NOT] BETWEEN a AND b, col [NOT] LIKE 'prefix%', with AND / OR / NOT / ( )] [LIMIT n]")


class UnsupportedSqlError(BadRequestError):
    """A statement outside the subset a native-engine store answers (or not SQL at all)."""

    code, status = "unsupported_sql", 400


@dataclass(frozen=True)
class SelectStatement:
    table: str                          # db.table
    columns: tuple[str, ...] | None     # None: every visible column
    filter: list[object] | None            # the read request's filter (conjuncts)
    limit: int | None
    snapshot_ts: int | None             # AS OF TSO
    as_of: str | None                   # AS OF TIMESTAMP

    def read_request(self) -> dict[str, object]:
        """The statement as a read request's fields (without its store)."""
        out: dict[str, object] = {"table": self.table}
        if self.columns is not None:
            out["columns"] = list(self.columns)
        if self.filter:
            out["filter"] = self.filter
        if self.snapshot_ts is not None:
            out["snapshot_ts"] = self.snapshot_ts
        if self.as_of is not None:
            out["as_of"] = self.as_of
        return out


_TOKEN = re.compile(r"""
    (?P<ws>\s+|--[^\n]*|/\*.*?\*/)
  | (?P<num>\d+\.\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|\d+(?:[eE][-+]?\d+)?)
  | (?P<str>'(?:[^']|'')*')
  | (?P<qid>`(?:[^`]|``)+`|"(?:[^"]|"")+")
  | (?P<id>[A-Za-z_][A-Za-z0-9_$]*)
  | (?P<op><=|>=|<>|!=|==|[=<>(),.*;-])
""", re.X | re.S)
_KEYWORDS = {"select", "from", "where", "limit", "and", "or", "not", "in", "is", "null", "between", "like",
             "as", "of", "tso", "timestamp", "true", "false"}
_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "=": "=", "!=": "!=", "<>": "<>", "==": "=="}


@dataclass(frozen=True)
class _Tok:
    kind: str    # num, str, id (bare), qid (quoted), op, kw
    text: str    # the value: keyword lower-cased, identifier unquoted, string unescaped
    at: int


def _tokens(sql: str) -> list[_Tok]:
    out, pos = [], 0
    while pos < len(sql):
        m = _TOKEN.match(sql, pos)
        if m is None:
            raise UnsupportedSqlError(f"cannot read the statement at character {pos} ({sql[pos:pos + 20]!r}); "
                                      f"supported: {SUPPORTED}")
        kind = m.lastgroup or ""
        text = m.group()
        if kind == "str":
            out.append(_Tok("str", text[1:-1].replace("''", "'"), pos))
        elif kind == "qid":
            q = text[0]
            out.append(_Tok("id", text[1:-1].replace(q + q, q), pos))
        elif kind == "id":
            out.append(_Tok("kw", text.lower(), pos) if text.lower() in _KEYWORDS else _Tok("id", text, pos))
        elif kind != "ws":
            out.append(_Tok(kind, text, pos))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, sql: str) -> None:
        self.sql = sql
        self.toks = _tokens(sql)
        self.i = 0

    # -- tokens --------------------------------------------------------------------------------
    def peek(self, offset: int = 0) -> _Tok | None:
        j = self.i + offset
        return self.toks[j] if j < len(self.toks) else None

    def at(self, kind: str, text: str | None = None, offset: int = 0) -> bool:
        t = self.peek(offset)
        return t is not None and t.kind == kind and (text is None or t.text == text)

    def take(self, kind: str, text: str | None = None) -> _Tok:
        t = self.peek()
        if t is None or t.kind != kind or (text is not None and t.text != text):
            want = text.upper() if text is not None and kind == "kw" else (text or {"id": "a name", "num": "a number",
                                                                                      "str": "a quoted string"}[kind])
            where = "the end" if t is None else f"{t.text!r} at character {t.at}"
            raise UnsupportedSqlError(f"expected {want}, found {where}; supported: {SUPPORTED}")
        self.i += 1
        return t

    def accept(self, kind: str, text: str | None = None) -> bool:
        if self.at(kind, text):
            self.i += 1
            return True
        return False

    # -- grammar -------------------------------------------------------------------------------
    def select(self) -> SelectStatement:
        self.take("kw", "select")
        columns: list[str] | None
        if self.accept("op", "*"):
            columns = None
        else:
            columns = [self.take("id").text]
            while self.accept("op", ","):
                columns.append(self.take("id").text)
        self.take("kw", "from")
        parts = [self.take("id").text]
        while self.accept("op", "."):
            parts.append(self.take("id").text)
        if len(parts) == 3 and parts[0].lower() == CATALOG:
            parts = parts[1:]
        if len(parts) != 2:
            raise UnsupportedSqlError(f"name the table as db.table (catalog {CATALOG!r} optional), got "
                                      f"{'.'.join(parts)!r}")
        snapshot_ts = as_of = None
        if self.accept("kw", "as"):
            self.take("kw", "of")
            if self.accept("kw", "tso"):
                snapshot_ts = int(self.take("num").text)
            else:
                self.take("kw", "timestamp")
                t = self.peek()
                as_of = self.take("str").text if t is not None and t.kind == "str" else self.take("num").text
        conjuncts: list[object] | None = None
        if self.accept("kw", "where"):
            conjuncts = _conjuncts(self.disjunction())
        limit = None
        if self.accept("kw", "limit"):
            text = self.take("num").text
            if not text.isdigit():
                raise UnsupportedSqlError(f"LIMIT takes a whole number of rows, got {text}")
            limit = int(text)
        self.accept("op", ";")
        if self.peek() is not None:
            t = self.peek()
            assert t is not None
            raise UnsupportedSqlError(f"unsupported clause at character {t.at} ({self.sql[t.at:t.at + 30]!r}): only "
                                      f"{SUPPORTED}; on a ClickHouse-engine store any ClickHouse query runs")
        return SelectStatement(f"{parts[0]}.{parts[1]}", None if columns is None else tuple(columns), conjuncts,
                               limit, snapshot_ts, as_of)

    def disjunction(self) -> object:
        terms = [self.conjunction()]
        while self.accept("kw", "or"):
            terms.append(self.conjunction())
        return terms[0] if len(terms) == 1 else ("or", terms)

    def conjunction(self) -> object:
        terms = [self.negation()]
        while self.accept("kw", "and"):
            terms.append(self.negation())
        return terms[0] if len(terms) == 1 else ("and", terms)

    def negation(self) -> object:
        if self.accept("kw", "not"):
            return ("not", self.negation())
        if self.accept("op", "("):
            inner = self.disjunction()
            self.take("op", ")")
            return inner
        p = self.predicate()
        return p if isinstance(p, tuple) else ("leaf", p)

    def predicate(self) -> object:
        if not self.at("id"):  # literal op column
            value = self.literal()
            op = self.take("op").text
            if op not in _FLIP:
                raise UnsupportedSqlError(f"expected a comparison after the literal, found {op!r}")
            return [self.take("id").text, _FLIP[op], value]
        column = self.take("id").text
        if self.accept("kw", "is"):
            negated = self.accept("kw", "not")
            self.take("kw", "null")
            return [column, "is_not_null" if negated else "is_null"]
        negated = self.accept("kw", "not")
        if self.accept("kw", "in"):
            self.take("op", "(")
            values = [self.literal(null_ok=True)]
            while self.accept("op", ","):
                values.append(self.literal(null_ok=True))
            self.take("op", ")")
            return [column, "not_in" if negated else "in", values]
        if self.accept("kw", "between"):
            low = self.literal()
            self.take("kw", "and")
            high = self.literal()
            both = ("and", [("leaf", [column, ">=", low]), ("leaf", [column, "<=", high])])
            return {"not": _one(both)} if negated else both
        if self.accept("kw", "like"):
            pattern = self.take("str").text
            prefix = pattern[:-1] if pattern.endswith("%") else None
            if prefix is None or "%" in prefix or "_" in prefix or "\\" in prefix:
                raise UnsupportedSqlError(f"LIKE {pattern!r}: only a prefix pattern 'text%' is supported "
                                          "(no other % or _)")
            c = [column, "starts_with", prefix]
            return {"not": c} if negated else c
        if negated:
            raise UnsupportedSqlError(f"NOT after {column!r} must be followed by IN, BETWEEN or LIKE")
        op = self.take("op").text
        if op not in _FLIP:
            raise UnsupportedSqlError(f"unsupported operator {op!r} after {column!r}; use = != <> < <= > >=")
        return [column, op, self.literal()]

    def literal(self, null_ok: bool = False) -> object:
        negative = self.accept("op", "-")
        t = self.peek()
        if t is not None and t.kind == "num":
            self.i += 1
            text = ("-" if negative else "") + t.text
            if re.fullmatch(r"-?\d+", text):
                return int(text)
            return {"float": text} if "e" in text.lower() else {"decimal": text}
        if negative:
            raise UnsupportedSqlError("a minus sign must be followed by a number")
        if t is not None and t.kind == "str":
            self.i += 1
            return t.text
        if t is not None and t.kind == "kw" and t.text in ("true", "false"):
            self.i += 1
            return t.text == "true"
        if t is not None and t.kind == "kw" and t.text == "null":
            if null_ok:
                self.i += 1
                return None
            raise UnsupportedSqlError("a comparison with NULL is never true; use IS NULL / IS NOT NULL")
        where = "the end" if t is None else f"{t.text!r} at character {t.at}"
        raise UnsupportedSqlError(f"expected a literal (number, 'text', TRUE, FALSE), found {where}")


def _one(node: object) -> object:
    """A tree node as one filter conjunct (an AND under an OR or NOT by De Morgan, which holds in
    SQL's three-valued logic too: a AND b = NOT (NOT a OR NOT b))."""
    if isinstance(node, (list, dict)):
        return node
    if not isinstance(node, tuple):  # the parser's nodes: (kind, body), or a leaf's list or dict
        raise TypeError(f"not a WHERE tree node: {node!r}")
    kind, body = node
    if kind == "leaf":
        return body
    if kind == "not":
        return {"not": _one(body)}
    if kind == "or":
        return {"or": [_one(x) for x in body]}
    return {"not": {"or": [{"not": _one(x)} for x in body]}}


def _conjuncts(node: object) -> list[object]:
    """The top of a WHERE tree as the read request's list of conjuncts."""
    if isinstance(node, tuple) and node[0] == "and":
        return [c for x in node[1] for c in _conjuncts(x)]
    return [_one(node)]


def parse_select(sql: str) -> SelectStatement:
    """``sql`` as a :class:`SelectStatement`; :class:`UnsupportedSqlError` for anything else."""
    if not sql.strip():
        raise UnsupportedSqlError(f"empty statement; supported: {SUPPORTED}")
    return _Parser(sql).select()
