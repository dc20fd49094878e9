"""Our kvproto messages on the wire, checked against a second, independent description.

The tables below were written from pingcap/kvproto's own .proto files (commit
b6cdca197b3c9df5b07206a45567381c50ba4318) — not from protos/ — as (package, message, field,
number, type) and (package, enum, value, number). A field number, type or enum value typed
wrong in protos/ fails here; so does a field we declare that kvproto does not have. A second
check decodes the bytes our messages serialise to with a hand-written wire-format reader
(what ``protoc --decode_raw`` prints), so the numbers are checked on real bytes too.
"""
from __future__ import annotations

import pytest
from google.protobuf.descriptor import FieldDescriptor

from pyspark_theflash.proto import cdcpb_pb2, errorpb_pb2, kvrpcpb_pb2, metapb_pb2, pdpb_pb2, tikvpb_pb2

MODULES = {"metapb": metapb_pb2, "errorpb": errorpb_pb2, "kvrpcpb": kvrpcpb_pb2, "pdpb": pdpb_pb2, "cdcpb": cdcpb_pb2}

KVPROTO_FIELDS = [
    ('metapb', 'StoreLabel', 'key', 1, 'string'),
    ('metapb', 'StoreLabel', 'value', 2, 'string'),
    ('metapb', 'Store', 'id', 1, 'uint64'),
    ('metapb', 'Store', 'address', 2, 'string'),
    ('metapb', 'Store', 'state', 3, 'StoreState'),
    ('metapb', 'Store', 'labels', 4, 'repeated StoreLabel'),
    ('metapb', 'Store', 'version', 5, 'string'),
    ('metapb', 'Store', 'peer_address', 6, 'string'),
    ('metapb', 'Store', 'status_address', 7, 'string'),
    ('metapb', 'Store', 'git_hash', 8, 'string'),
    ('metapb', 'Store', 'start_timestamp', 9, 'int64'),
    ('metapb', 'Store', 'deploy_path', 10, 'string'),
    ('metapb', 'Store', 'last_heartbeat', 11, 'int64'),
    ('metapb', 'Store', 'physically_destroyed', 12, 'bool'),
    ('metapb', 'Store', 'node_state', 13, 'NodeState'),
    ('metapb', 'RegionEpoch', 'conf_ver', 1, 'uint64'),
    ('metapb', 'RegionEpoch', 'version', 2, 'uint64'),
    ('metapb', 'Peer', 'id', 1, 'uint64'),
    ('metapb', 'Peer', 'store_id', 2, 'uint64'),
    ('metapb', 'Peer', 'role', 3, 'PeerRole'),
    ('metapb', 'Peer', 'is_witness', 4, 'bool'),
    ('metapb', 'Region', 'id', 1, 'uint64'),
    ('metapb', 'Region', 'start_key', 2, 'bytes'),
    ('metapb', 'Region', 'end_key', 3, 'bytes'),
    ('metapb', 'Region', 'region_epoch', 4, 'RegionEpoch'),
    ('metapb', 'Region', 'peers', 5, 'repeated Peer'),
    ('metapb', 'Region', 'is_in_flashback', 7, 'bool'),
    ('metapb', 'Region', 'flashback_start_ts', 8, 'uint64'),
    ('errorpb', 'NotLeader', 'region_id', 1, 'uint64'),
    ('errorpb', 'NotLeader', 'leader', 2, 'metapb.Peer'),
    ('errorpb', 'StoreNotMatch', 'request_store_id', 1, 'uint64'),
    ('errorpb', 'StoreNotMatch', 'actual_store_id', 2, 'uint64'),
    ('errorpb', 'RegionNotFound', 'region_id', 1, 'uint64'),
    ('errorpb', 'RegionNotInitialized', 'region_id', 1, 'uint64'),
    ('errorpb', 'KeyNotInRegion', 'key', 1, 'bytes'),
    ('errorpb', 'KeyNotInRegion', 'region_id', 2, 'uint64'),
    ('errorpb', 'KeyNotInRegion', 'start_key', 3, 'bytes'),
    ('errorpb', 'KeyNotInRegion', 'end_key', 4, 'bytes'),
    ('errorpb', 'EpochNotMatch', 'current_regions', 1, 'repeated metapb.Region'),
    ('errorpb', 'ServerIsBusy', 'reason', 1, 'string'),
    ('errorpb', 'ServerIsBusy', 'backoff_ms', 2, 'uint64'),
    ('errorpb', 'ServerIsBusy', 'estimated_wait_ms', 3, 'uint32'),
    ('errorpb', 'ServerIsBusy', 'applied_index', 4, 'uint64'),
    ('errorpb', 'ReadIndexNotReady', 'reason', 1, 'string'),
    ('errorpb', 'ReadIndexNotReady', 'region_id', 2, 'uint64'),
    ('errorpb', 'DataIsNotReady', 'region_id', 1, 'uint64'),
    ('errorpb', 'DataIsNotReady', 'peer_id', 2, 'uint64'),
    ('errorpb', 'DataIsNotReady', 'safe_ts', 3, 'uint64'),
    ('errorpb', 'Error', 'message', 1, 'string'),
    ('errorpb', 'Error', 'not_leader', 2, 'NotLeader'),
    ('errorpb', 'Error', 'region_not_found', 3, 'RegionNotFound'),
    ('errorpb', 'Error', 'key_not_in_region', 4, 'KeyNotInRegion'),
    ('errorpb', 'Error', 'epoch_not_match', 5, 'EpochNotMatch'),
    ('errorpb', 'Error', 'server_is_busy', 6, 'ServerIsBusy'),
    ('errorpb', 'Error', 'stale_command', 7, 'StaleCommand'),
    ('errorpb', 'Error', 'store_not_match', 8, 'StoreNotMatch'),
    ('errorpb', 'Error', 'max_timestamp_not_synced', 10, 'MaxTimestampNotSynced'),
    ('errorpb', 'Error', 'read_index_not_ready', 11, 'ReadIndexNotReady'),
    ('errorpb', 'Error', 'data_is_not_ready', 13, 'DataIsNotReady'),
    ('errorpb', 'Error', 'region_not_initialized', 14, 'RegionNotInitialized'),
    ('kvrpcpb', 'Context', 'region_id', 1, 'uint64'),
    ('kvrpcpb', 'Context', 'region_epoch', 2, 'metapb.RegionEpoch'),
    ('kvrpcpb', 'Context', 'peer', 3, 'metapb.Peer'),
    ('kvrpcpb', 'Context', 'term', 5, 'uint64'),
    ('kvrpcpb', 'Context', 'priority', 6, 'CommandPri'),
    ('kvrpcpb', 'Context', 'isolation_level', 7, 'IsolationLevel'),
    ('kvrpcpb', 'Context', 'not_fill_cache', 8, 'bool'),
    ('kvrpcpb', 'Context', 'sync_log', 9, 'bool'),
    ('kvrpcpb', 'Context', 'record_time_stat', 10, 'bool'),
    ('kvrpcpb', 'Context', 'record_scan_stat', 11, 'bool'),
    ('kvrpcpb', 'Context', 'replica_read', 12, 'bool'),
    ('kvrpcpb', 'Context', 'resolved_locks', 13, 'repeated uint64'),
    ('kvrpcpb', 'Context', 'max_execution_duration_ms', 14, 'uint64'),
    ('kvrpcpb', 'Context', 'applied_index', 15, 'uint64'),
    ('kvrpcpb', 'Context', 'task_id', 16, 'uint64'),
    ('kvrpcpb', 'Context', 'stale_read', 17, 'bool'),
    ('kvrpcpb', 'Context', 'request_source', 24, 'string'),
    ('kvrpcpb', 'Context', 'txn_source', 25, 'uint64'),
    ('kvrpcpb', 'Context', 'committed_locks', 22, 'repeated uint64'),
    ('kvrpcpb', 'Context', 'cluster_id', 35, 'uint64'),
    ('kvrpcpb', 'LockInfo', 'primary_lock', 1, 'bytes'),
    ('kvrpcpb', 'LockInfo', 'lock_version', 2, 'uint64'),
    ('kvrpcpb', 'LockInfo', 'key', 3, 'bytes'),
    ('kvrpcpb', 'LockInfo', 'lock_ttl', 4, 'uint64'),
    ('kvrpcpb', 'LockInfo', 'txn_size', 5, 'uint64'),
    ('kvrpcpb', 'LockInfo', 'lock_type', 6, 'Op'),
    ('kvrpcpb', 'LockInfo', 'lock_for_update_ts', 7, 'uint64'),
    ('kvrpcpb', 'LockInfo', 'use_async_commit', 8, 'bool'),
    ('kvrpcpb', 'LockInfo', 'min_commit_ts', 9, 'uint64'),
    ('kvrpcpb', 'LockInfo', 'secondaries', 10, 'repeated bytes'),
    ('kvrpcpb', 'TxnNotFound', 'start_ts', 1, 'uint64'),
    ('kvrpcpb', 'TxnNotFound', 'primary_key', 2, 'bytes'),
    ('kvrpcpb', 'PrimaryMismatch', 'lock_info', 1, 'LockInfo'),
    ('kvrpcpb', 'KeyError', 'locked', 1, 'LockInfo'),
    ('kvrpcpb', 'KeyError', 'retryable', 2, 'string'),
    ('kvrpcpb', 'KeyError', 'abort', 3, 'string'),
    ('kvrpcpb', 'KeyError', 'txn_not_found', 8, 'TxnNotFound'),
    ('kvrpcpb', 'KeyError', 'primary_mismatch', 11, 'PrimaryMismatch'),
    ('kvrpcpb', 'KeyRange', 'start_key', 1, 'bytes'),
    ('kvrpcpb', 'KeyRange', 'end_key', 2, 'bytes'),
    ('kvrpcpb', 'GetRequest', 'context', 1, 'Context'),
    ('kvrpcpb', 'GetRequest', 'key', 2, 'bytes'),
    ('kvrpcpb', 'GetRequest', 'version', 3, 'uint64'),
    ('kvrpcpb', 'GetRequest', 'need_commit_ts', 4, 'bool'),
    ('kvrpcpb', 'GetResponse', 'region_error', 1, 'errorpb.Error'),
    ('kvrpcpb', 'GetResponse', 'error', 2, 'KeyError'),
    ('kvrpcpb', 'GetResponse', 'value', 3, 'bytes'),
    ('kvrpcpb', 'GetResponse', 'not_found', 4, 'bool'),
    ('kvrpcpb', 'GetResponse', 'commit_ts', 7, 'uint64'),
    ('kvrpcpb', 'ScanRequest', 'context', 1, 'Context'),
    ('kvrpcpb', 'ScanRequest', 'start_key', 2, 'bytes'),
    ('kvrpcpb', 'ScanRequest', 'limit', 3, 'uint32'),
    ('kvrpcpb', 'ScanRequest', 'version', 4, 'uint64'),
    ('kvrpcpb', 'ScanRequest', 'key_only', 5, 'bool'),
    ('kvrpcpb', 'ScanRequest', 'reverse', 6, 'bool'),
    ('kvrpcpb', 'ScanRequest', 'end_key', 7, 'bytes'),
    ('kvrpcpb', 'ScanRequest', 'sample_step', 8, 'uint32'),
    ('kvrpcpb', 'KvPair', 'error', 1, 'KeyError'),
    ('kvrpcpb', 'KvPair', 'key', 2, 'bytes'),
    ('kvrpcpb', 'KvPair', 'value', 3, 'bytes'),
    ('kvrpcpb', 'KvPair', 'commit_ts', 4, 'uint64'),
    ('kvrpcpb', 'ScanResponse', 'region_error', 1, 'errorpb.Error'),
    ('kvrpcpb', 'ScanResponse', 'pairs', 2, 'repeated KvPair'),
    ('kvrpcpb', 'ScanResponse', 'error', 3, 'KeyError'),
    ('kvrpcpb', 'CheckTxnStatusRequest', 'context', 1, 'Context'),
    ('kvrpcpb', 'CheckTxnStatusRequest', 'primary_key', 2, 'bytes'),
    ('kvrpcpb', 'CheckTxnStatusRequest', 'lock_ts', 3, 'uint64'),
    ('kvrpcpb', 'CheckTxnStatusRequest', 'caller_start_ts', 4, 'uint64'),
    ('kvrpcpb', 'CheckTxnStatusRequest', 'current_ts', 5, 'uint64'),
    ('kvrpcpb', 'CheckTxnStatusRequest', 'rollback_if_not_exist', 6, 'bool'),
    ('kvrpcpb', 'CheckTxnStatusRequest', 'force_sync_commit', 7, 'bool'),
    ('kvrpcpb', 'CheckTxnStatusRequest', 'resolving_pessimistic_lock', 8, 'bool'),
    ('kvrpcpb', 'CheckTxnStatusRequest', 'verify_is_primary', 9, 'bool'),
    ('kvrpcpb', 'CheckTxnStatusResponse', 'region_error', 1, 'errorpb.Error'),
    ('kvrpcpb', 'CheckTxnStatusResponse', 'error', 2, 'KeyError'),
    ('kvrpcpb', 'CheckTxnStatusResponse', 'lock_ttl', 3, 'uint64'),
    ('kvrpcpb', 'CheckTxnStatusResponse', 'commit_version', 4, 'uint64'),
    ('kvrpcpb', 'CheckTxnStatusResponse', 'action', 5, 'Action'),
    ('kvrpcpb', 'CheckTxnStatusResponse', 'lock_info', 6, 'LockInfo'),
    ('kvrpcpb', 'CheckSecondaryLocksRequest', 'context', 1, 'Context'),
    ('kvrpcpb', 'CheckSecondaryLocksRequest', 'keys', 2, 'repeated bytes'),
    ('kvrpcpb', 'CheckSecondaryLocksRequest', 'start_version', 3, 'uint64'),
    ('kvrpcpb', 'CheckSecondaryLocksResponse', 'region_error', 1, 'errorpb.Error'),
    ('kvrpcpb', 'CheckSecondaryLocksResponse', 'error', 2, 'KeyError'),
    ('kvrpcpb', 'CheckSecondaryLocksResponse', 'locks', 3, 'repeated LockInfo'),
    ('kvrpcpb', 'CheckSecondaryLocksResponse', 'commit_ts', 4, 'uint64'),
    ('kvrpcpb', 'TxnInfo', 'txn', 1, 'uint64'),
    ('kvrpcpb', 'TxnInfo', 'status', 2, 'uint64'),
    ('kvrpcpb', 'ResolveLockRequest', 'context', 1, 'Context'),
    ('kvrpcpb', 'ResolveLockRequest', 'start_version', 2, 'uint64'),
    ('kvrpcpb', 'ResolveLockRequest', 'commit_version', 3, 'uint64'),
    ('kvrpcpb', 'ResolveLockRequest', 'txn_infos', 4, 'repeated TxnInfo'),
    ('kvrpcpb', 'ResolveLockRequest', 'keys', 5, 'repeated bytes'),
    ('kvrpcpb', 'ResolveLockResponse', 'region_error', 1, 'errorpb.Error'),
    ('kvrpcpb', 'ResolveLockResponse', 'error', 2, 'KeyError'),
    ('kvrpcpb', 'ScanLockRequest', 'context', 1, 'Context'),
    ('kvrpcpb', 'ScanLockRequest', 'max_version', 2, 'uint64'),
    ('kvrpcpb', 'ScanLockRequest', 'start_key', 3, 'bytes'),
    ('kvrpcpb', 'ScanLockRequest', 'limit', 4, 'uint32'),
    ('kvrpcpb', 'ScanLockRequest', 'end_key', 5, 'bytes'),
    ('kvrpcpb', 'ScanLockResponse', 'region_error', 1, 'errorpb.Error'),
    ('kvrpcpb', 'ScanLockResponse', 'error', 2, 'KeyError'),
    ('kvrpcpb', 'ScanLockResponse', 'locks', 3, 'repeated LockInfo'),
    ('kvrpcpb', 'ReadIndexRequest', 'context', 1, 'Context'),
    ('kvrpcpb', 'ReadIndexRequest', 'start_ts', 2, 'uint64'),
    ('kvrpcpb', 'ReadIndexRequest', 'ranges', 3, 'repeated KeyRange'),
    ('kvrpcpb', 'ReadIndexResponse', 'region_error', 1, 'errorpb.Error'),
    ('kvrpcpb', 'ReadIndexResponse', 'read_index', 2, 'uint64'),
    ('kvrpcpb', 'ReadIndexResponse', 'locked', 3, 'kvrpcpb.LockInfo'),
    ('pdpb', 'RequestHeader', 'cluster_id', 1, 'uint64'),
    ('pdpb', 'RequestHeader', 'sender_id', 2, 'uint64'),
    ('pdpb', 'RequestHeader', 'caller_id', 3, 'string'),
    ('pdpb', 'RequestHeader', 'caller_component', 4, 'string'),
    ('pdpb', 'ResponseHeader', 'cluster_id', 1, 'uint64'),
    ('pdpb', 'ResponseHeader', 'error', 2, 'Error'),
    ('pdpb', 'Error', 'type', 1, 'ErrorType'),
    ('pdpb', 'Error', 'message', 2, 'string'),
    ('pdpb', 'Member', 'name', 1, 'string'),
    ('pdpb', 'Member', 'member_id', 2, 'uint64'),
    ('pdpb', 'Member', 'peer_urls', 3, 'repeated string'),
    ('pdpb', 'Member', 'client_urls', 4, 'repeated string'),
    ('pdpb', 'Member', 'leader_priority', 5, 'int32'),
    ('pdpb', 'Member', 'deploy_path', 6, 'string'),
    ('pdpb', 'Member', 'binary_version', 7, 'string'),
    ('pdpb', 'Member', 'git_hash', 8, 'string'),
    ('pdpb', 'Member', 'dc_location', 9, 'string'),
    ('pdpb', 'GetMembersRequest', 'header', 1, 'RequestHeader'),
    ('pdpb', 'GetMembersResponse', 'header', 1, 'ResponseHeader'),
    ('pdpb', 'GetMembersResponse', 'members', 2, 'repeated Member'),
    ('pdpb', 'GetMembersResponse', 'leader', 3, 'Member'),
    ('pdpb', 'GetMembersResponse', 'etcd_leader', 4, 'Member'),
    ('pdpb', 'Timestamp', 'physical', 1, 'int64'),
    ('pdpb', 'Timestamp', 'logical', 2, 'int64'),
    ('pdpb', 'Timestamp', 'suffix_bits', 3, 'uint32'),
    ('pdpb', 'TsoRequest', 'header', 1, 'RequestHeader'),
    ('pdpb', 'TsoRequest', 'count', 2, 'uint32'),
    ('pdpb', 'TsoRequest', 'dc_location', 3, 'string'),
    ('pdpb', 'TsoResponse', 'header', 1, 'ResponseHeader'),
    ('pdpb', 'TsoResponse', 'count', 2, 'uint32'),
    ('pdpb', 'TsoResponse', 'timestamp', 3, 'Timestamp'),
    ('pdpb', 'GetStoreRequest', 'header', 1, 'RequestHeader'),
    ('pdpb', 'GetStoreRequest', 'store_id', 2, 'uint64'),
    ('pdpb', 'GetStoreResponse', 'header', 1, 'ResponseHeader'),
    ('pdpb', 'GetStoreResponse', 'store', 2, 'metapb.Store'),
    ('pdpb', 'GetAllStoresRequest', 'header', 1, 'RequestHeader'),
    ('pdpb', 'GetAllStoresRequest', 'exclude_tombstone_stores', 2, 'bool'),
    ('pdpb', 'GetAllStoresResponse', 'header', 1, 'ResponseHeader'),
    ('pdpb', 'GetAllStoresResponse', 'stores', 2, 'repeated metapb.Store'),
    ('pdpb', 'PeerStats', 'peer', 1, 'metapb.Peer'),
    ('pdpb', 'PeerStats', 'down_seconds', 2, 'uint64'),
    ('pdpb', 'GetRegionRequest', 'header', 1, 'RequestHeader'),
    ('pdpb', 'GetRegionRequest', 'region_key', 2, 'bytes'),
    ('pdpb', 'GetRegionRequest', 'need_buckets', 3, 'bool'),
    ('pdpb', 'GetRegionByIDRequest', 'header', 1, 'RequestHeader'),
    ('pdpb', 'GetRegionByIDRequest', 'region_id', 2, 'uint64'),
    ('pdpb', 'GetRegionByIDRequest', 'need_buckets', 3, 'bool'),
    ('pdpb', 'GetRegionResponse', 'header', 1, 'ResponseHeader'),
    ('pdpb', 'GetRegionResponse', 'region', 2, 'metapb.Region'),
    ('pdpb', 'GetRegionResponse', 'leader', 3, 'metapb.Peer'),
    ('pdpb', 'GetRegionResponse', 'down_peers', 5, 'repeated PeerStats'),
    ('pdpb', 'GetRegionResponse', 'pending_peers', 6, 'repeated metapb.Peer'),
    ('pdpb', 'Region', 'region', 1, 'metapb.Region'),
    ('pdpb', 'Region', 'leader', 2, 'metapb.Peer'),
    ('pdpb', 'Region', 'down_peers', 3, 'repeated PeerStats'),
    ('pdpb', 'Region', 'pending_peers', 4, 'repeated metapb.Peer'),
    ('pdpb', 'ScanRegionsRequest', 'header', 1, 'RequestHeader'),
    ('pdpb', 'ScanRegionsRequest', 'start_key', 2, 'bytes'),
    ('pdpb', 'ScanRegionsRequest', 'limit', 3, 'int32'),
    ('pdpb', 'ScanRegionsRequest', 'end_key', 4, 'bytes'),
    ('pdpb', 'ScanRegionsResponse', 'header', 1, 'ResponseHeader'),
    ('pdpb', 'ScanRegionsResponse', 'region_metas', 2, 'repeated metapb.Region'),
    ('pdpb', 'ScanRegionsResponse', 'leaders', 3, 'repeated metapb.Peer'),
    ('pdpb', 'ScanRegionsResponse', 'regions', 4, 'repeated Region'),
    ('pdpb', 'KeyRange', 'start_key', 1, 'bytes'),
    ('pdpb', 'KeyRange', 'end_key', 2, 'bytes'),
    ('pdpb', 'BatchScanRegionsRequest', 'header', 1, 'RequestHeader'),
    ('pdpb', 'BatchScanRegionsRequest', 'need_buckets', 2, 'bool'),
    ('pdpb', 'BatchScanRegionsRequest', 'ranges', 3, 'repeated KeyRange'),
    ('pdpb', 'BatchScanRegionsRequest', 'limit', 4, 'int32'),
    ('pdpb', 'BatchScanRegionsRequest', 'contain_all_key_range', 5, 'bool'),
    ('pdpb', 'BatchScanRegionsResponse', 'header', 1, 'ResponseHeader'),
    ('pdpb', 'BatchScanRegionsResponse', 'regions', 2, 'repeated Region'),
    ('pdpb', 'GetGCSafePointRequest', 'header', 1, 'RequestHeader'),
    ('pdpb', 'GetGCSafePointResponse', 'header', 1, 'ResponseHeader'),
    ('pdpb', 'GetGCSafePointResponse', 'safe_point', 2, 'uint64'),
    ('pdpb', 'UpdateGCSafePointRequest', 'header', 1, 'RequestHeader'),
    ('pdpb', 'UpdateGCSafePointRequest', 'safe_point', 2, 'uint64'),
    ('pdpb', 'UpdateGCSafePointResponse', 'header', 1, 'ResponseHeader'),
    ('pdpb', 'UpdateGCSafePointResponse', 'new_safe_point', 2, 'uint64'),
    ('pdpb', 'UpdateServiceGCSafePointRequest', 'header', 1, 'RequestHeader'),
    ('pdpb', 'UpdateServiceGCSafePointRequest', 'service_id', 2, 'bytes'),
    ('pdpb', 'UpdateServiceGCSafePointRequest', 'TTL', 3, 'int64'),
    ('pdpb', 'UpdateServiceGCSafePointRequest', 'safe_point', 4, 'uint64'),
    ('pdpb', 'UpdateServiceGCSafePointResponse', 'header', 1, 'ResponseHeader'),
    ('pdpb', 'UpdateServiceGCSafePointResponse', 'service_id', 2, 'bytes'),
    ('pdpb', 'UpdateServiceGCSafePointResponse', 'TTL', 3, 'int64'),
    ('pdpb', 'UpdateServiceGCSafePointResponse', 'min_safe_point', 4, 'uint64'),
    ('cdcpb', 'Header', 'cluster_id', 1, 'uint64'),
    ('cdcpb', 'Header', 'ticdc_version', 2, 'string'),
    ('cdcpb', 'DuplicateRequest', 'region_id', 1, 'uint64'),
    ('cdcpb', 'Compatibility', 'required_version', 1, 'string'),
    ('cdcpb', 'ClusterIDMismatch', 'current', 1, 'uint64'),
    ('cdcpb', 'ClusterIDMismatch', 'request', 2, 'uint64'),
    ('cdcpb', 'Congested', 'region_id', 1, 'uint64'),
    ('cdcpb', 'Error', 'not_leader', 1, 'errorpb.NotLeader'),
    ('cdcpb', 'Error', 'region_not_found', 2, 'errorpb.RegionNotFound'),
    ('cdcpb', 'Error', 'epoch_not_match', 3, 'errorpb.EpochNotMatch'),
    ('cdcpb', 'Error', 'duplicate_request', 4, 'DuplicateRequest'),
    ('cdcpb', 'Error', 'compatibility', 5, 'Compatibility'),
    ('cdcpb', 'Error', 'cluster_id_mismatch', 6, 'ClusterIDMismatch'),
    ('cdcpb', 'Error', 'server_is_busy', 7, 'errorpb.ServerIsBusy'),
    ('cdcpb', 'Error', 'congested', 8, 'Congested'),
    ('cdcpb', 'TxnInfo', 'start_ts', 1, 'uint64'),
    ('cdcpb', 'TxnInfo', 'primary', 2, 'bytes'),
    ('cdcpb', 'TxnStatus', 'start_ts', 1, 'uint64'),
    ('cdcpb', 'TxnStatus', 'min_commit_ts', 2, 'uint64'),
    ('cdcpb', 'TxnStatus', 'commit_ts', 3, 'uint64'),
    ('cdcpb', 'TxnStatus', 'is_rolled_back', 4, 'bool'),
    ('cdcpb', 'Event', 'region_id', 1, 'uint64'),
    ('cdcpb', 'Event', 'index', 2, 'uint64'),
    ('cdcpb', 'Event', 'request_id', 7, 'uint64'),
    ('cdcpb', 'Event', 'entries', 3, 'Entries'),
    ('cdcpb', 'Event', 'admin', 4, 'Admin'),
    ('cdcpb', 'Event', 'error', 5, 'Error'),
    ('cdcpb', 'Event', 'resolved_ts', 6, 'uint64'),
    ('cdcpb', 'Event', 'long_txn', 8, 'LongTxn'),
    ('cdcpb', 'Event.Row', 'start_ts', 1, 'uint64'),
    ('cdcpb', 'Event.Row', 'commit_ts', 2, 'uint64'),
    ('cdcpb', 'Event.Row', 'type', 3, 'LogType'),
    ('cdcpb', 'Event.Row', 'op_type', 4, 'OpType'),
    ('cdcpb', 'Event.Row', 'key', 5, 'bytes'),
    ('cdcpb', 'Event.Row', 'value', 6, 'bytes'),
    ('cdcpb', 'Event.Row', 'old_value', 7, 'bytes'),
    ('cdcpb', 'Event.Row', 'expire_ts_unix_secs', 8, 'uint64'),
    ('cdcpb', 'Event.Row', 'txn_source', 9, 'uint64'),
    ('cdcpb', 'Event.Row', 'generation', 10, 'uint64'),
    ('cdcpb', 'Event.Entries', 'entries', 1, 'repeated Row'),
    ('cdcpb', 'Event.LongTxn', 'txn_info', 1, 'repeated TxnInfo'),
    ('cdcpb', 'ChangeDataEvent', 'events', 1, 'repeated Event'),
    ('cdcpb', 'ChangeDataEvent', 'resolved_ts', 2, 'ResolvedTs'),
    ('cdcpb', 'ResolvedTs', 'regions', 1, 'repeated uint64'),
    ('cdcpb', 'ResolvedTs', 'ts', 2, 'uint64'),
    ('cdcpb', 'ResolvedTs', 'request_id', 3, 'uint64'),
    ('cdcpb', 'ChangeDataRequest', 'header', 1, 'Header'),
    ('cdcpb', 'ChangeDataRequest', 'region_id', 2, 'uint64'),
    ('cdcpb', 'ChangeDataRequest', 'region_epoch', 3, 'metapb.RegionEpoch'),
    ('cdcpb', 'ChangeDataRequest', 'checkpoint_ts', 4, 'uint64'),
    ('cdcpb', 'ChangeDataRequest', 'start_key', 5, 'bytes'),
    ('cdcpb', 'ChangeDataRequest', 'end_key', 6, 'bytes'),
    ('cdcpb', 'ChangeDataRequest', 'request_id', 7, 'uint64'),
    ('cdcpb', 'ChangeDataRequest', 'extra_op', 8, 'kvrpcpb.ExtraOp'),
    ('cdcpb', 'ChangeDataRequest', 'register', 9, 'Register'),
    ('cdcpb', 'ChangeDataRequest', 'notify_txn_status', 10, 'NotifyTxnStatus'),
    ('cdcpb', 'ChangeDataRequest', 'deregister', 13, 'Deregister'),
    ('cdcpb', 'ChangeDataRequest', 'kv_api', 11, 'KvAPI'),
    ('cdcpb', 'ChangeDataRequest', 'filter_loop', 12, 'bool'),
    ('cdcpb', 'ChangeDataRequest', 'scan_priority', 14, 'ScanPriority'),
    ('cdcpb', 'ChangeDataRequest.NotifyTxnStatus', 'txn_status', 1, 'repeated TxnStatus'),
    # the calls TiKV's own clients make (issue 40)
    ('kvrpcpb', 'WriteConflict', 'start_ts', 1, 'uint64'),
    ('kvrpcpb', 'WriteConflict', 'conflict_ts', 2, 'uint64'),
    ('kvrpcpb', 'WriteConflict', 'key', 3, 'bytes'),
    ('kvrpcpb', 'WriteConflict', 'primary', 4, 'bytes'),
    ('kvrpcpb', 'WriteConflict', 'conflict_commit_ts', 5, 'uint64'),
    ('kvrpcpb', 'WriteConflict', 'reason', 6, 'Reason'),
    ('kvrpcpb', 'AlreadyExist', 'key', 1, 'bytes'),
    ('kvrpcpb', 'Deadlock', 'lock_ts', 1, 'uint64'),
    ('kvrpcpb', 'Deadlock', 'lock_key', 2, 'bytes'),
    ('kvrpcpb', 'Deadlock', 'deadlock_key_hash', 3, 'uint64'),
    ('kvrpcpb', 'Deadlock', 'deadlock_key', 5, 'bytes'),
    ('kvrpcpb', 'CommitTsExpired', 'start_ts', 1, 'uint64'),
    ('kvrpcpb', 'CommitTsExpired', 'attempted_commit_ts', 2, 'uint64'),
    ('kvrpcpb', 'CommitTsExpired', 'key', 3, 'bytes'),
    ('kvrpcpb', 'CommitTsExpired', 'min_commit_ts', 4, 'uint64'),
    ('kvrpcpb', 'AssertionFailed', 'start_ts', 1, 'uint64'),
    ('kvrpcpb', 'AssertionFailed', 'key', 2, 'bytes'),
    ('kvrpcpb', 'AssertionFailed', 'assertion', 3, 'Assertion'),
    ('kvrpcpb', 'AssertionFailed', 'existing_start_ts', 4, 'uint64'),
    ('kvrpcpb', 'AssertionFailed', 'existing_commit_ts', 5, 'uint64'),
    ('kvrpcpb', 'KeyError', 'conflict', 4, 'WriteConflict'),
    ('kvrpcpb', 'KeyError', 'already_exist', 5, 'AlreadyExist'),
    ('kvrpcpb', 'KeyError', 'deadlock', 6, 'Deadlock'),
    ('kvrpcpb', 'KeyError', 'commit_ts_expired', 7, 'CommitTsExpired'),
    ('kvrpcpb', 'KeyError', 'assertion_failed', 10, 'AssertionFailed'),
    ('kvrpcpb', 'Mutation', 'op', 1, 'Op'),
    ('kvrpcpb', 'Mutation', 'key', 2, 'bytes'),
    ('kvrpcpb', 'Mutation', 'value', 3, 'bytes'),
    ('kvrpcpb', 'Mutation', 'assertion', 4, 'Assertion'),
    ('kvrpcpb', 'BatchGetRequest', 'context', 1, 'Context'),
    ('kvrpcpb', 'BatchGetRequest', 'keys', 2, 'repeated bytes'),
    ('kvrpcpb', 'BatchGetRequest', 'version', 3, 'uint64'),
    ('kvrpcpb', 'BatchGetRequest', 'need_commit_ts', 4, 'bool'),
    ('kvrpcpb', 'BatchGetResponse', 'region_error', 1, 'errorpb.Error'),
    ('kvrpcpb', 'BatchGetResponse', 'pairs', 2, 'repeated KvPair'),
    ('kvrpcpb', 'BatchGetResponse', 'error', 5, 'KeyError'),
    ('kvrpcpb', 'PrewriteRequest.ForUpdateTSConstraint', 'index', 1, 'uint32'),
    ('kvrpcpb', 'PrewriteRequest.ForUpdateTSConstraint', 'expected_for_update_ts', 2, 'uint64'),
    ('kvrpcpb', 'PrewriteRequest', 'context', 1, 'Context'),
    ('kvrpcpb', 'PrewriteRequest', 'mutations', 2, 'repeated Mutation'),
    ('kvrpcpb', 'PrewriteRequest', 'primary_lock', 3, 'bytes'),
    ('kvrpcpb', 'PrewriteRequest', 'start_version', 4, 'uint64'),
    ('kvrpcpb', 'PrewriteRequest', 'lock_ttl', 5, 'uint64'),
    ('kvrpcpb', 'PrewriteRequest', 'skip_constraint_check', 6, 'bool'),
    ('kvrpcpb', 'PrewriteRequest', 'pessimistic_actions', 7, 'repeated PessimisticAction'),
    ('kvrpcpb', 'PrewriteRequest', 'txn_size', 8, 'uint64'),
    ('kvrpcpb', 'PrewriteRequest', 'for_update_ts', 9, 'uint64'),
    ('kvrpcpb', 'PrewriteRequest', 'min_commit_ts', 10, 'uint64'),
    ('kvrpcpb', 'PrewriteRequest', 'use_async_commit', 11, 'bool'),
    ('kvrpcpb', 'PrewriteRequest', 'secondaries', 12, 'repeated bytes'),
    ('kvrpcpb', 'PrewriteRequest', 'try_one_pc', 13, 'bool'),
    ('kvrpcpb', 'PrewriteRequest', 'max_commit_ts', 14, 'uint64'),
    ('kvrpcpb', 'PrewriteRequest', 'assertion_level', 15, 'AssertionLevel'),
    ('kvrpcpb', 'PrewriteRequest', 'for_update_ts_constraints', 16, 'repeated ForUpdateTSConstraint'),
    ('kvrpcpb', 'PrewriteResponse', 'region_error', 1, 'errorpb.Error'),
    ('kvrpcpb', 'PrewriteResponse', 'errors', 2, 'repeated KeyError'),
    ('kvrpcpb', 'PrewriteResponse', 'min_commit_ts', 3, 'uint64'),
    ('kvrpcpb', 'PrewriteResponse', 'one_pc_commit_ts', 4, 'uint64'),
    ('kvrpcpb', 'CommitRequest', 'context', 1, 'Context'),
    ('kvrpcpb', 'CommitRequest', 'start_version', 2, 'uint64'),
    ('kvrpcpb', 'CommitRequest', 'keys', 3, 'repeated bytes'),
    ('kvrpcpb', 'CommitRequest', 'commit_version', 4, 'uint64'),
    ('kvrpcpb', 'CommitRequest', 'commit_role', 6, 'CommitRole'),
    ('kvrpcpb', 'CommitRequest', 'primary_key', 7, 'bytes'),
    ('kvrpcpb', 'CommitRequest', 'use_async_commit', 8, 'bool'),
    ('kvrpcpb', 'CommitResponse', 'region_error', 1, 'errorpb.Error'),
    ('kvrpcpb', 'CommitResponse', 'error', 2, 'KeyError'),
    ('kvrpcpb', 'CommitResponse', 'commit_version', 3, 'uint64'),
    ('kvrpcpb', 'BatchRollbackRequest', 'context', 1, 'Context'),
    ('kvrpcpb', 'BatchRollbackRequest', 'start_version', 2, 'uint64'),
    ('kvrpcpb', 'BatchRollbackRequest', 'keys', 3, 'repeated bytes'),
    ('kvrpcpb', 'BatchRollbackResponse', 'region_error', 1, 'errorpb.Error'),
    ('kvrpcpb', 'BatchRollbackResponse', 'error', 2, 'KeyError'),
    ('kvrpcpb', 'CleanupRequest', 'context', 1, 'Context'),
    ('kvrpcpb', 'CleanupRequest', 'key', 2, 'bytes'),
    ('kvrpcpb', 'CleanupRequest', 'start_version', 3, 'uint64'),
    ('kvrpcpb', 'CleanupRequest', 'current_ts', 4, 'uint64'),
    ('kvrpcpb', 'CleanupResponse', 'region_error', 1, 'errorpb.Error'),
    ('kvrpcpb', 'CleanupResponse', 'error', 2, 'KeyError'),
    ('kvrpcpb', 'CleanupResponse', 'commit_version', 3, 'uint64'),
    ('kvrpcpb', 'TxnHeartBeatRequest', 'context', 1, 'Context'),
    ('kvrpcpb', 'TxnHeartBeatRequest', 'primary_lock', 2, 'bytes'),
    ('kvrpcpb', 'TxnHeartBeatRequest', 'start_version', 3, 'uint64'),
    ('kvrpcpb', 'TxnHeartBeatRequest', 'advise_lock_ttl', 4, 'uint64'),
    ('kvrpcpb', 'TxnHeartBeatRequest', 'min_commit_ts', 5, 'uint64'),
    ('kvrpcpb', 'TxnHeartBeatResponse', 'region_error', 1, 'errorpb.Error'),
    ('kvrpcpb', 'TxnHeartBeatResponse', 'error', 2, 'KeyError'),
    ('kvrpcpb', 'TxnHeartBeatResponse', 'lock_ttl', 3, 'uint64'),
    ('kvrpcpb', 'PessimisticLockRequest', 'context', 1, 'Context'),
    ('kvrpcpb', 'PessimisticLockRequest', 'mutations', 2, 'repeated Mutation'),
    ('kvrpcpb', 'PessimisticLockRequest', 'primary_lock', 3, 'bytes'),
    ('kvrpcpb', 'PessimisticLockRequest', 'start_version', 4, 'uint64'),
    ('kvrpcpb', 'PessimisticLockRequest', 'lock_ttl', 5, 'uint64'),
    ('kvrpcpb', 'PessimisticLockRequest', 'for_update_ts', 6, 'uint64'),
    ('kvrpcpb', 'PessimisticLockRequest', 'is_first_lock', 7, 'bool'),
    ('kvrpcpb', 'PessimisticLockRequest', 'wait_timeout', 8, 'int64'),
    ('kvrpcpb', 'PessimisticLockRequest', 'force', 9, 'bool'),
    ('kvrpcpb', 'PessimisticLockRequest', 'return_values', 10, 'bool'),
    ('kvrpcpb', 'PessimisticLockRequest', 'min_commit_ts', 11, 'uint64'),
    ('kvrpcpb', 'PessimisticLockRequest', 'check_existence', 12, 'bool'),
    ('kvrpcpb', 'PessimisticLockRequest', 'lock_only_if_exists', 13, 'bool'),
    ('kvrpcpb', 'PessimisticLockResponse', 'region_error', 1, 'errorpb.Error'),
    ('kvrpcpb', 'PessimisticLockResponse', 'errors', 2, 'repeated KeyError'),
    ('kvrpcpb', 'PessimisticLockResponse', 'commit_ts', 3, 'uint64'),
    ('kvrpcpb', 'PessimisticLockResponse', 'value', 4, 'bytes'),
    ('kvrpcpb', 'PessimisticLockResponse', 'values', 5, 'repeated bytes'),
    ('kvrpcpb', 'PessimisticLockResponse', 'not_founds', 6, 'repeated bool'),
    ('kvrpcpb', 'PessimisticRollbackRequest', 'context', 1, 'Context'),
    ('kvrpcpb', 'PessimisticRollbackRequest', 'start_version', 2, 'uint64'),
    ('kvrpcpb', 'PessimisticRollbackRequest', 'for_update_ts', 3, 'uint64'),
    ('kvrpcpb', 'PessimisticRollbackRequest', 'keys', 4, 'repeated bytes'),
    ('kvrpcpb', 'PessimisticRollbackResponse', 'region_error', 1, 'errorpb.Error'),
    ('kvrpcpb', 'PessimisticRollbackResponse', 'errors', 2, 'repeated KeyError'),
    ('kvrpcpb', 'RawGetRequest', 'context', 1, 'Context'),
    ('kvrpcpb', 'RawGetRequest', 'key', 2, 'bytes'),
    ('kvrpcpb', 'RawGetRequest', 'cf', 3, 'string'),
    ('kvrpcpb', 'RawGetResponse', 'region_error', 1, 'errorpb.Error'),
    ('kvrpcpb', 'RawGetResponse', 'error', 2, 'string'),
    ('kvrpcpb', 'RawGetResponse', 'value', 3, 'bytes'),
    ('kvrpcpb', 'RawGetResponse', 'not_found', 4, 'bool'),
    ('kvrpcpb', 'RawPutRequest', 'context', 1, 'Context'),
    ('kvrpcpb', 'RawPutRequest', 'key', 2, 'bytes'),
    ('kvrpcpb', 'RawPutRequest', 'value', 3, 'bytes'),
    ('kvrpcpb', 'RawPutRequest', 'cf', 4, 'string'),
    ('kvrpcpb', 'RawPutRequest', 'ttl', 5, 'uint64'),
    ('kvrpcpb', 'RawPutRequest', 'for_cas', 6, 'bool'),
    ('kvrpcpb', 'RawPutResponse', 'region_error', 1, 'errorpb.Error'),
    ('kvrpcpb', 'RawPutResponse', 'error', 2, 'string'),
    ('kvrpcpb', 'RawBatchGetRequest', 'context', 1, 'Context'),
    ('kvrpcpb', 'RawBatchGetRequest', 'keys', 2, 'repeated bytes'),
    ('kvrpcpb', 'RawBatchGetRequest', 'cf', 3, 'string'),
    ('kvrpcpb', 'RawBatchGetResponse', 'region_error', 1, 'errorpb.Error'),
    ('kvrpcpb', 'RawBatchGetResponse', 'pairs', 2, 'repeated KvPair'),
    ('kvrpcpb', 'RawBatchPutRequest', 'context', 1, 'Context'),
    ('kvrpcpb', 'RawBatchPutRequest', 'pairs', 2, 'repeated KvPair'),
    ('kvrpcpb', 'RawBatchPutRequest', 'cf', 3, 'string'),
    ('kvrpcpb', 'RawBatchPutRequest', 'ttl', 4, 'uint64'),
    ('kvrpcpb', 'RawBatchPutRequest', 'for_cas', 5, 'bool'),
    ('kvrpcpb', 'RawBatchPutRequest', 'ttls', 6, 'repeated uint64'),
    ('kvrpcpb', 'RawBatchPutResponse', 'region_error', 1, 'errorpb.Error'),
    ('kvrpcpb', 'RawBatchPutResponse', 'error', 2, 'string'),
    ('kvrpcpb', 'RawDeleteRequest', 'context', 1, 'Context'),
    ('kvrpcpb', 'RawDeleteRequest', 'key', 2, 'bytes'),
    ('kvrpcpb', 'RawDeleteRequest', 'cf', 3, 'string'),
    ('kvrpcpb', 'RawDeleteRequest', 'for_cas', 4, 'bool'),
    ('kvrpcpb', 'RawDeleteResponse', 'region_error', 1, 'errorpb.Error'),
    ('kvrpcpb', 'RawDeleteResponse', 'error', 2, 'string'),
    ('kvrpcpb', 'RawBatchDeleteRequest', 'context', 1, 'Context'),
    ('kvrpcpb', 'RawBatchDeleteRequest', 'keys', 2, 'repeated bytes'),
    ('kvrpcpb', 'RawBatchDeleteRequest', 'cf', 3, 'string'),
    ('kvrpcpb', 'RawBatchDeleteRequest', 'for_cas', 4, 'bool'),
    ('kvrpcpb', 'RawBatchDeleteResponse', 'region_error', 1, 'errorpb.Error'),
    ('kvrpcpb', 'RawBatchDeleteResponse', 'error', 2, 'string'),
    ('kvrpcpb', 'RawDeleteRangeRequest', 'context', 1, 'Context'),
    ('kvrpcpb', 'RawDeleteRangeRequest', 'start_key', 2, 'bytes'),
    ('kvrpcpb', 'RawDeleteRangeRequest', 'end_key', 3, 'bytes'),
    ('kvrpcpb', 'RawDeleteRangeRequest', 'cf', 4, 'string'),
    ('kvrpcpb', 'RawDeleteRangeResponse', 'region_error', 1, 'errorpb.Error'),
    ('kvrpcpb', 'RawDeleteRangeResponse', 'error', 2, 'string'),
    ('kvrpcpb', 'RawScanRequest', 'context', 1, 'Context'),
    ('kvrpcpb', 'RawScanRequest', 'start_key', 2, 'bytes'),
    ('kvrpcpb', 'RawScanRequest', 'limit', 3, 'uint32'),
    ('kvrpcpb', 'RawScanRequest', 'key_only', 4, 'bool'),
    ('kvrpcpb', 'RawScanRequest', 'cf', 5, 'string'),
    ('kvrpcpb', 'RawScanRequest', 'reverse', 6, 'bool'),
    ('kvrpcpb', 'RawScanRequest', 'end_key', 7, 'bytes'),
    ('kvrpcpb', 'RawScanResponse', 'region_error', 1, 'errorpb.Error'),
    ('kvrpcpb', 'RawScanResponse', 'kvs', 2, 'repeated KvPair'),
]

