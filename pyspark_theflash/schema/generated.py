"""Generated columns: TiDB's ``generated_expr_string`` parsed and evaluated over Arrow columns.

TiDB never stores a VIRTUAL generated column: it computes it when a row is read. STORED ones are
in the row like any column. TheFlash computes a VIRTUAL column at read time where the expression
is one it evaluates exactly as TiDB does:

* column references (backquoted or bare) and literals: integers, decimals (``1.25``), strings
  (``'x'``, with or without a charset introducer such as ``_utf8mb4'x'``);
* ``+ - *``, unary ``-``, ``DIV`` and ``%``/``MOD`` on integers; ``+ - *`` on DECIMAL (exact)
  and on DOUBLE/FLOAT;
* ``concat(...)`` of strings, integers and decimals, ``lower``/``upper`` of strings,
  ``substring``/``substr``/``mid(s, pos[, len])`` with literal positions;
* ``json_extract(j, '$.path')`` with one path of keys and array indexes, ``j->'$.path'``,
  ``json_unquote(...)`` and ``j->>'$.path'``, over JSON columns.

TiDB's semantics: NULL in any operand gives NULL; ``x DIV 0`` and ``x % 0`` give NULL; integer
arithmetic is BIGINT and **overflow is an error**, as TiDB's ``SELECT`` of such a column fails
with "BIGINT value is out of range": a read that meets it raises ``GeneratedColumnError`` naming
the column and the expression, never returns a wrapped or NULL value. The value is then stored
into the column's type as TiDB's strict mode does: a value the type cannot hold is the same
error; a DECIMAL result is rounded half away from zero to the column's scale.

Everything else (``/``, date and time functions, CAST, CASE, comparison operators, float
formatting inside CONCAT, JSON wildcards, a JSON result into a non-JSON column, ...) is not
computed: such a VIRTUAL column is left out of the table's readable columns
(``TableInfo.columns``), and a read that names it is refused by name
(``TableInfo.column``). JSON functions run per value (there is no Arrow kernel for them).
"""
from __future__ import annotations

import decimal
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from pyspark_theflash.codec import column_types as T
from pyspark_theflash.schema.errors import SchemaError

if TYPE_CHECKING:
    from pyspark_theflash.schema.table_info import ColumnInfo, TableInfo


class UnsupportedExpressionError(SchemaError):
    """A generated column's expression that TheFlash does not evaluate exactly."""


class GeneratedColumnError(SchemaError):
    """A VIRTUAL generated column whose value TiDB would refuse to produce (integer overflow, a
    value its type cannot hold): the read fails, as TiDB's SELECT of it does."""


# ----------------------------------------------------------------------------- parsing

_TOKEN = re.compile(r"""
    \s*(?:
      (?P<bq>`(?:[^`]|``)*`)
    | (?P<num>\d+\.\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+|\d+)
    | (?P<intro>_[A-Za-z0-9]+)(?=['"])
    | (?P<str>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*")
    | (?P<op>->>|->|[-+*/%(),])
    | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
    )""", re.VERBOSE)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "b": "\b", "Z": "\x1a"}


def _unquote_sql(text: str) -> str:
    q, body = text[0], text[1:-1]
    body = body.replace(q + q, q)
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise UnsupportedExpressionError(f"cannot read {text!r} at {text[pos:pos + 10]!r}")
        pos = m.end()
        kind = m.lastgroup
        if kind is None:  # every alternative of _TOKEN is a named group
            raise UnsupportedExpressionError(f"cannot read {text!r} at {text[m.start():m.start() + 10]!r}")
        value = m.group(kind)
        if kind == "bq":
            out.append(("col", value[1:-1].replace("``", "`")))
        elif kind == "num":
            out.append(("num", value))
        elif kind == "intro":
            continue  # _utf8mb4'...': the string follows
        elif kind == "str":
            out.append(("str", _unquote_sql(value)))
        elif kind == "op":
            out.append(("op", value))
        else:
            out.append(("word", value))
    return out


