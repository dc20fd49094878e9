"""The package's hook on PySpark's ``DataFrameReader`` (classic PySpark; installed by
``theflash_session()`` and ``pinned_snapshot()``, or by calling :func:`install_reader_hook`).

For a ``format("theflash")`` read, ``load()``:

* copies the session's ``theflash.snapshot_ts`` into the read's options (Spark hands a Python
  data source its options only, never the session conf; see ``spark/pin.py``);
* plans the read on the driver and lets Spark's own Parquet reader read the clean stable
  parts (``spark/native.py``), unless the read sets ``native_read`` to ``false``.

Everything else passes through unchanged, and so does every read of a session with the
Spark connector jar (``theflash_session(jvm=True)``, ``--jars $(theflash jar)``): there
``format("theflash")`` is the JVM connector, which does all of this itself. Without the hook (a session that never imported the
package, SQL ``USING theflash``) reads go wholly through the Python data source: the same
rows, without Spark's column pruning.
"""
from __future__ import annotations

import threading
from typing import Any

from pyspark_theflash.scan.options import SESSION_SNAPSHOT_OPTION

SOURCE_NAMES = frozenset({"theflash", "pyspark_theflash", "pyspark_theflash.defaultsource"})
_INSTALLED = threading.Lock()
_installed = False


def is_theflash(source: Any) -> bool:
    return source is not None and str(source).lower() in SOURCE_NAMES


def install_reader_hook() -> None:
    """Install the hook (idempotent)."""
    global _installed
    with _INSTALLED:
        if _installed:
            return
        from pyspark.sql.readwriter import DataFrameReader

        original = {name: getattr(DataFrameReader, name) for name in ("format", "option", "options", "schema", "load")}

        def format(self: Any, source: str) -> Any:
            self._theflash_source = str(source)
            return original["format"](self, source)

        def option(self: Any, key: str, value: Any) -> Any:
            _recorded(self)[str(key)] = value
            return original["option"](self, key, value)

        def options(self: Any, **opts: Any) -> Any:
            _recorded(self).update({str(k): v for k, v in opts.items()})
            return original["options"](self, **opts)

        def schema(self: Any, schema: Any) -> Any:
            self._theflash_schema = schema
            return original["schema"](self, schema)

        def load(self: Any, path: Any = None, format: str | None = None, schema: Any = None, **opts: Any) -> Any:
            if not is_theflash(format or getattr(self, "_theflash_source", None)) or _jvm_connector(self._spark):
                # the JVM connector pins, prunes and pushes down by itself
                return original["load"](self, path, format, schema, **opts)
            pinned = self._spark.conf.get(SESSION_SNAPSHOT_OPTION, None)
            if pinned:
                opts.setdefault(SESSION_SNAPSHOT_OPTION, str(pinned))
            native = _native(self, path, schema, opts)
            if native is not None:
                return native
            return original["load"](self, path, format, schema, **opts)

        def _native(self: Any, path: Any, schema: Any, opts: dict[str, Any]) -> Any:
            from pyspark_theflash.spark.native import native_read

            given = {**_recorded(self), **opts}
            if path is not None:
                given["path"] = path
            given = {str(k): str(v) for k, v in given.items() if v is not None}
            user_schema = _struct(self._spark, schema if schema is not None else getattr(self, "_theflash_schema", None))

            def python_load(read_options: dict[str, str], schema: Any) -> Any:
                return self._spark.read.format("theflash").options(**read_options).schema(schema).load()

            read = native_read(self._spark, given, user_schema, python_load)
            if read is None:
                return None
            # The DataFrame holds the plan, whose lease is renewed while the plan lives: the
            # part files stay while anything may still run this DataFrame.
            read.dataframe._theflash_native_read = read
            return read.dataframe

        for name, fn in (("format", format), ("option", option), ("options", options), ("schema", schema),
                         ("load", load)):
            fn.__doc__ = original[name].__doc__
            setattr(DataFrameReader, name, fn)
        _installed = True


def _jvm_connector(spark: Any) -> bool:
    from pyspark_theflash.spark.session import has_connector_jar

    try:
        return has_connector_jar(spark)
    except Exception:  # Spark Connect sessions have no SparkContext: the Python source it is
        return False


def _recorded(reader: Any) -> dict[str, Any]:
    got = getattr(reader, "_theflash_options", None)
    if got is None:
        got = reader._theflash_options = {}
    return got


def _struct(spark: Any, schema: Any) -> Any:
    """A user's schema as a StructType (``.schema`` takes one or a DDL string)."""
    if schema is None:
        return None
    from pyspark.sql.types import StructType

    if isinstance(schema, StructType):
        return schema
    return StructType.fromDDL(str(schema))