KVPROTO_ENUMS = [
    ('metapb', 'StoreState', 'Up', 0),
    ('metapb', 'StoreState', 'Offline', 1),
    ('metapb', 'StoreState', 'Tombstone', 2),
    ('metapb', 'NodeState', 'Preparing', 0),
    ('metapb', 'NodeState', 'Serving', 1),
    ('metapb', 'NodeState', 'Removing', 2),
    ('metapb', 'NodeState', 'Removed', 3),
    ('metapb', 'PeerRole', 'Voter', 0),
    ('metapb', 'PeerRole', 'Learner', 1),
    ('metapb', 'PeerRole', 'IncomingVoter', 2),
    ('metapb', 'PeerRole', 'DemotingVoter', 3),
    ('kvrpcpb', 'CommandPri', 'Normal', 0),
    ('kvrpcpb', 'CommandPri', 'Low', 1),
    ('kvrpcpb', 'CommandPri', 'High', 2),
    ('kvrpcpb', 'IsolationLevel', 'SI', 0),
    ('kvrpcpb', 'IsolationLevel', 'RC', 1),
    ('kvrpcpb', 'IsolationLevel', 'RCCheckTS', 2),
    ('kvrpcpb', 'Op', 'Put', 0),
    ('kvrpcpb', 'Op', 'Del', 1),
    ('kvrpcpb', 'Op', 'Lock', 2),
    ('kvrpcpb', 'Op', 'Rollback', 3),
    ('kvrpcpb', 'Op', 'Insert', 4),
    ('kvrpcpb', 'Op', 'PessimisticLock', 5),
    ('kvrpcpb', 'Op', 'CheckNotExists', 6),
    ('kvrpcpb', 'ExtraOp', 'Noop', 0),
    ('kvrpcpb', 'ExtraOp', 'ReadOldValue', 1),
    ('kvrpcpb', 'Action', 'NoAction', 0),
    ('kvrpcpb', 'Action', 'TTLExpireRollback', 1),
    ('kvrpcpb', 'Action', 'LockNotExistRollback', 2),
    ('kvrpcpb', 'Action', 'MinCommitTSPushed', 3),
    ('kvrpcpb', 'Action', 'TTLExpirePessimisticRollback', 4),
    ('kvrpcpb', 'Action', 'LockNotExistDoNothing', 5),
    ('pdpb', 'ErrorType', 'OK', 0),
    ('pdpb', 'ErrorType', 'UNKNOWN', 1),
    ('pdpb', 'ErrorType', 'NOT_BOOTSTRAPPED', 2),
    ('pdpb', 'ErrorType', 'STORE_TOMBSTONE', 3),
    ('pdpb', 'ErrorType', 'ALREADY_BOOTSTRAPPED', 4),
    ('pdpb', 'ErrorType', 'INCOMPATIBLE_VERSION', 5),
    ('pdpb', 'ErrorType', 'REGION_NOT_FOUND', 6),
    ('pdpb', 'ErrorType', 'GLOBAL_CONFIG_NOT_FOUND', 7),
    ('pdpb', 'ErrorType', 'DUPLICATED_ENTRY', 8),
    ('pdpb', 'ErrorType', 'ENTRY_NOT_FOUND', 9),
    ('pdpb', 'ErrorType', 'INVALID_VALUE', 10),
    ('pdpb', 'ErrorType', 'DATA_COMPACTED', 11),
    ('pdpb', 'ErrorType', 'REGIONS_NOT_CONTAIN_ALL_KEY_RANGE', 12),
    ('cdcpb', 'ScanPriority', 'SCAN_PRIORITY_UNKNOWN', 0),
    ('cdcpb', 'ScanPriority', 'SCAN_PRIORITY_LOW', 1),
    ('cdcpb', 'ScanPriority', 'SCAN_PRIORITY_HIGH', 2),
    ('cdcpb', 'Event.LogType', 'UNKNOWN', 0),
    ('cdcpb', 'Event.LogType', 'PREWRITE', 1),
    ('cdcpb', 'Event.LogType', 'COMMIT', 2),
    ('cdcpb', 'Event.LogType', 'ROLLBACK', 3),
    ('cdcpb', 'Event.LogType', 'COMMITTED', 4),
    ('cdcpb', 'Event.LogType', 'INITIALIZED', 5),
    ('cdcpb', 'Event.Row.OpType', 'UNKNOWN', 0),
    ('cdcpb', 'Event.Row.OpType', 'PUT', 1),
    ('cdcpb', 'Event.Row.OpType', 'DELETE', 2),
    ('cdcpb', 'ChangeDataRequest.KvAPI', 'TiDB', 0),
    ('cdcpb', 'ChangeDataRequest.KvAPI', 'RawKV', 1),
    ('cdcpb', 'ChangeDataRequest.KvAPI', 'TxnKV', 2),
    ('kvrpcpb', 'Assertion', 'None', 0),
    ('kvrpcpb', 'Assertion', 'Exist', 1),
    ('kvrpcpb', 'Assertion', 'NotExist', 2),
    ('kvrpcpb', 'AssertionLevel', 'Off', 0),
    ('kvrpcpb', 'AssertionLevel', 'Fast', 1),
    ('kvrpcpb', 'AssertionLevel', 'Strict', 2),
    ('kvrpcpb', 'CommitRole', 'Unknown', 0),
    ('kvrpcpb', 'CommitRole', 'Primary', 1),
    ('kvrpcpb', 'CommitRole', 'Secondary', 2),
    ('kvrpcpb', 'WriteConflict.Reason', 'Unknown', 0),
    ('kvrpcpb', 'WriteConflict.Reason', 'Optimistic', 1),
    ('kvrpcpb', 'WriteConflict.Reason', 'PessimisticRetry', 2),
    ('kvrpcpb', 'WriteConflict.Reason', 'SelfRolledBack', 3),
    ('kvrpcpb', 'WriteConflict.Reason', 'RcCheckTs', 4),
    ('kvrpcpb', 'WriteConflict.Reason', 'LazyUniquenessCheck', 5),
    ('kvrpcpb', 'WriteConflict.Reason', 'NotLockedKeyConflict', 6),
    ('kvrpcpb', 'PrewriteRequest.PessimisticAction', 'SKIP_PESSIMISTIC_CHECK', 0),
    ('kvrpcpb', 'PrewriteRequest.PessimisticAction', 'DO_PESSIMISTIC_CHECK', 1),
    ('kvrpcpb', 'PrewriteRequest.PessimisticAction', 'DO_CONSTRAINT_CHECK', 2),
]