# An expression tree: ("lit", value), ("col", name), ("neg", node), ("op", operator, left, right),
# ("fn", name, [argument nodes]).
Node = tuple[Any, ...]


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> tuple[str, str]:
        t = self.peek()
        if t is None:
            raise UnsupportedExpressionError(f"{self.text!r} ends too early")
        self.i += 1
        return t

    def expect(self, op: str) -> None:
        t = self.take()
        if t != ("op", op):
            raise UnsupportedExpressionError(f"{self.text!r}: expected {op!r}, found {t[1]!r}")

    def parse(self) -> Node:
        node = self.expr()
        t = self.peek()
        if t is not None:
            raise UnsupportedExpressionError(f"{self.text!r}: unexpected {t[1]!r}")
        return node

    def expr(self) -> Node:
        node = self.term()
        while self.peek() in (("op", "+"), ("op", "-")):
            node = ("op", self.take()[1], node, self.term())
        return node

    def term(self) -> Node:
        node = self.unary()
        while True:
            t = self.peek()
            if t in (("op", "*"), ("op", "/"), ("op", "%")):
                node = ("op", self.take()[1], node, self.unary())
            elif t is not None and t[0] == "word" and t[1].upper() in ("DIV", "MOD"):
                self.take()
                node = ("op", "DIV" if t[1].upper() == "DIV" else "%", node, self.unary())
            else:
                return node

    def unary(self) -> Node:
        t = self.peek()
        if t == ("op", "-"):
            self.take()
            return ("neg", self.unary())
        if t == ("op", "+"):
            self.take()
            return self.unary()
        return self.postfix()

    def postfix(self) -> Node:
        node = self.primary()
        t = self.peek()
        if t is not None and t[0] == "op" and t[1] in ("->", "->>"):
            self.take()
            kind, path = self.take()
            if kind != "str":
                raise UnsupportedExpressionError(f"{self.text!r}: {t[1]} needs a path string")
            node = ("fn", "json_extract", [node, ("lit", path)])
            if t[1] == "->>":
                node = ("fn", "json_unquote", [node])
        return node

    def primary(self) -> Node:
        kind, value = self.take()
        if kind == "num":
            if re.fullmatch(r"\d+", value):
                return ("lit", int(value))
            if "e" in value.lower():
                return ("lit", float(value))
            return ("lit", decimal.Decimal(value))
        if kind == "str":
            return ("lit", value)
        if kind == "col":
            return ("col", value)
        if kind == "op" and value == "(":
            node = self.expr()
            self.expect(")")
            return node
        if kind == "word":
            if self.peek() == ("op", "("):
                self.take()
                args: list[Node] = []
                if self.peek() != ("op", ")"):
                    args.append(self.expr())
                    while self.peek() == ("op", ","):
                        self.take()
                        args.append(self.expr())
                self.expect(")")
                return ("fn", value.lower(), args)
            if value.upper() == "NULL":
                return ("lit", None)
            return ("col", value)
        raise UnsupportedExpressionError(f"{self.text!r}: unexpected {value!r}")


def parse_expression(text: str) -> Node:
    """The expression tree of a ``generated_expr_string``."""
    return _Parser(text).parse()


# ----------------------------------------------------------------------------- evaluation

# A value while evaluating: (kind, Arrow array or Python scalar). Kinds: int (int64), dec
# (decimal128), float (float64), str (string), json (Python values of codec.json_binary, per
# row; _MISSING where a path found nothing).
_MISSING = object()


@dataclass(frozen=True)
class _Compiled:
    kind: str
    fn: Callable[[Mapping[str, pa.Array], int], pa.Array | pa.Scalar]


def _kind_of_column(col: "ColumnInfo") -> str:
    if col.tp == T.TYPE_JSON:
        return "json"
    from pyspark_theflash.schema.arrow import arrow_type

    t = arrow_type(col)
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_decimal(t):
        return "dec"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_string(t):
        return "str"
    raise UnsupportedExpressionError(f"column {col.name} of type {col.type_name} in an expression")


