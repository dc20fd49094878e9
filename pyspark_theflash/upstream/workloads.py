"""Workloads for the mini cluster: each has a seed, a rate (transactions per second, 0 = as
fast as it goes) and a duration or a count, and runs in threads.

- ``BankWorkload``: N accounts, concurrent transfers between random accounts; the total
  balance is constant at every ts (``verify(ts)``).
- ``TwoTableBankWorkload``: transfers between accounts of bank.checking and bank.savings;
  the sum over both tables is constant at every ts.
- ``OrdersWorkload``: customers (clustered common handle), orders (int handle) and
  order_items (no primary key: _tidb_rowid), with every TiDB type the codec handles and NULLs.
- ``TypesWorkload``: one int-handle table with a column of every type a Spark read returns
  from Parquet as it is (all but TIME), values from small domains plus each type's extremes,
  NULLs; inserts, updates of a few columns (to NULL too) and deletes.

Transactions commit as TiDB >= 5.0 commits them by default: 1PC when every key is in one
region, else async commit (``async_commit=False``: 2PC instead).

Fault knobs (``Faults``), each a probability per transaction (or per step):
``dying`` (prewrite, then the client vanishes: locks stay until their TTL expires and a
reader or the cluster decides them — a 2PC transaction is rolled back; an async-commit one
dies after all its prewrites half the time, and is then committed, or after only some of them,
and is rolled back), ``rollback`` (prewrite, then an explicit rollback),
``large`` (one transaction over many keys), ``split_merge`` (a region split or merge next
to the transactions), ``schema`` (a schema change mid-stream, orders only: every kind of DDL
TiDB runs — ADD/DROP COLUMN, MODIFY COLUMN in place (INT -> BIGINT, ENUM/SET member appended,
longer VARCHAR) and through a new column id (reorg), TRUNCATE, RENAME, DROP + CREATE — on
``shop.orders``, ``shop.customers`` and ``shop.audit``, a table written in row format v1).
"""
from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
import random
import threading
import time
from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import TYPE_CHECKING, Callable, Mapping, TypedDict, Unpack

from pyspark_theflash.codec import column_types as T
from pyspark_theflash.codec import encode_record_key
from pyspark_theflash.schema.builder import ColumnOptions
from pyspark_theflash.schema.info_json import ColumnInfoJson, TableInfoJson
from pyspark_theflash.upstream_client.errors import SchemaError, TxnAbortedError, UpstreamError
from pyspark_theflash.upstream.rows import int_handle
from pyspark_theflash.upstream.tidb import Abandoned, Txn, make_column, table_info_of

if TYPE_CHECKING:
    from pyspark_theflash.upstream.cluster import MiniCluster

BANK_TABLE = "bank.accounts"


@dataclass
class Faults:
    dying: float = 0.0
    rollback: float = 0.0
    large: float = 0.0
    split_merge: float = 0.0
    schema: float = 0.0
    dying_ttl_ms: int = 300  # short, so readers waiting on an abandoned lock wait briefly
    large_keys: int = 100

    @classmethod
    def parse(cls, spec: str) -> "Faults":
        """``"dying,rollback=0.1,large"``: a bare name takes the probability 0.05."""
        faults = cls()
        names = {f.name for f in fields(cls)}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            name, _, value = part.partition("=")
            name = name.strip().replace("-", "_")
            if name not in names:
                raise ValueError(f"unknown fault {name!r}; known: {', '.join(sorted(names))}")
            current = getattr(faults, name)
            setattr(faults, name, type(current)(value) if value else 0.05)
        return faults


@dataclass
class WorkloadStats:
    committed: int = 0
    aborted: int = 0  # conflicts given up after retries
    retries: int = 0
    dying: int = 0
    rolled_back: int = 0
    large: int = 0
    splits: int = 0
    merges: int = 0
    schema_changes: int = 0
    errors: list[str] = field(default_factory=list)
    _mu: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str, n: int = 1) -> None:
        with self._mu:
            setattr(self, name, getattr(self, name) + n)

    def summary(self) -> str:
        return (
            f"committed={self.committed} retries={self.retries} aborted={self.aborted} dying={self.dying} "
            f"rolled_back={self.rolled_back} large={self.large} splits={self.splits} merges={self.merges} "
            f"schema_changes={self.schema_changes}"
        )


class _RollbackRequested(Exception):
    """Raised from after_prewrite to make the workload roll the prewritten transaction back."""


class WorkloadOptions(TypedDict, total=False):
    """The driver's settings a workload passes on to ``Workload.__init__``."""

    seed: int
    rate: float
    duration_s: float | None
    count: int | None
    threads: int
    faults: Faults | None
    async_commit: bool