_SCALARS = {
    FieldDescriptor.TYPE_UINT64: "uint64", FieldDescriptor.TYPE_INT64: "int64", FieldDescriptor.TYPE_UINT32: "uint32",
    FieldDescriptor.TYPE_INT32: "int32", FieldDescriptor.TYPE_BOOL: "bool", FieldDescriptor.TYPE_STRING: "string",
    FieldDescriptor.TYPE_BYTES: "bytes",
}


def _message(package: str, qualified: str):
    desc = MODULES[package].DESCRIPTOR.message_types_by_name[qualified.split(".")[0]]
    for part in qualified.split(".")[1:]:
        desc = desc.nested_types_by_name[part]
    return desc


def _type_name(field) -> str:
    if field.type in _SCALARS:
        name = _SCALARS[field.type]
    else:
        name = (field.message_type or field.enum_type).name
    return f"repeated {name}" if field.is_repeated else name


@pytest.mark.parametrize("package,message,field,number,kind", KVPROTO_FIELDS,
                         ids=[f"{p}.{m}.{f}" for p, m, f, _, _ in KVPROTO_FIELDS])
def test_field_number_and_type_match_kvproto(package: str, message: str, field: str, number: int, kind: str) -> None:
    desc = _message(package, message).fields_by_name[field]
    assert desc.number == number
    # kvproto may qualify a type (metapb.Region) where it is declared elsewhere; the name is what counts.
    repeated, _, name = kind.rpartition(" ")
    want = f"{repeated} {name.rsplit('.', 1)[-1]}".strip()
    assert _type_name(desc) == want


