"""The embedded mini cluster: TiDB + TiKV + PD on the points a replica depends on.

* ``MiniCluster(data_dir, binlog_dir, ...)`` (cluster.py): TSO, regions, Percolator store,
  catalog and transactions in one process, writing the binlog; implements ``UpstreamClient``.
* ``connect("grpc://host:port") -> UpstreamClient`` (client.py): the same calls against a
  served cluster (``theflash upstream --serve PORT``).
* ``BankWorkload``, ``OrdersWorkload``, ``Faults`` (workloads.py).

Modules: tso (PD's TSO), pd (region map, GC safe point), percolator (TiKV), tidb (catalog,
transactions), rows (a table's keys and row values), values (TiDB's strict-mode value checks,
a value or a column at a time), bulk (``MiniCluster.bulk_insert``), status_server (HTTP
/schema), service (gRPC), cli.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark_theflash.txn.status import TxnStatus
    from pyspark_theflash.upstream.client import UpstreamClient, connect
    from pyspark_theflash.upstream.cluster import MiniCluster
    from pyspark_theflash.upstream.workloads import BankWorkload, Faults, OrdersWorkload

# Imported when first named (PEP 562): a module that needs only ``upstream.pd``'s constants
# (the writer) does not load the mini cluster, the gRPC client and pandas-backed workloads.
_LAZY = {"TxnStatus": "client", "UpstreamClient": "client", "connect": "client", "MiniCluster": "cluster",
         "BankWorkload": "workloads", "Faults": "workloads", "OrdersWorkload": "workloads"}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = ["BankWorkload", "Faults", "MiniCluster", "OrdersWorkload", "TxnStatus", "UpstreamClient", "connect"]
