"""What a TheFlash reader and writer need from the upstream cluster (``UpstreamClient``), and
its gRPC + HTTP implementation (``connect``).

``MiniCluster`` implements the same protocol in-process; ``connect("grpc://host:port")``
reaches a served mini cluster (``theflash upstream --serve``): PD/TiKV calls over the
Upstream gRPC service, table info over the TiDB-style HTTP status port whose address the
service announces in GetClusterInfo.
"""
from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from typing import Any, Iterable, NamedTuple, Protocol, Sequence, runtime_checkable

import grpc

from pyspark_theflash.proto import binlog_pb2, upstream_pb2, upstream_pb2_grpc
from pyspark_theflash.schema.info_json import TableInfoJson
from pyspark_theflash.txn.status import LockInfo, SecondaryLocks, TxnAction, TxnFate, TxnStatus
from pyspark_theflash.upstream_client.errors import RegionNotFoundError, SchemaError, UpstreamError
from pyspark_theflash.upstream_client.channels import upstream_channel
from pyspark_theflash.upstream_client.records import decode_records, split_table_name

_FATE_OF_STATUS = {
    upstream_pb2.CheckTxnStatusResponse.LOCKED: TxnFate.LOCKED,
    upstream_pb2.CheckTxnStatusResponse.COMMITTED: TxnFate.COMMITTED,
    upstream_pb2.CheckTxnStatusResponse.ROLLED_BACK: TxnFate.ROLLED_BACK,
}
STATUS_OF_FATE = {v: k for k, v in _FATE_OF_STATUS.items()}

# TiKV starts a new peer's raft log at this index (RAFT_INIT_LOG_INDEX): the first event of a
# region (its snapshot, or the split that created it) is followed by index 6. A read index is
# never below it; a replica's region has applied at least it.
RAFT_INIT_LOG_INDEX = 5


def lock_to_proto(lock: LockInfo) -> upstream_pb2.LockInfo:
    """A lock as the mini cluster's Upstream service sends it."""
    return upstream_pb2.LockInfo(
        primary_lock=lock.primary, lock_version=lock.start_ts, key=lock.key, lock_ttl=lock.ttl_ms,
        # (protoc's stub takes an OpType or its name; protobuf takes the int LockInfo.op is)
        txn_size=lock.txn_size, lock_type=lock.op,  # type: ignore[arg-type]
        use_async_commit=lock.use_async_commit,
        min_commit_ts=lock.min_commit_ts, secondaries=list(lock.secondaries),
    )


def lock_from_proto(p: upstream_pb2.LockInfo) -> LockInfo:
    return LockInfo(p.key, p.primary_lock, p.lock_version, p.lock_ttl, p.txn_size, p.lock_type, p.use_async_commit,
                    p.min_commit_ts, tuple(p.secondaries))


def status_to_proto(status: TxnStatus) -> upstream_pb2.CheckTxnStatusResponse:
    """CheckTxnStatus' answer as the mini cluster's Upstream service sends it."""
    return upstream_pb2.CheckTxnStatusResponse(
        status=STATUS_OF_FATE[status.fate], commit_ts=status.commit_ts, lock_ttl=status.ttl_ms,
        action=status.action.value, lock_info=lock_to_proto(status.lock) if status.lock is not None else None,
    )


def status_from_proto(resp: upstream_pb2.CheckTxnStatusResponse) -> TxnStatus:
    lock = lock_from_proto(resp.lock_info) if resp.HasField("lock_info") else None
    return TxnStatus(_FATE_OF_STATUS[resp.status], resp.commit_ts, resp.lock_ttl, TxnAction.named(resp.action), lock)


class TableScan(NamedTuple):
    """A table read at ``ts`` from the upstream (``read_table``): the table info in force then (the
    table that had the name then) and its rows, decoded as ``MiniCluster.scan_table`` does."""

    ts: int
    db: str
    table_info: TableInfoJson
    rows: list[dict[str, object]]