def test_every_declared_field_is_in_the_kvproto_table() -> None:
    listed = {(p, m, f) for p, m, f, _, _ in KVPROTO_FIELDS}
    declared = set()
    for package, module in MODULES.items():
        def walk(desc, prefix: str) -> None:
            for nested in desc.nested_types:
                walk(nested, f"{prefix}.{nested.name}")
            for f in desc.fields:
                declared.add((package, prefix, f.name))
        for top in module.DESCRIPTOR.message_types_by_name.values():
            walk(top, top.name)
    assert declared - listed == set()


@pytest.mark.parametrize("package,enum,value,number", KVPROTO_ENUMS,
                         ids=[f"{p}.{e}.{v}" for p, e, v, _ in KVPROTO_ENUMS])
def test_enum_value_matches_kvproto(package: str, enum: str, value: str, number: int) -> None:
    parts = enum.split(".")
    if len(parts) == 1:
        desc = MODULES[package].DESCRIPTOR.enum_types_by_name[enum]
    else:
        desc = _message(package, ".".join(parts[:-1])).enum_types_by_name[parts[-1]]
    assert desc.values_by_name[value].number == number


def test_service_paths_are_kvprotos() -> None:
    """gRPC routes by /package.Service/Method: these are the paths TiKV and PD serve."""
    assert {m.name for m in tikvpb_pb2.DESCRIPTOR.services_by_name["Tikv"].methods} >= {
        "KvCheckTxnStatus", "KvCheckSecondaryLocks", "KvResolveLock", "KvScanLock", "ReadIndex", "KvScan", "KvGet",
        "KvBatchGet", "KvPrewrite", "KvCommit", "KvBatchRollback", "KvCleanup", "KvTxnHeartBeat", "KvPessimisticLock",
        "KVPessimisticRollback", "RawGet", "RawBatchGet", "RawPut", "RawBatchPut", "RawDelete", "RawBatchDelete",
        "RawScan", "RawDeleteRange"}
    assert tikvpb_pb2.DESCRIPTOR.services_by_name["Tikv"].full_name == "tikvpb.Tikv"
    assert cdcpb_pb2.DESCRIPTOR.services_by_name["ChangeData"].full_name == "cdcpb.ChangeData"
    pd = pdpb_pb2.DESCRIPTOR.services_by_name["PD"]
    assert pd.full_name == "pdpb.PD"
    assert {m.name for m in pd.methods} >= {"GetMembers", "Tso", "GetAllStores", "GetStore", "ScanRegions",
                                            "BatchScanRegions", "GetRegion", "GetGCSafePoint",
                                            "UpdateServiceGCSafePoint"}
    tso = pd.methods_by_name["Tso"]
    assert tso.client_streaming and tso.server_streaming


