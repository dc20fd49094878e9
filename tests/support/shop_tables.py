"""The shop the native SQL tests query (tests/integration/test_native_sql*.py): customers and
their orders on the mini cluster, orders over two regions (two read streams), some customers'
regions NULL and some orders' customers missing or NULL, so that joins pad and filters meet
NULLs. The orders' ``status`` column is the test module's to choose (its type and values)."""
from __future__ import annotations

import datetime as dt
import decimal
from typing import Any, Callable

import pyarrow as pa

from pyspark_theflash.upstream.tidb import make_column, record_key

CUSTOMERS, ORDERS = "shop.customers", "shop.orders"
N_CUSTOMERS, N_ORDERS = 40, 300


def create_shop(cluster: Any, status_type: str, status: Callable[[int], str | None]) -> None:
    """``N_CUSTOMERS`` customers and ``N_ORDERS`` orders; order i's status is ``status(i)``."""
    cluster.create_table(CUSTOMERS, [make_column("id", "BIGINT", not_null=True), make_column("name", "VARCHAR(20)"),
                                     make_column("region", "VARCHAR(8)")], primary_key=["id"])
    orders = cluster.create_table(ORDERS, [
        make_column("id", "BIGINT", not_null=True), make_column("customer_id", "BIGINT"),
        make_column("total", "DECIMAL(12,2)"), make_column("status", status_type), make_column("placed", "DATE")],
        primary_key=["id"])
    cluster.split_at(record_key(orders, N_ORDERS // 2))  # two regions: two read streams
    cluster.bulk_insert(CUSTOMERS, pa.table({
        "id": pa.array(range(N_CUSTOMERS), pa.int64()), "name": [f"c{i}" for i in range(N_CUSTOMERS)],
        "region": [None if i % 9 == 0 else ("north", "south", "east")[i % 3] for i in range(N_CUSTOMERS)]}))
    cluster.bulk_insert(ORDERS, pa.table({
        "id": pa.array(range(N_ORDERS), pa.int64()),
        # customers 40..42 do not exist: a LEFT JOIN pads those orders
        "customer_id": pa.array([None if i % 50 == 7 else (i * 7) % (N_CUSTOMERS + 3) for i in range(N_ORDERS)],
                                pa.int64()),
        "total": pa.array([decimal.Decimal(i * 37 % 1000) / 4 for i in range(N_ORDERS)], pa.decimal128(12, 2)),
        "status": [status(i) for i in range(N_ORDERS)],
        "placed": pa.array([dt.date(2025, 1, 1) + dt.timedelta(days=i % 40) for i in range(N_ORDERS)])}),
        txn_rows=100)
