"""TPC-H on TheFlash as a TiDB user would set it up, beside Spark's own Parquet reader over a
copy of the same snapshot (used by ``tests/spark/test_tpch.py`` and ``bench/tpch.py``).

The data and the 22 queries come from duckdb's ``tpch`` extension (``dbgen``,
``tpch_queries()``), loaded from the ``duckdb-extension-tpch`` wheel: no network. The tables
are created in the embedded mini cluster with the TiDB types TPC-H kits for TiDB declare
(``DECIMAL(15,2)``, ``DATE``, ``CHAR(n)``/``VARCHAR(n)``, ``INT``/``BIGINT``), lineitem and
partsupp with their clustered composite primary keys (common handles), the others with an int
handle. Rows go the product's whole way: table API transactions → binlog → the writer → the
store, which is then compacted (as the writer does once the safe point moves), so the reads
meet stable parts as a quiet table has them.

The reference is ``spark.read.parquet`` of the upstream's own rows at the same ts (its MVCC
scan, checked equal to the generated rows), so both sides answer over one snapshot, in one
Spark session, with the same query text.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from flash_rig import FlashRig

DB = "tpch"

# Column name → TiDB type, in TPC-H's column order. Keys follow duckdb's dbgen (INT where it
# generates int32, BIGINT where int64) so both sides hold the generator's exact values.
TABLES: dict[str, list[tuple[str, str]]] = {
    "region": [("r_regionkey", "INT"), ("r_name", "CHAR(25)"), ("r_comment", "VARCHAR(152)")],
    "nation": [("n_nationkey", "INT"), ("n_name", "CHAR(25)"), ("n_regionkey", "INT"),
               ("n_comment", "VARCHAR(152)")],
    "part": [("p_partkey", "BIGINT"), ("p_name", "VARCHAR(55)"), ("p_mfgr", "CHAR(25)"), ("p_brand", "CHAR(10)"),
             ("p_type", "VARCHAR(25)"), ("p_size", "INT"), ("p_container", "CHAR(10)"),
             ("p_retailprice", "DECIMAL(15,2)"), ("p_comment", "VARCHAR(23)")],
    "supplier": [("s_suppkey", "BIGINT"), ("s_name", "CHAR(25)"), ("s_address", "VARCHAR(40)"),
                 ("s_nationkey", "INT"), ("s_phone", "CHAR(15)"), ("s_acctbal", "DECIMAL(15,2)"),
                 ("s_comment", "VARCHAR(101)")],
    "partsupp": [("ps_partkey", "BIGINT"), ("ps_suppkey", "BIGINT"), ("ps_availqty", "BIGINT"),
                 ("ps_supplycost", "DECIMAL(15,2)"), ("ps_comment", "VARCHAR(199)")],
    "customer": [("c_custkey", "BIGINT"), ("c_name", "VARCHAR(25)"), ("c_address", "VARCHAR(40)"),
                 ("c_nationkey", "INT"), ("c_phone", "CHAR(15)"), ("c_acctbal", "DECIMAL(15,2)"),
                 ("c_mktsegment", "CHAR(10)"), ("c_comment", "VARCHAR(117)")],
    "orders": [("o_orderkey", "BIGINT"), ("o_custkey", "BIGINT"), ("o_orderstatus", "CHAR(1)"),
               ("o_totalprice", "DECIMAL(15,2)"), ("o_orderdate", "DATE"), ("o_orderpriority", "CHAR(15)"),
               ("o_clerk", "CHAR(15)"), ("o_shippriority", "INT"), ("o_comment", "VARCHAR(79)")],
    "lineitem": [("l_orderkey", "BIGINT"), ("l_partkey", "BIGINT"), ("l_suppkey", "BIGINT"),
                 ("l_linenumber", "BIGINT"), ("l_quantity", "DECIMAL(15,2)"), ("l_extendedprice", "DECIMAL(15,2)"),
                 ("l_discount", "DECIMAL(15,2)"), ("l_tax", "DECIMAL(15,2)"), ("l_returnflag", "CHAR(1)"),
                 ("l_linestatus", "CHAR(1)"), ("l_shipdate", "DATE"), ("l_commitdate", "DATE"),
                 ("l_receiptdate", "DATE"), ("l_shipinstruct", "CHAR(25)"), ("l_shipmode", "CHAR(10)"),
                 ("l_comment", "VARCHAR(44)")],
}

# As TiDB users declare them: lineitem and partsupp have composite keys, CLUSTERED (TiDB's
# default for new tables since 5.0), so their rows are keyed by a common handle; the others a
# single integer key, which is the handle.
PRIMARY_KEYS: dict[str, list[str]] = {
    "region": ["r_regionkey"], "nation": ["n_nationkey"], "part": ["p_partkey"], "supplier": ["s_suppkey"],
    "partsupp": ["ps_partkey", "ps_suppkey"], "customer": ["c_custkey"], "orders": ["o_orderkey"],
    "lineitem": ["l_orderkey", "l_linenumber"],
}
CLUSTERED_COMMON_HANDLE = ("lineitem", "partsupp")
# ``partitioned=True``: lineitem and orders PARTITION BY RANGE COLUMNS on their date, a year a
# partition, as TiDB users partition fact tables. TiDB wants every unique key to include the
# partitioning column, so their keys gain it (and orders' becomes a clustered common handle).
_YEARS = [f"'{y}-01-01'" for y in range(1993, 2000)] + ["MAXVALUE"]
PARTITIONS: dict[str, tuple[str, list[str]]] = {
    "lineitem": ("l_shipdate", ["l_orderkey", "l_linenumber", "l_shipdate"]),
    "orders": ("o_orderdate", ["o_orderkey", "o_orderdate"]),
}


def partition_spec(table: str) -> dict[str, Any]:
    column = PARTITIONS[table][0]
    return {"type": "RANGE COLUMNS", "columns": [column],
            "definitions": [{"name": f"p{y[1:5] if y != 'MAXVALUE' else 'max'}", "less_than": [y]} for y in _YEARS]}


def primary_key(table: str, partitioned: bool) -> list[str]:
    return PARTITIONS[table][1] if partitioned and table in PARTITIONS else PRIMARY_KEYS[table]

# Regions per table beyond the table's own (the big ones are split, as a TiDB table of this
# size would be by its split-table or by region size).
REGIONS: dict[str, int] = {"lineitem": 4, "orders": 3, "partsupp": 2, "part": 2, "customer": 2}

# Where duckdb's TPC-H text is not Spark SQL, the rewrite both sides run (see spark_sql). The
# rest is Spark SQL as it stands: ``substring(x FROM 1 FOR 2)``, ``extract(year FROM d)``,
# ``date '...'`` literals and Q13's derived column list ``AS c_orders (c_custkey, c_count)``.
QUERY_REWRITES = {
    "trailing ';'": "Spark's sql() takes one statement without a terminator",
}


# ------------------------------------------------------------------------------ data, queries


def _duckdb_with_tpch() -> Any:
    """A duckdb connection with the tpch extension loaded from the duckdb-extension-tpch wheel
    (``INSTALL tpch`` would download it; the wheel ships the binary for this duckdb)."""
    import duckdb
    import duckdb_extension_tpch

    binary = (Path(duckdb_extension_tpch.__file__).parent / "extensions" / f"v{duckdb.__version__}"
              / "tpch.duckdb_extension")
    if not binary.exists():
        raise RuntimeError(f"{binary} is missing: duckdb-extension-tpch must match duckdb {duckdb.__version__} "
                           "(pyproject.toml pins both)")
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    con.load_extension(str(binary))
    return con


def arrow_schema_of(table: str) -> pa.Schema:
    """The Arrow schema theflash reads ``table`` as (schema.arrow_type of each TiDB column)."""
    from pyspark_theflash.schema import arrow_type, column

    return pa.schema([pa.field(name, arrow_type(column(name, sql))) for name, sql in TABLES[table]])


def generate(sf: float) -> dict[str, pa.Table]:
    """The 8 TPC-H tables at scale factor ``sf`` from duckdb's dbgen, cast to the Arrow types
    theflash reads the TiDB tables as (the same types already: the cast checks they agree)."""
    con = _duckdb_with_tpch()
    try:
        con.execute(f"CALL dbgen(sf={float(sf)!r})")
        out = {}
        for name in TABLES:
            got = con.execute(f"SELECT * FROM {name}").arrow()
            got = got.read_all() if isinstance(got, pa.RecordBatchReader) else got
            out[name] = got.cast(arrow_schema_of(name))  # raises if a value does not fit the TiDB type
        return out
    finally:
        con.close()


def spark_sql(text: str) -> str:
    """duckdb's TPC-H query text as Spark SQL (QUERY_REWRITES lists each change)."""
    return text.strip().removesuffix(";").rstrip()