def _broadcast(v: object, n: int, typ: pa.DataType) -> pa.Array:
    if isinstance(v, (pa.Array, pa.ChunkedArray)):
        return v
    return pa.array([v] * n, typ)


class _Compiler:
    def __init__(self, table: "TableInfo", column: "ColumnInfo") -> None:
        self.table = table
        self.column = column
        self.deps: list[str] = []

    def compile(self, node: Node) -> _Compiled:
        kind = node[0]
        if kind == "col":
            c = self.table.column_any(node[1])
            if c is None:
                raise UnsupportedExpressionError(f"unknown column {node[1]!r}")
            if c.is_virtual_generated and c.name.lower() != self.column.name.lower():
                if c.offset >= self.column.offset:
                    raise UnsupportedExpressionError(f"a reference to the later generated column {c.name}")
                compile_column(self.table, c)  # a VIRTUAL column read from an uncomputable one is too
            ck = _kind_of_column(c)
            if c.name not in self.deps:
                self.deps.append(c.name)
            name = c.name
            if ck == "int":
                return _Compiled("int", lambda cols, n: _to_int64(cols[name], self.column))
            if ck == "dec":
                return _Compiled("dec", lambda cols, n: cols[name])
            if ck == "float":
                return _Compiled("float", lambda cols, n: cols[name].cast(pa.float64()))
            if ck == "json":
                return _Compiled("json", lambda cols, n: _json_values(cols[name]))
            return _Compiled("str", lambda cols, n: cols[name])
        if kind == "lit":
            v = node[1]
            if v is None:
                raise UnsupportedExpressionError("a NULL literal")
            if isinstance(v, bool):
                raise UnsupportedExpressionError("a boolean literal")
            if isinstance(v, int):
                if not -(1 << 63) <= v < (1 << 63):
                    raise UnsupportedExpressionError(f"the literal {v} (beyond BIGINT)")
                return _Compiled("int", lambda cols, n: pa.scalar(v, pa.int64()))
            if isinstance(v, decimal.Decimal):
                t = _decimal_type_of(v)
                return _Compiled("dec", lambda cols, n: pa.scalar(v, t))
            if isinstance(v, float):
                return _Compiled("float", lambda cols, n: pa.scalar(v, pa.float64()))
            return _Compiled("str", lambda cols, n: pa.scalar(v, pa.string()))
        if kind == "neg":
            a = self.compile(node[1])
            if a.kind == "int":
                return _Compiled("int", lambda cols, n: self._checked(pc.negate_checked, a.fn(cols, n)))
            if a.kind in ("dec", "float"):
                return _Compiled(a.kind, lambda cols, n: pc.negate(a.fn(cols, n)))
            raise UnsupportedExpressionError(f"unary minus of a {a.kind}")
        if kind == "op":
            return self._op(node[1], self.compile(node[2]), self.compile(node[3]))
        if kind == "fn":
            return self._fn(node[1], node[2])
        raise UnsupportedExpressionError(f"{node!r}")

    def _checked(self, f: Callable[..., object], *args: object) -> object:
        try:
            return f(*args)
        except (pa.ArrowInvalid, OverflowError) as exc:
            raise GeneratedColumnError(
                f"column {self.column.name} of {self.table.qualified_name} = {self.column.generated_expr}: "
                f"BIGINT value is out of range ({exc}); TiDB's SELECT fails the same way") from None

    def _op(self, op: str, a: _Compiled, b: _Compiled) -> _Compiled:
        kinds = {a.kind, b.kind}
        if not kinds <= {"int", "dec", "float"}:
            raise UnsupportedExpressionError(f"{op} of {a.kind} and {b.kind}")
        if op == "/":
            raise UnsupportedExpressionError("'/' (its DECIMAL scale rules are not evaluated here)")
        if op in ("DIV", "%"):
            if kinds != {"int"}:
                raise UnsupportedExpressionError(f"{op} of {a.kind} and {b.kind}")
            return _Compiled("int", lambda cols, n: self._div_mod(op, a.fn(cols, n), b.fn(cols, n), n))
        if kinds == {"int"}:
            f = {"+": pc.add_checked, "-": pc.subtract_checked, "*": pc.multiply_checked}[op]
            return _Compiled("int", lambda cols, n: self._checked(f, a.fn(cols, n), b.fn(cols, n)))
        if "float" in kinds:
            f = {"+": pc.add, "-": pc.subtract, "*": pc.multiply}[op]
            return _Compiled("float", lambda cols, n: f(_as_float(a.kind, a.fn(cols, n)), _as_float(b.kind, b.fn(cols, n))))
        f = {"+": pc.add_checked, "-": pc.subtract_checked, "*": pc.multiply_checked}[op]
        return _Compiled("dec", lambda cols, n: self._checked(
            f, _as_decimal(a.kind, a.fn(cols, n)), _as_decimal(b.kind, b.fn(cols, n))))

    def _div_mod(self, op: str, x: object, y: object, n: int) -> pa.Array:
        x = _broadcast(x, n, pa.int64())
        y = _broadcast(y, n, pa.int64())
        zero = pc.equal(y, 0)
        safe_y = pc.if_else(zero, pa.scalar(1, pa.int64()), y)
        q = self._checked(pc.divide_checked, x, safe_y)  # truncates toward zero, as MySQL's DIV
        out = q if op == "DIV" else pc.subtract(x, pc.multiply(q, safe_y))  # the sign of x, as MySQL's %
        return pc.if_else(zero, pa.scalar(None, pa.int64()), out)

    def _fn(self, name: str, args: Sequence[Node]) -> _Compiled:
        if name == "concat" and args:
            parts = [self.compile(a) for a in args]
            for p in parts:
                if p.kind not in ("str", "int", "dec"):
                    raise UnsupportedExpressionError(f"concat of a {p.kind}")

            def concat(cols: Mapping[str, pa.Array], n: int) -> pa.Array:
                strs = [_broadcast(_as_string(p.kind, p.fn(cols, n)), n, pa.string()) for p in parts]
                return pc.binary_join_element_wise(*strs, "")
            return _Compiled("str", concat)
        if name in ("lower", "lcase", "upper", "ucase") and len(args) == 1:
            a = self.compile(args[0])
            if a.kind != "str":
                raise UnsupportedExpressionError(f"{name} of a {a.kind}")
            f = pc.utf8_lower if name in ("lower", "lcase") else pc.utf8_upper
            return _Compiled("str", lambda cols, n: f(_broadcast(a.fn(cols, n), n, pa.string())))
        if name in ("substring", "substr", "mid") and len(args) in (2, 3):
            a = self.compile(args[0])
            lits = [_int_literal(x) for x in args[1:]]
            known = [v for v in lits if v is not None]
            if a.kind != "str" or len(known) != len(lits):
                raise UnsupportedExpressionError(f"{name} with a non-literal position or of a {a.kind}")
            start, stop, empty = _substring_bounds(known[0], known[1] if len(known) == 2 else None)

            def substring(cols: Mapping[str, pa.Array], n: int) -> pa.Array:
                s = _broadcast(a.fn(cols, n), n, pa.string())
                if empty:
                    return pc.if_else(s.is_null(), pa.scalar(None, pa.string()), pa.scalar("", pa.string()))
                return pc.utf8_slice_codeunits(s, start, stop)
            return _Compiled("str", substring)
        if name == "json_extract" and len(args) == 2 and args[1][0] == "lit" and isinstance(args[1][1], str):
            a = self.compile(args[0])
            if a.kind != "json":
                raise UnsupportedExpressionError(f"json_extract of a {a.kind}")
            path = _json_path(args[1][1])
            return _Compiled("json", lambda cols, n: [_MISSING if v is _MISSING else _walk(v, path)
                                                      for v in a.fn(cols, n)])
        if name == "json_unquote" and len(args) == 1:
            a = self.compile(args[0])
            if a.kind != "json":
                raise UnsupportedExpressionError(f"json_unquote of a {a.kind}")
            return _Compiled("str", lambda cols, n: pa.array([_unquote_json(v) for v in a.fn(cols, n)], pa.string()))
        raise UnsupportedExpressionError(f"function {name}() with {len(args)} argument(s)")


