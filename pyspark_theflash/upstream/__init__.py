"""The embedded mini cluster: TiDB + TiKV + PD on the points a replica depends on.

* ``MiniCluster(data_dir, binlog_dir, ...)`` (cluster.py): TSO, regions, Percolator store,
  catalog and transactions in one process, writing the binlog; implements ``UpstreamClient``.
* Served (``theflash upstream --serve PORT``), it answers on the wire as PD, TiKV and TiDB's
  status port, and on its own gRPC service (service.py), which
  ``pyspark_theflash.upstream_client.connect("grpc://host:port")`` reaches.
* ``BankWorkload``, ``OrdersWorkload``, ``Faults`` (workloads.py).

Modules: tso (PD's TSO), pd (region map, GC safe point), percolator (TiKV), tidb (catalog,
transactions), rows (a table's keys and row values), values (TiDB's strict-mode value checks,
a value or a column at a time), bulk (``MiniCluster.bulk_insert``), status_server (HTTP
/schema), service (gRPC), cli. The clients of a cluster, this one or a real one, are their
own box below it: ``pyspark_theflash.upstream_client``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark_theflash.lazy_exports import lazy_getattr

if TYPE_CHECKING:
    from pyspark_theflash.upstream.cluster import MiniCluster
    from pyspark_theflash.upstream.workloads import BankWorkload, Faults, OrdersWorkload

# Imported when first named (pyspark_theflash/lazy_exports.py): a module that needs one of the
# mini cluster's modules does not load the whole cluster and the pandas-backed workloads.
if not TYPE_CHECKING:
    __getattr__ = lazy_getattr(__name__, {"pyspark_theflash.upstream.cluster": ("MiniCluster",),
                                          "pyspark_theflash.upstream.workloads": ("BankWorkload", "Faults",
                                                                                  "OrdersWorkload")})


__all__ = ["BankWorkload", "Faults", "MiniCluster", "OrdersWorkload"]