class Workload(ABC):
    """Common driver: ``setup()`` once, then ``run()`` (blocking) or ``start()`` (threads)."""

    name = "workload"

    def __init__(
        self,
        cluster: MiniCluster,
        seed: int = 0,
        rate: float = 0.0,
        duration_s: float | None = None,
        count: int | None = None,
        threads: int = 1,
        faults: Faults | None = None,
        async_commit: bool = True,
    ) -> None:
        self.cluster = cluster
        self.async_commit = async_commit
        self.seed = seed
        self.rate = rate
        self.duration_s = duration_s
        self.count = count
        self.threads = threads
        self.faults = faults or Faults()
        self.stats = WorkloadStats()
        self.stop_event = threading.Event()
        self._threads: list[threading.Thread] = []
        self._issued = 0
        self._issued_mu = threading.Lock()

    @abstractmethod
    def setup(self) -> None:
        """Create the tables and initial rows (a restarted cluster keeps them)."""

    @abstractmethod
    def step(self, rng: random.Random) -> None:
        """One transaction (or a fault)."""

    # ---- driver
    def _claim(self) -> int | None:
        with self._issued_mu:
            if self.count is not None and self._issued >= self.count:
                return None
            self._issued += 1
            return self._issued

    def _worker(self, worker: int) -> None:
        rng = random.Random(self.seed * 1000 + worker)
        began = time.monotonic()
        deadline = began + self.duration_s if self.duration_s is not None else None
        per_thread_rate = self.rate / self.threads if self.rate > 0 else 0.0
        done = 0
        while not self.stop_event.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                return
            if self._claim() is None:
                return
            try:
                if self.faults.split_merge and rng.random() < self.faults.split_merge:
                    self.split_or_merge(rng)
                self.step(rng)
            except Exception as err:  # record and go on: a workload is a load generator
                self.stats.errors.append(f"{type(err).__name__}: {err}")
                if len(self.stats.errors) > 100:
                    raise
            done += 1
            if per_thread_rate:
                wait = began + done / per_thread_rate - time.monotonic()
                if wait > 0:
                    self.stop_event.wait(wait)

    def run(self) -> WorkloadStats:
        self.start()
        self.join()
        return self.stats

    def start(self) -> None:
        for i in range(self.threads):
            t = threading.Thread(target=self._worker, args=(i,), name=f"{self.name}-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def join(self, timeout_s: float | None = None) -> None:
        for t in self._threads:
            t.join(timeout_s)

    def stop(self) -> None:
        self.stop_event.set()
        self.join()

    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    # ---- shared helpers
    def commit(self, rng: random.Random, body: Callable[[Txn], object], keys_hint: int = 2) -> bool:
        """Run ``body`` in a transaction, with the fault knobs applied; retry conflicts.
        True when it committed."""
        f = self.faults
        fate = rng.random()
        if fate < f.dying:
            # an async-commit client dies after all its prewrites (committed) or between two (rolled back)
            mid_prewrite = self.async_commit and rng.random() < 0.5
            t = self.cluster.txn(ttl_ms=f.dying_ttl_ms, async_commit=self.async_commit,
                                 after_prewrite=None if mid_prewrite else _abandon,
                                 after_prewrite_batch=_abandon_batch if mid_prewrite else None)
            try:
                body(t)
                t.commit()
                self.stats.add("committed")  # one prewrite request: nothing to die between
                return True
            except Abandoned:
                self.stats.add("dying")
            except TxnAbortedError:
                self.stats.add("aborted")
            return False
        if fate < f.dying + f.rollback:
            # 2PC: an async-commit transaction is committed once prewritten, too late to roll back
            t = self.cluster.txn(after_prewrite=_request_rollback)
            try:
                body(t)
                t.commit()
            except _RollbackRequested:
                t.rollback()
                self.stats.add("rolled_back")
            except TxnAbortedError:
                self.stats.add("aborted")
            return False
        for attempt in range(30):
            t = self.cluster.txn(async_commit=self.async_commit)
            try:
                body(t)
                t.commit()
                self.stats.add("committed")
                return True
            except TxnAbortedError:
                self.stats.add("retries")
                time.sleep(min(0.001 * 2 ** attempt, 0.05) * rng.random())
        self.stats.add("aborted")
        return False

    def split_or_merge(self, rng: random.Random) -> None:
        """One move of a split/merge storm: split a random region at a random key of this
        workload's tables, or merge two random neighbours."""
        regions = self.cluster.regions()
        if len(regions) > 1 and rng.random() < 0.5:
            i = rng.randrange(len(regions) - 1)
            try:
                self.cluster.merge_regions(regions[i + 1].id, regions[i].id)
                self.stats.add("merges")
            except UpstreamError:
                pass  # the map changed under us: another worker split or merged first
            return
        key = self.random_key(rng)
        if key is not None and self.cluster.split_at(key):
            self.stats.add("splits")

    def random_key(self, rng: random.Random) -> bytes | None:
        return None


def _abandon(_: Txn) -> None:
    raise Abandoned()


def _abandon_batch(_: Txn, sent: int) -> None:
    raise Abandoned()


def _request_rollback(_: Txn) -> None:
    raise _RollbackRequested()


# ------------------------------------------------------------------------- bank


class BankWorkload(Workload):
    """``accounts`` accounts of ``initial`` each in bank.accounts (id BIGINT primary key =
    handle, balance BIGINT, owner VARCHAR); each step moves a random amount between two
    random accounts (a large transaction moves from many accounts into one)."""

    name = "bank"

    def __init__(self, cluster: MiniCluster, accounts: int = 100, initial: int = 1000, table: str = BANK_TABLE, **kw: Unpack[WorkloadOptions]) -> None:
        super().__init__(cluster, **kw)
        self.accounts = accounts
        self.initial = initial
        self.table = table

    @property
    def total(self) -> int:
        return self.accounts * self.initial

    def setup(self) -> None:
        try:
            self.cluster.table_info(*self.table.split(".", 1))
            return  # restarted cluster: the accounts are there
        except SchemaError:
            pass
        self.cluster.create_table(self.table, [
            make_column("id", "BIGINT"),
            make_column("balance", "BIGINT", not_null=True),
            make_column("owner", "VARCHAR(32)"),
        ], primary_key=["id"])
        for lo in range(0, self.accounts, 200):
            with self.cluster.txn(async_commit=self.async_commit) as t:
                for i in range(lo, min(lo + 200, self.accounts)):
                    t.insert(self.table, {"id": i, "balance": self.initial, "owner": f"owner-{i}"})

    def random_key(self, rng: random.Random) -> bytes | None:
        table_id = self.cluster.table_id(*self.table.split(".", 1))
        return bytes(encode_record_key(table_id, rng.randrange(1, self.accounts)))

    def step(self, rng: random.Random) -> None:
        if self.faults.large and rng.random() < self.faults.large:
            n = min(self.faults.large_keys, self.accounts - 1)
            sources = rng.sample(range(self.accounts), n + 1)
            sink, sources = sources[0], sources[1:]

            def gather(t: Txn) -> None:
                moved = 0
                for a in sources:
                    row = _account(t, self.table, a)
                    amount = min(1, _int(row, "balance")) if _int(row, "balance") > 0 else 0
                    if amount:
                        t.update(self.table, {"id": a, "balance": _int(row, "balance") - amount})
                        moved += amount
                row = _account(t, self.table, sink)
                t.update(self.table, {"id": sink, "balance": _int(row, "balance") + moved})

            if self.commit(rng, gather):
                self.stats.add("large")
            return
        a, b = rng.sample(range(self.accounts), 2)
        amount = rng.randint(1, max(1, self.initial // 10))

        def transfer(t: Txn) -> None:
            ra, rb = _account(t, self.table, a), _account(t, self.table, b)
            moved = min(amount, _int(ra, "balance"))
            t.update(self.table, {"id": a, "balance": _int(ra, "balance") - moved})
            t.update(self.table, {"id": b, "balance": _int(rb, "balance") + moved})

        self.commit(rng, transfer)

    def balances(self, ts: int) -> dict[int, int]:
        return {_int(r, "id"): _int(r, "balance") for r in self.cluster.scan_table(self.table, ts)}

    def verify(self, ts: int) -> int:
        """The total balance at ``ts``; raises AssertionError when it is not the constant."""
        balances = self.balances(ts)
        total = sum(balances.values())
        if len(balances) != self.accounts or total != self.total:
            raise AssertionError(
                f"bank invariant broken at ts {ts}: {len(balances)} accounts (want {self.accounts}), "
                f"total {total} (want {self.total})"
            )
        return total


CHECKING_TABLE = "bank.checking"
SAVINGS_TABLE = "bank.savings"


class TwoTableBankWorkload(Workload):
    """A bank over two tables: ``accounts`` rows in bank.checking and as many in bank.savings
    (id BIGINT primary key, balance BIGINT), ``initial`` each. Each step moves a random amount
    between two random accounts of either table (checking to savings, savings to checking, or
    within one), in one transaction: the sum over both tables is constant at every ts
    (``verify(ts)``), which a read that takes each table at its own ts breaks."""

    name = "bank2"

    def __init__(self, cluster: MiniCluster, accounts: int = 50, initial: int = 1000, **kw: Unpack[WorkloadOptions]) -> None:
        super().__init__(cluster, **kw)
        self.accounts = accounts
        self.initial = initial
        self.tables = (CHECKING_TABLE, SAVINGS_TABLE)

    @property
    def total(self) -> int:
        return 2 * self.accounts * self.initial

    def setup(self) -> None:
        existing = set(self.cluster.list_tables())
        for table in self.tables:
            if tuple(table.split(".", 1)) in existing:
                continue
            self.cluster.create_table(table, [
                make_column("id", "BIGINT"),
                make_column("balance", "BIGINT", not_null=True),
            ], primary_key=["id"])
            with self.cluster.txn(async_commit=self.async_commit) as t:
                for i in range(self.accounts):
                    t.insert(table, {"id": i, "balance": self.initial})

    def random_key(self, rng: random.Random) -> bytes | None:
        table_id = self.cluster.table_id(*rng.choice(self.tables).split(".", 1))
        return bytes(encode_record_key(table_id, rng.randrange(1, self.accounts)))

    def step(self, rng: random.Random) -> None:
        source, sink = rng.choice(self.tables), rng.choice(self.tables)
        a, b = rng.randrange(self.accounts), rng.randrange(self.accounts)
        if source == sink and a == b:
            b = (a + 1) % self.accounts
        amount = rng.randint(1, max(1, self.initial // 10))

        def transfer(t: Txn) -> None:
            ra = _account(t, source, a)
            moved = min(amount, _int(ra, "balance"))
            t.update(source, {"id": a, "balance": _int(ra, "balance") - moved})
            rb = _account(t, sink, b)
            t.update(sink, {"id": b, "balance": _int(rb, "balance") + moved})

        self.commit(rng, transfer)

    def verify(self, ts: int) -> int:
        """The sum over both tables at ``ts``; raises AssertionError when it is not the constant."""
        total: int = sum(_int(r, "balance") for table in self.tables for r in self.cluster.scan_table(table, ts))
        if total != self.total:
            raise AssertionError(f"two-table bank invariant broken at ts {ts}: total {total} (want {self.total})")
        return total


# ------------------------------------------------------------------------- orders

ORDERS_DB = "shop"


def orders_columns() -> dict[str, list[tuple[str, str, ColumnOptions]]]:
    """Column definitions of the orders workload: every TiDB type the codec handles."""
    return {
        "customers": [
            ("country", "CHAR(2)", {"not_null": True}),
            ("customer_id", "BIGINT", {"not_null": True}),
            ("name", "VARCHAR(64)", {"not_null": True}),
            ("email", "VARCHAR(128)", {}),
            ("tier", "ENUM('bronze','silver','gold')", {}),
            ("tags", "SET('vip','new','b2b')", {}),
            ("birthday", "DATE", {}),
            ("created_at", "DATETIME(6)", {}),
            ("updated_at", "TIMESTAMP(6)", {}),
            ("flags", "BIT(8)", {}),
            ("age", "TINYINT UNSIGNED", {}),
            ("credit", "DECIMAL(12,2)", {}),
            ("avatar", "BLOB", {}),
            ("profile", "JSON", {}),
        ],
        "orders": [
            ("id", "BIGINT", {}),
            ("country", "CHAR(2)", {}),
            ("customer_id", "BIGINT", {}),
            ("status", "ENUM('new','paid','shipped','cancelled')", {}),
            ("total", "DECIMAL(14,2)", {}),
            ("discount", "FLOAT", {}),
            ("weight", "DOUBLE", {}),
            ("placed_at", "DATETIME", {}),
            ("ship_year", "YEAR", {}),
            ("delivery_window", "TIME(3)", {}),
            ("note", "TEXT", {}),
            ("priority", "TINYINT", {}),
            ("channel", "SMALLINT", {}),
            ("warehouse", "MEDIUMINT", {}),
            ("points", "INT", {}),
            ("items_u16", "SMALLINT UNSIGNED", {}),
            ("region_u24", "MEDIUMINT UNSIGNED", {}),
            ("batch_u32", "INT UNSIGNED", {}),
            ("trace_u64", "BIGINT UNSIGNED", {}),
            ("token", "BINARY(8)", {}),
            ("flags", "BIT(64)", {}),
        ],
        "order_items": [
            ("order_id", "BIGINT", {"not_null": True}),
            ("sku", "VARCHAR(32)", {"not_null": True}),
            ("qty", "SMALLINT", {"not_null": True}),
            ("price", "DECIMAL(10,2)", {}),
            ("attrs", "JSON", {}),
            ("image", "VARBINARY(64)", {}),
            ("rating", "DOUBLE", {}),
        ],
    }


AUDIT = f"{ORDERS_DB}.audit"
AUDIT_PREVIOUS = f"{ORDERS_DB}.audit_previous"


def audit_columns() -> list[ColumnInfoJson]:
    """``shop.audit``: no primary key (_tidb_rowid handle), rows in TiDB's old format v1."""
    return [make_column("order_id", "BIGINT", not_null=True), make_column("event", "VARCHAR(32)"),
            make_column("at", "DATETIME(3)")]


def order_total(rng: random.Random) -> Decimal:
    """An order's total, 0.00 to 9,999.99: a new order's and an updated one's alike (new orders'
    ran to 10^10 and read as a decoding bug beside the others'; the types workload covers
    DECIMAL's extremes)."""
    return Decimal(rng.randrange(10**6)) / 100


class OrdersWorkload(Workload):
    """New orders (with new customers now and then), status updates, cancellations that
    delete an order and its items, audit rows; every type, NULLs included. Values of columns
    a schema change added or retyped follow the schema the transaction writes with."""

    name = "orders"

    def __init__(self, cluster: MiniCluster, **kw: Unpack[WorkloadOptions]) -> None:
        super().__init__(cluster, **kw)
        self._mu = threading.Lock()
        self._schema_mu = threading.Lock()  # one schema change at a time (TiDB's DDL owner runs one job)
        self._customers: list[tuple[str, int]] = []
        self._orders: dict[int, list[int]] = {}  # order id -> item row ids
        self._next_order = 0
        self._next_customer = 0
        self._schema_changes = 0

    def setup(self) -> None:
        cols = orders_columns()
        existing = set(self.cluster.list_tables())
        specs = {
            "customers": (["country", "customer_id"], True),
            "orders": (["id"], True),
            "order_items": ([], True),
        }
        for name, (pk, clustered) in specs.items():
            if (ORDERS_DB, name) in existing:
                continue
            self.cluster.create_table(
                f"{ORDERS_DB}.{name}", [make_column(n, t, **o) for n, t, o in cols[name]],
                primary_key=pk, clustered=clustered,
            )
        if self.faults.schema and (ORDERS_DB, "audit") not in existing:
            self.cluster.create_table(AUDIT, audit_columns(), row_format=1)
        with self._mu:
            for row in self.cluster.scan_table(f"{ORDERS_DB}.orders"):
                self._orders[_int(row, "id")] = []
                self._next_order = max(self._next_order, _int(row, "id"))
            for row in self.cluster.scan_table(f"{ORDERS_DB}.customers"):
                self._customers.append((str(row["country"]), _int(row, "customer_id")))
                self._next_customer = max(self._next_customer, _int(row, "customer_id"))
            for row in self.cluster.scan_table(f"{ORDERS_DB}.order_items"):
                self._orders.setdefault(_int(row, "order_id"), []).append(_int(row, "_tidb_rowid"))

    def random_key(self, rng: random.Random) -> bytes | None:
        if not self._orders:
            return None
        table_id = self.cluster.table_id(ORDERS_DB, "orders")
        return bytes(encode_record_key(table_id, rng.randint(1, max(1, self._next_order))))

    # ---- random values
    @staticmethod
    def _maybe(rng: random.Random, value: object, null_p: float = 0.2) -> object:
        return None if rng.random() < null_p else value

    def _customer_row(self, rng: random.Random, country: str, cid: int) -> dict[str, object]:
        m = self._maybe
        return {
            "country": country,
            "customer_id": cid,
            "name": f"customer {cid} ünï",
            "email": m(rng, f"c{cid}@example.com"),
            "tier": m(rng, rng.choice(["bronze", "silver", "gold"])),
            "tags": m(rng, ",".join(sorted(rng.sample(["vip", "new", "b2b"], rng.randint(0, 3)), key=["vip", "new", "b2b"].index))),
            "birthday": m(rng, dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(25000))),
            "created_at": m(rng, dt.datetime(2020, 1, 1) + dt.timedelta(seconds=rng.randrange(10**8), microseconds=rng.randrange(10**6))),
            "updated_at": m(rng, dt.datetime(2021, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=rng.randrange(10**8))),
            "flags": m(rng, rng.randrange(256)),
            "age": m(rng, rng.randrange(256)),
            "credit": m(rng, Decimal(rng.randrange(-10**9, 10**9)) / 100),
            "avatar": m(rng, rng.randbytes(rng.randrange(0, 600))),
            "profile": m(rng, {"lang": rng.choice(["en", "fr", "zh"]), "score": rng.random(), "n": rng.randrange(-5, 5),
                               "list": [1, "two", None, True]}),
        }

    def _order_row(self, rng: random.Random, oid: int, customer: tuple[str, int]) -> dict[str, object]:
        m = self._maybe
        return {
            "id": oid,
            "country": customer[0],
            "customer_id": customer[1],
            "status": "new",
            "total": m(rng, order_total(rng)),
            "discount": m(rng, float(rng.randrange(0, 50)) / 4),
            "weight": m(rng, rng.uniform(-1e6, 1e6)),
            "placed_at": m(rng, dt.datetime(2024, 1, 1) + dt.timedelta(seconds=rng.randrange(10**7))),
            "ship_year": m(rng, rng.randint(1901, 2155)),
            "delivery_window": m(rng, dt.timedelta(hours=rng.randint(-838, 838), milliseconds=rng.randrange(0, 3600000)) if rng.random() < 0.5 else dt.timedelta(seconds=rng.randrange(86400))),
            "note": m(rng, "note " * rng.randrange(0, 80)),
            "priority": m(rng, rng.randint(-128, 127)),
            "channel": m(rng, rng.randint(-32768, 32767)),
            "warehouse": m(rng, rng.randint(-(1 << 23), (1 << 23) - 1)),
            "points": m(rng, rng.randint(-(1 << 31), (1 << 31) - 1)),
            "items_u16": m(rng, rng.randint(0, (1 << 16) - 1)),
            "region_u24": m(rng, rng.randint(0, (1 << 24) - 1)),
            "batch_u32": m(rng, rng.randint(0, (1 << 32) - 1)),
            "trace_u64": m(rng, rng.randint(0, (1 << 64) - 1)),
            "token": m(rng, rng.randbytes(8)),
            "flags": m(rng, rng.randint(0, (1 << 64) - 1)),
        }

    def _item_row(self, rng: random.Random, oid: int, n: int) -> dict[str, object]:
        m = self._maybe
        return {
            "order_id": oid,
            "sku": f"SKU-{rng.randrange(10000):05d}-{n}",
            "qty": rng.randint(1, 20),
            "price": m(rng, Decimal(rng.randrange(0, 10**8)) / 100),
            "attrs": m(rng, {"color": rng.choice(["red", "blue"]), "size": rng.randrange(30, 50)}),
            "image": m(rng, rng.randbytes(rng.randrange(0, 64))),
            "rating": m(rng, rng.choice([0.0, -0.0, 1.5, 1e300, -2.25])),
        }

    # ---- steps
    def step(self, rng: random.Random) -> None:
        if self.faults.schema and rng.random() < self.faults.schema:
            self.change_schema(rng)
        roll = rng.random()
        with self._mu:
            have_orders = bool(self._orders)
        if self.faults.schema and rng.random() < 0.15:
            self.audit(rng)
        if roll < 0.6 or not have_orders:
            self.new_order(rng)
        elif roll < 0.9:
            self.update_order(rng)
        else:
            self.cancel_order(rng)

    def new_order(self, rng: random.Random) -> None:
        with self._mu:
            new_customer = not self._customers or rng.random() < 0.3
            if new_customer:
                self._next_customer += 1
                customer = (rng.choice(["US", "FR", "CN", "DE"]), self._next_customer)
            else:
                customer = rng.choice(self._customers)
            self._next_order += 1
            oid = self._next_order
        large = self.faults.large and rng.random() < self.faults.large
        n_items = self.faults.large_keys if large else rng.randint(1, 4)
        item_ids: list[int] = []

        def body(t: Txn) -> None:
            item_ids.clear()
            if new_customer:
                t.insert(f"{ORDERS_DB}.customers", self._customer_row(rng, *customer) | _changed_values(
                    rng, t.table(f"{ORDERS_DB}.customers"), ("tags",)))
            t.insert(f"{ORDERS_DB}.orders", self._order_row(rng, oid, customer) | _changed_values(
                rng, t.table(f"{ORDERS_DB}.orders"), ()))
            for n in range(n_items):
                item_ids.append(int_handle(t.insert(f"{ORDERS_DB}.order_items", self._item_row(rng, oid, n))))

        if self.commit(rng, body):
            if large:
                self.stats.add("large")
            with self._mu:
                if new_customer:
                    self._customers.append(customer)
                self._orders[oid] = list(item_ids)

    def update_order(self, rng: random.Random) -> None:
        with self._mu:
            oid = rng.choice(list(self._orders))
        status = rng.choice(["paid", "shipped", "cancelled"])

        def body(t: Txn) -> None:
            if t.get(f"{ORDERS_DB}.orders", oid) is None:
                return
            table = t.table(f"{ORDERS_DB}.orders")
            members = _elems(table, "status")
            now = members[-1] if len(members) > 4 and rng.random() < 0.3 else status  # an appended member
            t.update(f"{ORDERS_DB}.orders", {"id": oid, "status": now, "total": order_total(rng),
                                             "note": self._maybe(rng, f"now {now}", 0.5)}
                     | _changed_values(rng, table, ()))

        self.commit(rng, body)

    def cancel_order(self, rng: random.Random) -> None:
        with self._mu:
            oid = rng.choice(list(self._orders))
            items = list(self._orders[oid])

        def body(t: Txn) -> None:
            if t.get(f"{ORDERS_DB}.orders", oid) is None:
                return
            t.delete(f"{ORDERS_DB}.orders", oid)
            for rowid in items:
                if t.get(f"{ORDERS_DB}.order_items", rowid) is not None:
                    t.delete(f"{ORDERS_DB}.order_items", rowid)

        if self.commit(rng, body):
            with self._mu:
                self._orders.pop(oid, None)

    def audit(self, rng: random.Random) -> None:
        """An audit row (row format v1) of a random order; the table may be in the middle of a
        DROP + CREATE (then there is nothing to write to)."""
        with self._mu:
            oid = self._next_order

        def body(t: Txn) -> None:
            row = {"order_id": oid, "event": rng.choice(["viewed", "paid", "mailed"]),
                   "at": dt.datetime(2024, 1, 1) + dt.timedelta(milliseconds=rng.randrange(10**10))}
            t.insert(AUDIT, row | _changed_values(rng, t.table(AUDIT), ()))

        try:
            self.commit(rng, body)
        except SchemaError:
            pass  # shop.audit is being dropped and created again

    def change_schema(self, rng: random.Random) -> None:
        """One schema change, as TiDB runs them (one DDL job at a time), chosen at random among
        every kind: ADD/DROP COLUMN and MODIFY COLUMN in place or through a reorg on
        ``shop.orders``; ENUM/SET members appended and a longer VARCHAR on ``shop.orders`` /
        ``shop.customers``; TRUNCATE, RENAME + CREATE, DROP + CREATE and ADD COLUMN on
        ``shop.audit`` (rows in format v1). A change the data refuses (a reorg whose values
        do not fit) fails as TiDB's would and changes nothing."""
        orders, customers = f"{ORDERS_DB}.orders", f"{ORDERS_DB}.customers"
        with self._schema_mu:
            n = self._schema_changes = self._schema_changes + 1
            table = table_info_of(self.cluster.table_info(ORDERS_DB, "orders"))
            extras = {c.name: c for c in table.all_columns if c.name.startswith("extra_")}
            kind = rng.choice(["add", "add", "drop", "widen", "reorg", "enum", "set", "varchar",
                               "truncate", "recreate", "rename", "audit_column"])
            try:
                if kind == "add" or (kind in ("drop", "widen", "reorg") and not extras):
                    self.cluster.add_column(orders, make_column(f"extra_{n}", "INT"), default=rng.randrange(100))
                elif kind == "drop":
                    self.cluster.drop_column(orders, rng.choice(sorted(extras)))
                elif kind == "widen":
                    ints = sorted(c for c, v in extras.items() if v.tp == T.TYPE_LONG)
                    if ints:  # INT -> BIGINT keeps the column id: bigger values follow at once
                        self.cluster.modify_column(orders, rng.choice(ints), make_column("_", "BIGINT"))
                elif kind == "reorg":  # a type TiDB cannot change in place: a new column id, rows rewritten
                    name = rng.choice(sorted(extras))
                    self.cluster.modify_column(orders, name, make_column(name, "VARCHAR(24)"))
                elif kind == "enum":
                    members = _elems(self.cluster.table_info(ORDERS_DB, "orders"), "status")
                    self.cluster.modify_column(orders, "status", make_column(
                        "status", "ENUM(" + ",".join(f"'{m}'" for m in [*members, f"state{n}"]) + ")"))
                elif kind == "set":
                    members = _elems(self.cluster.table_info(ORDERS_DB, "customers"), "tags")
                    if len(members) < 64:
                        self.cluster.modify_column(customers, "tags", make_column(
                            "tags", "SET(" + ",".join(f"'{m}'" for m in [*members, f"tag{n}"]) + ")"))
                elif kind == "varchar":
                    email = next(c for c in table_info_of(self.cluster.table_info(ORDERS_DB, "customers")).all_columns
                                 if c.name == "email")
                    self.cluster.modify_column(customers, "email", make_column("email", f"VARCHAR({email.flen + 1})"))
                elif kind == "truncate":
                    self.cluster.truncate_table(AUDIT)
                elif kind == "recreate":
                    self.cluster.drop_table(AUDIT)
                    self.cluster.create_table(AUDIT, audit_columns(), row_format=1)
                elif kind == "rename":
                    if (ORDERS_DB, "audit_previous") in set(self.cluster.list_tables()):
                        self.cluster.drop_table(AUDIT_PREVIOUS)
                    self.cluster.rename_table(AUDIT, AUDIT_PREVIOUS)
                    self.cluster.create_table(AUDIT, audit_columns(), row_format=1)
                elif kind == "audit_column":
                    self.cluster.add_column(AUDIT, make_column(f"extra_{n}", "INT"), default=n)
            except SchemaError:
                return  # refused (values that do not fit, a name taken): nothing changed
        self.stats.add("schema_changes")


def _account(t: Txn, table: str, account: int) -> dict[str, object]:
    """An account's row: every account exists from the workload's setup on (a missing one
    breaks the bank's invariant)."""
    row = t.get(table, account)
    if row is None:
        raise AssertionError(f"account {account} of {table} is missing")
    return row


def _int(row: Mapping[str, object], column: str) -> int:
    """An integer column's value in a row read back (the workloads' keys, row ids and balances)."""
    value = row[column]
    if not isinstance(value, int):
        raise AssertionError(f"{column} = {value!r} is not an integer")
    return value


def _elems(table: TableInfoJson, column: str) -> list[str]:
    col = next(c for c in table["cols"] if c["name"]["O"] == column)
    return list(col["type"].get("Elems") or [])


def _changed_values(rng: random.Random, table: TableInfoJson, members_of: tuple[str, ...]) -> dict[str, object]:
    """Values for the columns schema changes added or retyped (``extra_*``) as the schema the
    transaction writes with types them, the widest values that type holds now and then (a
    widened INT gets values beyond 32 bits at once); for SET columns in ``members_of``,
    members appended by a schema change."""
    out: dict[str, object] = {}
    for c in table["cols"]:
        name, tp = c["name"]["O"], c["type"]["Tp"]
        if name.startswith("extra_"):
            if rng.random() < 0.2:
                out[name] = None
            elif tp == T.TYPE_LONG:
                out[name] = rng.choice([rng.randint(-(1 << 31), (1 << 31) - 1), (1 << 31) - 1, rng.randrange(100)])
            elif tp == T.TYPE_LONGLONG:
                out[name] = rng.choice([1099511627781, rng.randint(-(1 << 62), 1 << 62), rng.randrange(100)])
            else:
                out[name] = f"v{rng.randrange(10**6)}"
        elif name in members_of and len(c["type"].get("Elems") or ()) > 3 and rng.random() < 0.5:
            out[name] = (c["type"].get("Elems") or [])[-1]
    return out


# ------------------------------------------------------------------------- types

TYPES_TABLE = "kinds.every_type"


def types_columns() -> list[tuple[str, str, ColumnOptions]]:
    """Column definitions of the types workload: every TiDB type but TIME (which keeps a table
    off the native read path; ``shop.orders`` has one), the handle first."""
    return [
        ("id", "BIGINT", {"not_null": True}),
        ("i8", "TINYINT", {}), ("i16", "SMALLINT", {}), ("i24", "MEDIUMINT", {}), ("i32", "INT", {}),
        ("i64", "BIGINT", {}),
        ("u8", "TINYINT UNSIGNED", {}), ("u16", "SMALLINT UNSIGNED", {}), ("u24", "MEDIUMINT UNSIGNED", {}),
        ("u32", "INT UNSIGNED", {}), ("u64", "BIGINT UNSIGNED", {}),
        ("yr", "YEAR", {}), ("f32", "FLOAT", {}), ("f64", "DOUBLE", {}),
        ("dec", "DECIMAL(12,2)", {}), ("dec38", "DECIMAL(38,10)", {}),
        ("d", "DATE", {}), ("dtm", "DATETIME(6)", {}), ("tsz", "TIMESTAMP(6)", {}),
        ("ch", "CHAR(8)", {}), ("vc", "VARCHAR(64)", {}), ("txt", "TEXT", {}),
        ("bn", "BINARY(6)", {}), ("vb", "VARBINARY(32)", {}), ("bl", "BLOB", {}),
        ("en", "ENUM('alpha','beta','gamma')", {}), ("st", "SET('x','y','z')", {}), ("js", "JSON", {}),
        ("b8", "BIT(8)", {}), ("b64", "BIT(64)", {}),
        ("tag", "VARCHAR(16)", {"not_null": True}),
    ]


def _extreme_or(rng: random.Random, lo: int, hi: int, small: range) -> int:
    """A value of [lo, hi]: mostly from ``small`` (so equality filters find rows), now and
    then one of the type's extremes."""
    return rng.choice((lo, hi)) if rng.random() < 0.1 else rng.choice(small)


def types_value(rng: random.Random, name: str) -> object:
    """A random non-NULL value of the types table's column ``name``."""
    e = _extreme_or
    base_day = dt.date(2020, 1, 1)
    makers: dict[str, Callable[[], object]] = {
        "i8": lambda: e(rng, -128, 127, range(-5, 6)),
        "i16": lambda: e(rng, -32768, 32767, range(-50, 50, 7)),
        "i24": lambda: e(rng, -(1 << 23), (1 << 23) - 1, range(-1000, 1000, 111)),
        "i32": lambda: e(rng, -(1 << 31), (1 << 31) - 1, range(-10**6, 10**6, 99991)),
        "i64": lambda: e(rng, -(1 << 63), (1 << 63) - 1, range(-10**12, 10**12, 99999999989)),
        "u8": lambda: e(rng, 0, 255, range(0, 10)),
        "u16": lambda: e(rng, 0, (1 << 16) - 1, range(0, 1000, 77)),
        "u24": lambda: e(rng, 0, (1 << 24) - 1, range(0, 10**5, 7919)),
        "u32": lambda: e(rng, 0, (1 << 32) - 1, range(0, 10**9, 99999989)),
        "u64": lambda: e(rng, 0, (1 << 64) - 1, range(0, 10**15, 99999999999989)),
        "yr": lambda: e(rng, 1901, 2155, range(1990, 2030, 3)),
        # FLOAT values a float32 holds exactly, so every reader sees the same number
        "f32": lambda: rng.choice([0.0, -0.0, 1.5, -2.25, 3.0e38, 1.0e-38, rng.randrange(-800, 800) / 8]),
        "f64": lambda: rng.choice([0.0, -0.0, 1e300, -1e-300, 0.1, rng.uniform(-1e6, 1e6), rng.randrange(-9, 9) / 4]),
        "dec": lambda: Decimal(e(rng, -(10**12) + 1, 10**12 - 1, range(-5000, 5000, 37))) / 100,
        # (built from text: Decimal arithmetic would round 38 digits to the context's 28)
        "dec38": lambda: Decimal(f"{e(rng, -(10**38) + 1, 10**38 - 1, range(-10**12, 10**12, 9999999967))}E-10"),
        "d": lambda: rng.choice([dt.date(1000, 1, 1), dt.date(9999, 12, 31)]) if rng.random() < 0.1
        else base_day + dt.timedelta(days=rng.randrange(60)),
        "dtm": lambda: dt.datetime(2024, 1, 1) + dt.timedelta(hours=rng.randrange(48), microseconds=rng.choice([0, 1, 999999])),
        "tsz": lambda: dt.datetime(2030, 6, 1, tzinfo=dt.timezone.utc) + dt.timedelta(minutes=rng.randrange(0, 3000, 30),
                                                                                    microseconds=rng.choice([0, 123456])),
        "ch": lambda: rng.choice(["", "a", "ab", "abc", "b_c", "b%d", "ü", "zz"]),
        "vc": lambda: rng.choice(["alpha-", "alpha-beta", "beta", "Beta", "gam'ma", "a_b", "a%b", "ünïcode ✓", " pad ",
                                  "x" * 63, ""]) + rng.choice(["", str(rng.randrange(10))]),  # at most VARCHAR(64)
        "txt": lambda: "note " * rng.randrange(0, 40),
        "bn": lambda: rng.choice([b"\x00" * 6, b"\xff" * 6, b"abcdef", rng.randbytes(6)]),
        "vb": lambda: rng.choice([b"", b"\x00", b"ab", b"abc", rng.randbytes(rng.randrange(1, 32))]),
        "bl": lambda: rng.randbytes(rng.randrange(0, 300)),
        "en": lambda: rng.choice(["alpha", "beta", "gamma"]),
        "st": lambda: rng.choice(["", "x", "y", "x,y", "x,z", "x,y,z"]),
        "js": lambda: rng.choice([{"k": rng.randrange(5)}, [1, "two", None, True], '"text"', 3.5, False,
                                  {"nested": {"a": [rng.randrange(3)]}}]),
        "b8": lambda: e(rng, 0, 255, range(0, 256, 17)),
        "b64": lambda: e(rng, 0, (1 << 64) - 1, range(0, 1 << 40, 1 << 35)),
        "tag": lambda: rng.choice(["red", "green", "blue"]),
    }
    return makers[name]()


class TypesWorkload(Workload):
    """Rows of ``kinds.every_type`` (see :func:`types_columns`): ``rows`` at setup, then each
    step inserts a row, updates a few columns of one (NULL now and then) or deletes one."""

    name = "types"

    def __init__(self, cluster: MiniCluster, rows: int = 200, table: str = TYPES_TABLE, **kw: Unpack[WorkloadOptions]) -> None:
        super().__init__(cluster, **kw)
        self.rows = rows
        self.table = table
        self._mu = threading.Lock()
        self._ids: list[int] = []
        self._next_id = 0
        self._names = [n for n, _, _ in types_columns() if n != "id"]
        self._nullable = {n for n, _, o in types_columns() if not o.get("not_null")}

    def row(self, rng: random.Random, row_id: int) -> dict[str, object]:
        return {"id": row_id, **{n: None if n in self._nullable and rng.random() < 0.15 else types_value(rng, n)
                                 for n in self._names}}

    def setup(self) -> None:
        existing = set(self.cluster.list_tables())
        db, name = self.table.split(".", 1)
        if (db, name) not in existing:
            self.cluster.create_table(self.table, [make_column(n, t, **o) for n, t, o in types_columns()],
                                      primary_key=["id"])
            rng = random.Random(self.seed)
            for lo in range(0, self.rows, 100):
                with self.cluster.txn() as t:
                    for i in range(lo, min(lo + 100, self.rows)):
                        t.insert(self.table, self.row(rng, i))
        with self._mu:
            self._ids = sorted(_int(r, "id") for r in self.cluster.scan_table(self.table))
            self._next_id = (self._ids[-1] + 1) if self._ids else 0

    def random_key(self, rng: random.Random) -> bytes | None:
        table_id = self.cluster.table_id(*self.table.split(".", 1))
        return bytes(encode_record_key(table_id, rng.randrange(max(1, self._next_id))))

    def step(self, rng: random.Random) -> None:
        roll = rng.random()
        with self._mu:
            if roll < 0.4 or len(self._ids) < 2:
                row_id, action = self._next_id, "insert"
                self._next_id += 1
            else:
                row_id, action = rng.choice(self._ids), ("update" if roll < 0.85 else "delete")
        if action == "insert":
            row = self.row(rng, row_id)
            if self.commit(rng, lambda t: t.insert(self.table, row)):
                with self._mu:
                    self._ids.append(row_id)
            return
        if action == "delete":
            def delete(t: Txn) -> None:
                if t.get(self.table, row_id) is not None:
                    t.delete(self.table, row_id)

            if self.commit(rng, delete):
                with self._mu:
                    if row_id in self._ids:
                        self._ids.remove(row_id)
            return
        changed = {n: None if n in self._nullable and rng.random() < 0.2 else types_value(rng, n)
                   for n in rng.sample(self._names, rng.randint(1, 4))}

        def update(t: Txn) -> None:
            if t.get(self.table, row_id) is not None:
                t.update(self.table, {"id": row_id, **changed})

        self.commit(rng, update)


WORKLOADS: dict[str, type[Workload]] = {"bank": BankWorkload, "orders": OrdersWorkload, "types": TypesWorkload}