def _decimal_type_of(v: decimal.Decimal) -> pa.DataType:
    sign, digits, exp = v.as_tuple()
    scale = max(0, -int(exp))
    precision = max(len(digits), scale, 1)
    return pa.decimal128(precision, scale)


def _to_int64(a: pa.Array, col: "ColumnInfo") -> pa.Array:
    try:
        return a.cast(pa.int64())
    except pa.ArrowInvalid:
        raise UnsupportedExpressionError(f"BIGINT UNSIGNED values beyond 2**63 in {col.name}") from None


def _as_float(kind: str, v: pa.Array | pa.Scalar) -> object:
    return v if kind == "float" else v.cast(pa.float64())


def _as_decimal(kind: str, v: pa.Array | pa.Scalar) -> object:
    return v.cast(pa.decimal128(19, 0)) if kind == "int" else v


def _as_string(kind: str, v: pa.Array | pa.Scalar) -> object:
    return v if kind == "str" else v.cast(pa.string())


def _int_literal(node: Node) -> int | None:
    if node[0] == "lit" and isinstance(node[1], int) and not isinstance(node[1], bool):
        return int(node[1])
    if node[0] == "neg" and node[1][0] == "lit" and isinstance(node[1][1], int):
        return -int(node[1][1])
    return None


def _substring_bounds(pos: int, length: int | None) -> tuple[int, int | None, bool]:
    """MySQL's SUBSTRING(s, pos[, len]) (1-based; a negative pos counts from the end; pos 0
    or len < 1 give '') as utf8_slice_codeunits(start, stop)."""
    if pos == 0 or (length is not None and length < 1):
        return 0, None, True
    start = pos - 1 if pos > 0 else pos
    if length is None:
        return start, None, False
    stop = start + length
    if pos < 0 and stop >= 0:
        return start, None, False
    return start, stop, False


