"""The clients of an upstream TiDB cluster: what capture, the writer and a reader ask of it.

* ``connect(address) -> UpstreamClient`` (client.py): ``pd://HOST:PORT[,...]`` gives
  ``TiDBClusterClient`` (tidb_cluster.py) over PD, TiKV and TiDB's status port, as any TiDB
  cluster serves them; ``grpc://HOST:PORT`` a served mini cluster's own service.
* ``PDClient`` (pd_client.py), the gRPC channels every client opens (channels.py), the errors
  an upstream answers with (errors.py), ``kvrpcpb.Action`` both ways (txn_actions.py).

The mini cluster that plays a TiDB cluster when none is at hand is another box
(``pyspark_theflash.upstream``), above this one: it implements ``UpstreamClient`` too.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark_theflash.lazy_exports import lazy_getattr

if TYPE_CHECKING:
    from pyspark_theflash.upstream_client.client import UpstreamClient, connect

# Imported when first named (pyspark_theflash/lazy_exports.py): a module that needs only a
# constant or an error does not load the gRPC client.
if not TYPE_CHECKING:
    __getattr__ = lazy_getattr(__name__, {"pyspark_theflash.upstream_client.client": ("UpstreamClient", "connect")})


__all__ = ["UpstreamClient", "connect"]
