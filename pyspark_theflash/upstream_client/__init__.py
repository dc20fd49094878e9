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

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark_theflash.upstream_client.client import UpstreamClient, connect

# Imported when first named (PEP 562): a module that needs only a constant or an error does
# not load the gRPC client.
_LAZY = {"UpstreamClient": "client", "connect": "client"}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = ["UpstreamClient", "connect"]