def _json_values(a: pa.Array) -> list[object]:
    from pyspark_theflash.codec.json_binary import decode_json, parse_json_text

    return [_MISSING if v is None else decode_json(parse_json_text(v)) for v in a.to_pylist()]


_PATH_LEG = re.compile(r'\.(?:([A-Za-z_$][A-Za-z0-9_$]*)|"((?:[^"\\]|\\.)*)")|\[(\d+)\]')


def _json_path(text: str) -> list[str | int]:
    s = text.strip()
    if not s.startswith("$"):
        raise UnsupportedExpressionError(f"JSON path {text!r}")
    legs: list[str | int] = []
    pos = 1
    while pos < len(s):
        m = _PATH_LEG.match(s, pos)
        if m is None:
            raise UnsupportedExpressionError(f"JSON path {text!r} (only keys and array indexes are evaluated)")
        key, quoted, index = m.groups()
        legs.append(int(index) if index is not None else (key if key is not None else
                                                           re.sub(r"\\(.)", r"\1", quoted)))
        pos = m.end()
    return legs


def _walk(v: object, path: Sequence[str | int]) -> object:
    for leg in path:
        if isinstance(leg, int):
            if isinstance(v, list):
                if leg >= len(v):
                    return _MISSING
                v = v[leg]
            elif leg == 0:
                continue  # MySQL: $[0] of a scalar is the scalar
            else:
                return _MISSING
        else:
            if not isinstance(v, dict) or leg not in v:
                return _MISSING
            v = v[leg]
    return v


def _json_text(v: object) -> str:
    from pyspark_theflash.codec.json_binary import encode_json, json_to_text

    return json_to_text(encode_json(v))


def _unquote_json(v: object) -> str | None:
    if v is _MISSING:
        return None
    if isinstance(v, str):
        return v
    return _json_text(v)


# ----------------------------------------------------------------------------- the column

@dataclass(frozen=True)
class VirtualColumn:
    """A VIRTUAL generated column TheFlash computes: its name, the columns it reads, and
    ``compute(columns, n)``, the column's values as its Arrow type from those columns."""

    name: str
    deps: tuple[str, ...]
    compute: Callable[[Mapping[str, pa.Array], int], pa.Array]