def queries() -> dict[int, str]:
    """The 22 TPC-H queries (duckdb's ``tpch_queries()``, rewritten for Spark), by number."""
    con = _duckdb_with_tpch()
    try:
        return {int(n): spark_sql(q) for n, q in con.execute("SELECT query_nr, query FROM tpch_queries()").fetchall()}
    finally:
        con.close()


# ------------------------------------------------------------------------------ the mini cluster


def create_tables(cluster: Any, db: str = DB, partitioned: bool = False) -> dict[str, dict[str, Any]]:
    """CREATE TABLE each TPC-H table in ``db`` (``partitioned``: lineitem and orders by date
    range, see PARTITIONS); returns the table infos."""
    from pyspark_theflash.upstream.tidb import make_column

    infos = {}
    for name, cols in TABLES.items():
        key = primary_key(name, partitioned)
        spec = partition_spec(name) if partitioned and name in PARTITIONS else None
        infos[name] = cluster.create_table(
            f"{db}.{name}", [make_column(c, sql, not_null=(c in key)) for c, sql in cols], primary_key=key,
            clustered=True, partition=spec)
        if spec is not None:
            continue  # a clustered composite key: a common handle in each partition
        if bool(infos[name].get("is_common_handle")) != (name in CLUSTERED_COMMON_HANDLE):
            raise AssertionError(f"{db}.{name}: is_common_handle is {infos[name].get('is_common_handle')}")
    return infos


