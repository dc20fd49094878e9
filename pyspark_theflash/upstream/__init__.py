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

from pyspark_theflash.upstream.client import TxnStatus, UpstreamClient, connect
from pyspark_theflash.upstream.cluster import MiniCluster
from pyspark_theflash.upstream.workloads import BankWorkload, Faults, OrdersWorkload

__all__ = ["BankWorkload", "Faults", "MiniCluster", "OrdersWorkload", "TxnStatus", "UpstreamClient", "connect"]