def _decode_raw(data: bytes) -> list[tuple[int, int, object]]:
    """(field number, wire type, value) of every field, as ``protoc --decode_raw`` reads them."""
    out, i = [], 0

    def varint() -> int:
        nonlocal i
        shift = value = 0
        while True:
            b = data[i]
            i += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return value

    while i < len(data):
        tag = varint()
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            out.append((number, wire, varint()))
        elif wire == 2:
            n = varint()
            out.append((number, wire, data[i:i + n]))
            i += n
        else:
            raise AssertionError(f"unexpected wire type {wire}")
    return out


def test_change_data_request_bytes() -> None:
    req = cdcpb_pb2.ChangeDataRequest(
        header=cdcpb_pb2.Header(cluster_id=7, ticdc_version="8.5.0"), region_id=12,
        region_epoch=metapb_pb2.RegionEpoch(conf_ver=3, version=9), checkpoint_ts=400, start_key=b"a",
        end_key=b"b", request_id=5, register=cdcpb_pb2.ChangeDataRequest.Register())
    fields = _decode_raw(req.SerializeToString())
    assert [(n, w) for n, w, _ in fields] == [(1, 2), (2, 0), (3, 2), (4, 0), (5, 2), (6, 2), (7, 0), (9, 2)]
    assert _decode_raw(fields[0][2]) == [(1, 0, 7), (2, 2, b"8.5.0")]
    assert _decode_raw(fields[2][2]) == [(1, 0, 3), (2, 0, 9)]  # conf_ver first, then version
    assert fields[3][2] == 400 and fields[6][2] == 5