def split_regions(cluster: Any, infos: Mapping[str, Mapping[str, Any]], data: Mapping[str, pa.Table]) -> int:
    """Give every table a region of its own and split the big ones at key quantiles of their
    rows, as TiDB's ``SPLIT TABLE`` would before a load. Returns the splits made."""
    from pyspark_theflash.upstream.tidb import record_key, record_range

    splits = 0
    for name, info in infos.items():
        if info.get("partition"):
            continue  # a region per partition already (CREATE TABLE splits at each one's range)
        splits += bool(cluster.split_at(record_range(info["id"])[0]))
        n = REGIONS.get(name, 1)
        rows = data[name]
        if n <= 1 or rows.num_rows < n:
            continue
        key = PRIMARY_KEYS[name]
        ordered = rows.select(key).sort_by([(k, "ascending") for k in key])
        for i in range(1, n):
            at = ordered.slice(rows.num_rows * i // n, 1).to_pylist()[0]
            handle = tuple(at[k] for k in key) if len(key) > 1 else at[key[0]]
            splits += bool(cluster.split_at(record_key(info, handle)))
    return splits


def load_table(cluster: Any, qualified: str, rows: pa.Table, *, txn_rows: int = 5_000) -> int:
    """Insert ``rows`` into ``qualified`` through the cluster's columnar ``bulk_insert``, in 1PC
    transactions of ``txn_rows``. Returns rows inserted."""
    return int(cluster.bulk_insert(qualified, rows, txn_rows=txn_rows, one_pc=True))


def upstream_rows(cluster: Any, qualified: str, table: str, ts: int) -> pa.Table:
    """The upstream's rows of ``qualified`` at ``ts``, ordered by primary key, in the table's
    Arrow schema: its MVCC scan of the table's key range (locks met are resolved, as
    ``MiniCluster.scan_table`` does), the row values decoded in one vectorised pass instead of
    row by row (``scan_table`` takes minutes at SF 0.1)."""
    from pyspark_theflash.codec.batch import decode_rows_to_arrow
    from pyspark_theflash.schema import row_columns
    from pyspark_theflash.codec.keys import decode_record_keys
    from pyspark_theflash.upstream.tidb import LockResolver, physical_ids, record_range
    from pyspark_theflash.upstream_client.records import split_table_name

    info = cluster.table_info(*split_table_name(qualified))
    resolver = LockResolver(cluster.store, cluster.tso)
    pairs = [pair for start, end in map(record_range, physical_ids(info))  # every partition's records
             for pair in resolver.retry(lambda: cluster.store.scan(start, end, ts), ts)]
    handles = decode_record_keys([k for k, _v in pairs])[1] if info.get("pk_is_handle") else None
    batch = decode_rows_to_arrow(pa.array([v for _k, v in pairs], pa.binary()), handles, row_columns(info))
    rows = pa.Table.from_batches([batch]).cast(arrow_schema_of(table))
    return rows.sort_by([(k, "ascending") for k in PRIMARY_KEYS[table]])


# ------------------------------------------------------------------------------ the whole setup


@dataclass
class TpchDeployment:
    """A loaded, replicated, compacted TPC-H database and its Parquet copy at ``ts``."""

    rig: FlashRig
    sf: float
    db: str
    ts: int
    parquet_dir: Path
    rows: dict[str, int]
    timings: dict[str, float] = field(default_factory=dict)

    def qualified(self, table: str) -> str:
        return f"{self.db}.{table}"

    def close(self) -> None:
        self.rig.close()


def _timed(timings: dict[str, float], what: str, fn: Callable[[], Any]) -> Any:
    started = time.monotonic()
    try:
        return fn()
    finally:
        timings[what] = round(time.monotonic() - started, 3)


def catch_up(rig: FlashRig, tables: Iterable[str], ts: int, timeout_s: float = 300.0) -> None:
    """Every region of ``tables`` applied up to ``ts`` in the store: the scan planner's learner
    read (which asks the running writer to flush), without Spark."""
    from pyspark_theflash.scan.planner import plan

    for qualified in tables:
        rig.wait_replicated(qualified, timeout_s)
        with plan(rig.store, qualified, {"upstream": rig.upstream, "snapshot_ts": str(ts),
                                         "region_wait_timeout": f"{int(timeout_s)}s"}):
            pass


def compact_store(rig: FlashRig) -> None:
    """Merge every delta into stable parts now, as the writer's background compaction would:
    the writer pauses meanwhile (one writer per store), then resumes."""
    from pyspark_theflash.store import Store

    rig.stop_writer()
    try:
        with Store.open(rig.store) as store:
            store.compact(force=True)
    finally:
        rig.start_writer(interval_s=0.05)


def deploy(root: Path, sf: float, *, db: str = DB, txn_rows: int = 5_000, partitioned: bool = False,
           resolved_ts_interval: float = 0.05, log: Callable[[str], None] = lambda _m: None) -> TpchDeployment:
    """Generate TPC-H at ``sf``; create, split and load its tables in a new mini cluster with a
    writer; wait until the store holds them at one ts; compact; write the upstream's own rows
    at that ts as Parquet under ``root / "parquet"``, after checking they are exactly the
    generated rows (values included). ``resolved_ts_interval``: the mini cluster's (and so its
    change feed's) resolved-ts tick, ``FlashRig``'s default unless given."""
    timings: dict[str, float] = {}
    data = _timed(timings, "generate_s", lambda: generate(sf))
    log(f"generated TPC-H sf={sf}: " + ", ".join(f"{n} {t.num_rows}" for n, t in data.items()))
    rig = FlashRig(root / "flash", resolved_ts_interval=resolved_ts_interval)
    try:
        rig.start_writer(interval_s=0.05)
        infos = create_tables(rig.cluster, db, partitioned)
        split_regions(rig.cluster, infos, data)

        def load_all() -> None:
            for name, rows in data.items():
                inserted = load_table(rig.cluster, f"{db}.{name}", rows, txn_rows=txn_rows)
                if inserted != rows.num_rows:
                    raise AssertionError(f"{db}.{name}: {inserted} rows inserted of {rows.num_rows}")

        _timed(timings, "load_s", load_all)
        log(f"loaded {sum(t.num_rows for t in data.values())} rows in {timings['load_s']:.1f}s (bulk_insert)")
        ts = rig.cluster.get_ts()
        _timed(timings, "replicate_s", lambda: catch_up(rig, [f"{db}.{n}" for n in data], ts))
        _timed(timings, "compact_s", lambda: compact_store(rig))
        parquet_dir = root / "parquet"

        def export() -> dict[str, int]:
            counts = {}
            for name in data:
                generated = data[name].sort_by([(k, "ascending") for k in PRIMARY_KEYS[name]])
                rows = upstream_rows(rig.cluster, f"{db}.{name}", name, ts)
                if not rows.equals(generated):
                    raise AssertionError(f"the upstream's {db}.{name} at ts {ts} is not what was generated")
                (parquet_dir / name).mkdir(parents=True, exist_ok=True)
                pq.write_table(rows, parquet_dir / name / "part-0.parquet")
                counts[name] = rows.num_rows
            return counts

        counts = _timed(timings, "export_s", export)
        log(f"replicated in {timings['replicate_s']:.1f}s, compacted in {timings['compact_s']:.1f}s, "
            f"Parquet copy at ts {ts} in {timings['export_s']:.1f}s")
        return TpchDeployment(rig, sf, db, ts, parquet_dir, counts, timings)
    except BaseException:
        rig.close()
        raise


# ------------------------------------------------------------------------------ reading, comparing


def theflash_frames(spark: Any, deployment: TpchDeployment, **options: Any) -> dict[str, Any]:
    """One ``format("theflash")`` DataFrame per table, all at the deployment's ts."""
    opts = deployment.rig.options(snapshot_ts=deployment.ts, **options)
    return {name: spark.read.format("theflash").options(**opts).load(deployment.qualified(name)) for name in TABLES}


def parquet_frames(spark: Any, deployment: TpchDeployment) -> dict[str, Any]:
    """One ``spark.read.parquet`` DataFrame per table, of the Parquet copy."""
    return {name: spark.read.parquet(str(deployment.parquet_dir / name)) for name in TABLES}


def register_views(frames: Mapping[str, Any]) -> None:
    """The frames as the temporary views the queries name (replacing the other side's)."""
    for name, df in frames.items():
        df.createOrReplaceTempView(name)


def canonical(rows: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Rows as a sorted list of tuples; floats (none of TPC-H's Spark outputs over DECIMAL
    columns are, but an average or ratio could be) rounded to 10 significant digits, decimals
    and everything else exact."""
    def value(v: Any) -> Any:
        if isinstance(v, float) and math.isfinite(v) and v != 0.0:
            return round(v, 9 - int(math.floor(math.log10(abs(v)))))
        return v

    def order(row: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple((v is None, "" if v is None else v) for v in row)

    return sorted((tuple(value(v) for v in r) for r in rows), key=order)


def describe_difference(got: Sequence[tuple[Any, ...]], want: Sequence[tuple[Any, ...]], limit: int = 3) -> str:
    """A short account of how two canonical row lists differ."""
    missing = [r for r in want if r not in got][:limit]
    extra = [r for r in got if r not in want][:limit]
    return f"{len(got)} rows vs {len(want)} expected; missing {missing}; unexpected {extra}"


def numerically_equal(got: Sequence[tuple[Any, ...]], want: Sequence[tuple[Any, ...]]) -> bool:
    """Two canonical row lists equal, numbers compared by value within 1e-6 (an engine that
    averages a DECIMAL as a double, DuckDB, beside one that keeps a DECIMAL of scale s + 4,
    Spark), everything else exactly."""
    import decimal

    def same(a: Any, b: Any) -> bool:
        numbers = (int, float, decimal.Decimal)
        if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool) and not isinstance(b, bool):
            return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-6)
        return bool(a == b)

    return len(got) == len(want) and all(len(g) == len(w) and all(same(a, b) for a, b in zip(g, w))
                                         for g, w in zip(got, want))


@dataclass
class QueryRun:
    number: int
    seconds: float
    rows: list[tuple[Any, ...]]


def run_query(spark: Any, number: int, text: str) -> QueryRun:
    started = time.monotonic()
    rows = spark.sql(text).collect()
    return QueryRun(number, time.monotonic() - started, canonical(rows))