@runtime_checkable
class UpstreamClient(Protocol):
    def get_ts(self) -> int: ...
    def regions(self) -> list[binlog_pb2.Region]: ...
    def read_index(self, region_id: int, read_ts: int = 0) -> int: ...
    def read_indexes(self, region_ids: Sequence[int], read_ts: int = 0) -> dict[int, int]: ...
    def check_txn_status(self, primary: bytes, lock_ts: int, caller_start_ts: int, current_ts: int,
                         force_sync_commit: bool = False) -> TxnStatus: ...
    def check_secondary_locks(self, keys: Iterable[bytes], start_ts: int) -> SecondaryLocks: ...
    def resolve_lock(self, start_ts: int, commit_ts: int, keys: Iterable[bytes] | None = None) -> int: ...
    def gc_safe_point(self) -> int: ...
    def update_gc_safe_point(self, ts: int) -> int: ...
    def region_snapshot(self, region_id: int) -> binlog_pb2.Event: ...
    def table_info(self, db: str, table: str) -> TableInfoJson: ...
    def table_info_by_id(self, table_id: int) -> tuple[str, TableInfoJson]: ...
    def list_tables(self) -> list[tuple[str, str]]: ...
    def scan_table(self, qualified: str, ts: int | None = None) -> list[dict[str, object]]: ...


class UpstreamConnection(UpstreamClient, Protocol):
    """An ``UpstreamClient`` this process connected (``connect``): its giver closes it."""

    def close(self) -> None: ...


def parse_address(address: str) -> str:
    """host:port of ``grpc://host:port`` or ``host:port``."""
    return address.removeprefix("grpc://").rstrip("/")