def compile_column(table: "TableInfo", column: "ColumnInfo") -> VirtualColumn:
    """The column's expression compiled; ``UnsupportedExpressionError`` if it is not one this
    module evaluates exactly."""
    from pyspark_theflash.schema.arrow import arrow_type

    tree = parse_expression(column.generated_expr)
    compiler = _Compiler(table, column)
    body = compiler.compile(tree)
    target = arrow_type(column)
    tk = _kind_of_column(column)
    if body.kind == "json" and tk != "json":
        raise UnsupportedExpressionError("a JSON value into a non-JSON column")
    if body.kind == "float" and tk not in ("float",):
        raise UnsupportedExpressionError("a floating-point value into an exact column")
    if body.kind == "str" and tk not in ("str",):
        raise UnsupportedExpressionError("a string into a non-string column")
    if body.kind in ("int", "dec") and tk not in ("int", "dec", "float", "str"):
        raise UnsupportedExpressionError(f"a number into a {column.type_name} column")
    where = f"column {column.name} of {table.qualified_name} = {column.generated_expr}"

    def compute(cols: Mapping[str, pa.Array], n: int) -> pa.Array:
        v = body.fn(cols, n)
        if body.kind == "json":
            return pa.array([None if x is _MISSING else _json_text(x) for x in v], target)
        v = _broadcast(v, n, {"int": pa.int64(), "float": pa.float64(), "str": pa.string()}.get(body.kind, None)
                       or v.type)
        if isinstance(v, pa.ChunkedArray):
            v = v.combine_chunks()
        if pa.types.is_decimal(target) and pa.types.is_decimal(v.type) and v.type.scale > target.scale:
            v = pc.round(v, ndigits=target.scale, round_mode="half_towards_infinity")  # MySQL: half away from zero
        if pa.types.is_string(target) and column.flen > 0:
            too_long = pc.greater(pc.utf8_length(v.cast(pa.string())), column.flen)
            if pc.any(too_long).as_py():
                raise GeneratedColumnError(f"{where}: a value longer than {column.flen} characters "
                                           "(TiDB: Data too long)")
        try:
            return v.cast(target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise GeneratedColumnError(f"{where}: a value out of range for {column.type_name} ({exc}); "
                                       "TiDB's SELECT fails the same way") from None

    return VirtualColumn(column.name, tuple(compiler.deps), compute)


def why_uncomputable(table: "TableInfo", column: "ColumnInfo") -> str | None:
    """Why the column's expression is not one this module evaluates, or None if it is: what
    decides ``TableInfo.columns`` (the ``schema`` package sets it as the table's judge)."""
    try:
        compile_column(table, column)
        return None
    except UnsupportedExpressionError as exc:
        return str(exc)


def computable(table: "TableInfo", column: "ColumnInfo") -> bool:
    return why_uncomputable(table, column) is None


def virtual_columns(table: "TableInfo", names: Sequence[str] | None = None) -> list[VirtualColumn]:
    """The computable VIRTUAL columns of ``table`` (of those named), compiled, in an order where
    each comes after the virtual columns it reads."""
    wanted = [c for c in table.columns if c.is_virtual_generated and (names is None or c.name in names)]
    out: list[VirtualColumn] = []
    done: set[str] = set()
    by_name = {c.name: c for c in table.columns if c.is_virtual_generated}

    def add(c: "ColumnInfo", stack: tuple[str, ...] = ()) -> None:
        if c.name in done or c.name in stack:
            return
        vc = compile_column(table, c)
        for d in vc.deps:
            if d in by_name:
                add(by_name[d], stack + (c.name,))
        done.add(c.name)
        out.append(vc)

    for c in wanted:
        add(c)
    return out


__all__ = ["GeneratedColumnError", "UnsupportedExpressionError", "VirtualColumn", "compile_column", "computable",
           "parse_expression", "virtual_columns", "why_uncomputable"]