def test_change_data_event_bytes() -> None:
    row = cdcpb_pb2.Event.Row(start_ts=10, commit_ts=11, type=cdcpb_pb2.Event.COMMIT,
                              op_type=cdcpb_pb2.Event.Row.PUT, key=b"k", value=b"v")
    ev = cdcpb_pb2.ChangeDataEvent(events=[cdcpb_pb2.Event(region_id=3, index=4, request_id=6,
                                                           entries=cdcpb_pb2.Event.Entries(entries=[row]))])
    (events,) = _decode_raw(ev.SerializeToString())
    assert events[0] == 1
    assert [(n, w) for n, w, _ in _decode_raw(events[2])] == [(1, 0), (2, 0), (3, 2), (7, 0)]
    entries = _decode_raw(events[2])[2][2]
    (row_field,) = _decode_raw(entries)
    assert _decode_raw(row_field[2]) == [(1, 0, 10), (2, 0, 11), (3, 0, 2), (4, 0, 1), (5, 2, b"k"), (6, 2, b"v")]
    resolved = cdcpb_pb2.ChangeDataEvent(resolved_ts=cdcpb_pb2.ResolvedTs(regions=[3, 4], ts=99, request_id=1))
    (field,) = _decode_raw(resolved.SerializeToString())
    assert field[0] == 2
    assert _decode_raw(field[2]) == [(1, 2, bytes([3, 4])), (2, 0, 99), (3, 0, 1)]  # packed regions


def test_tso_and_safe_point_bytes() -> None:
    resp = pdpb_pb2.TsoResponse(header=pdpb_pb2.ResponseHeader(cluster_id=1), count=3,
                                timestamp=pdpb_pb2.Timestamp(physical=1000, logical=5))
    fields = _decode_raw(resp.SerializeToString())
    assert [(n, w) for n, w, _ in fields] == [(1, 2), (2, 0), (3, 2)]
    assert _decode_raw(fields[2][2]) == [(1, 0, 1000), (2, 0, 5)]
    req = pdpb_pb2.UpdateServiceGCSafePointRequest(service_id=b"theflash", TTL=600, safe_point=77)
    assert _decode_raw(req.SerializeToString()) == [(2, 2, b"theflash"), (3, 0, 600), (4, 0, 77)]