class GrpcUpstreamClient:
    """``UpstreamClient`` over the Upstream gRPC service and the HTTP status port."""

    def __init__(self, address: str, timeout_s: float = 10.0) -> None:
        self.address = parse_address(address)
        self.timeout_s = timeout_s
        self._channel = upstream_channel(self.address)
        self._stub = upstream_pb2_grpc.UpstreamStub(self._channel)
        self._info: upstream_pb2.ClusterInfoResponse | None = None
        self._mu = threading.Lock()

    def _call(self, method: str, request: object) -> Any:
        try:
            return getattr(self._stub, method)(request, timeout=self.timeout_s)
        except grpc.RpcError as err:
            raise self._failed(method, err) from err

    def _failed(self, method: str, err: grpc.RpcError) -> UpstreamError:
        return UpstreamError(f"upstream {self.address} {method} failed: {err.code().name} {err.details()}; "
                             "is `theflash upstream --serve` running there?")

    def cluster_info(self) -> upstream_pb2.ClusterInfoResponse:
        with self._mu:
            if self._info is None:
                self._info = self._call("GetClusterInfo", upstream_pb2.ClusterInfoRequest())
            return self._info

    @property
    def status_address(self) -> str:
        return self.cluster_info().status_address

    @property
    def binlog_address(self) -> str:
        return self.cluster_info().binlog_address

    def get_ts(self) -> int:
        return int(self._call("GetTS", upstream_pb2.GetTSRequest(count=1)).ts)

    def regions(self) -> list[binlog_pb2.Region]:
        return list(self._call("GetRegions", upstream_pb2.GetRegionsRequest()).regions)

    def read_index(self, region_id: int, read_ts: int = 0) -> int:
        """The region's read index; ``read_ts``: the ts the caller reads at (the upstream
        then commits nothing prewritten later at or below it)."""
        resp = self._call("ReadIndex", upstream_pb2.ReadIndexRequest(region_id=region_id, start_ts=read_ts))
        if resp.error:
            raise RegionNotFoundError(region_id)
        return int(resp.index)

    def read_indexes(self, region_ids: Sequence[int], read_ts: int = 0) -> dict[int, int]:
        """``read_index`` of each region, the calls in flight together (a table of many regions
        waits one round trip, not one per region, as TiFlash batches its read-index requests);
        ``RegionNotFoundError`` for the first region upstream does not know."""
        calls = [(rid, self._stub.ReadIndex.future(upstream_pb2.ReadIndexRequest(region_id=rid, start_ts=read_ts),
                                                    timeout=self.timeout_s)) for rid in region_ids]
        out: dict[int, int] = {}
        for rid, call in calls:
            try:
                resp = call.result()
            except grpc.RpcError as err:
                raise self._failed("ReadIndex", err) from err
            if resp.error:
                raise RegionNotFoundError(rid)
            out[rid] = int(resp.index)
        return out

    def check_txn_status(self, primary: bytes, lock_ts: int, caller_start_ts: int, current_ts: int,
                         force_sync_commit: bool = False) -> TxnStatus:
        resp = self._call("CheckTxnStatus", upstream_pb2.CheckTxnStatusRequest(
            primary_key=primary, lock_ts=lock_ts, caller_start_ts=caller_start_ts,
            current_ts=current_ts, rollback_if_not_exist=True, force_sync_commit=force_sync_commit,
        ))
        return status_from_proto(resp)

    def check_secondary_locks(self, keys: Iterable[bytes], start_ts: int) -> SecondaryLocks:
        resp = self._call("CheckSecondaryLocks", upstream_pb2.CheckSecondaryLocksRequest(
            keys=list(keys), start_version=start_ts,
        ))
        if resp.error:
            raise UpstreamError(f"CheckSecondaryLocks of the transaction started at {start_ts} failed: {resp.error}")
        return SecondaryLocks(tuple(lock_from_proto(lk) for lk in resp.locks), int(resp.commit_ts))

    def resolve_lock(self, start_ts: int, commit_ts: int, keys: Iterable[bytes] | None = None) -> int:
        resp = self._call("ResolveLock", upstream_pb2.ResolveLockRequest(
            start_ts=start_ts, commit_ts=commit_ts, keys=list(keys or []),
        ))
        if resp.error:
            raise UpstreamError(f"ResolveLock of the transaction started at {start_ts} failed: {resp.error}")
        return int(resp.resolved)

    def gc_safe_point(self) -> int:
        return int(self._call("GetGCSafePoint", upstream_pb2.GCSafePointRequest()).safe_point)

    def update_gc_safe_point(self, ts: int) -> int:
        return int(self._call("UpdateGCSafePoint", upstream_pb2.UpdateGCSafePointRequest(safe_point=ts)).safe_point)

    def region_snapshot(self, region_id: int) -> binlog_pb2.Event:
        event: binlog_pb2.Event = self._call("GetRegionSnapshot",
                                             upstream_pb2.RegionSnapshotRequest(region_id=region_id))
        return event

    def _http(self, path: str) -> Any:
        url = f"http://{self.status_address}{path}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout_s) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")
            if err.code == 404:
                raise SchemaError(f"{url}: {detail}") from err
            raise UpstreamError(f"{url}: HTTP {err.code} {detail}") from err
        except urllib.error.URLError as err:
            raise UpstreamError(f"status port {url} unreachable: {err.reason}") from err

    def table_info(self, db: str, table: str) -> TableInfoJson:
        info: TableInfoJson = self._http(f"/schema/{db}/{table}")
        return info

    def table_info_by_id(self, table_id: int) -> tuple[str, TableInfoJson]:
        body = self._http(f"/db-table/{table_id}")
        return body["db_info"]["db_name"]["O"], body["table_info"]

    def list_tables(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for db in self._http("/schema"):
            name = db["db_name"]["O"]
            out.extend((name, t["name"]["O"]) for t in self._http(f"/schema/{name}"))
        return out

    def scan_table(self, qualified: str, ts: int | None = None) -> list[dict[str, object]]:
        """Every row of ``db.table`` at ``ts`` (default: a fresh ts), read from the upstream as
        TiDB's stale read does (the table that had the name at ts, its schema then), decoded
        here exactly as ``MiniCluster.scan_table`` decodes them: so a replica can be compared
        with its source row for row."""
        return self.read_table(qualified, ts).rows

    def read_table(self, qualified: str, ts: int | None = None) -> TableScan:
        """``scan_table`` with the ts read at and the table info the rows were decoded with."""
        db, name = split_table_name(qualified)
        info: TableInfoJson | None = None
        at = 0
        pairs: list[tuple[bytes, bytes]] = []
        try:
            for resp in self._stub.ScanTable(upstream_pb2.ScanTableRequest(db=db, table=name, ts=ts or 0),
                                             timeout=max(self.timeout_s, 300.0)):
                if resp.table_info:
                    info, at = json.loads(resp.table_info), int(resp.ts)
                pairs.extend(zip(resp.keys, resp.values))
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                raise SchemaError(f"upstream {self.address}: {err.details()}") from err
            raise UpstreamError(f"upstream {self.address} ScanTable of {qualified} at ts {ts} failed: "
                                f"{err.code().name} {err.details()}") from err
        if info is None:
            raise UpstreamError(f"upstream {self.address} ScanTable of {qualified} sent no table info")
        return TableScan(at, db, info, decode_records(info, pairs))

    def close(self) -> None:
        self._channel.close()


def connect(address: str) -> UpstreamConnection:
    """An UpstreamClient: ``pd://HOST:PORT[,HOST:PORT...]`` reaches a TiDB cluster (or the mini
    cluster) through PD and TiKV (``tidb_cluster.TiDBClusterClient``); ``grpc://host:port`` (or
    ``host:port``) the mini cluster's private Upstream service."""
    if address.startswith("pd://"):
        from pyspark_theflash.upstream_client.tidb_cluster import TiDBClusterClient

        return TiDBClusterClient(address)
    return GrpcUpstreamClient(address)
