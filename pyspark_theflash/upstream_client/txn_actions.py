"""What CheckTxnStatus did (``txn.TxnAction``) as kvrpcpb's ``Action`` on the wire, both ways:
the mini cluster's TiKV stores answer with it (tikv_stores.py), a TiDB cluster's client reads
it (tidb_cluster.py)."""
from __future__ import annotations

from pyspark_theflash.proto import kvrpcpb_pb2
from pyspark_theflash.txn.status import TxnAction

KVRPC_OF_ACTION = {
    TxnAction.NO_ACTION: kvrpcpb_pb2.NoAction, TxnAction.TTL_EXPIRE_ROLLBACK: kvrpcpb_pb2.TTLExpireRollback,
    TxnAction.LOCK_NOT_EXIST_ROLLBACK: kvrpcpb_pb2.LockNotExistRollback,
    TxnAction.MIN_COMMIT_TS_PUSHED: kvrpcpb_pb2.MinCommitTSPushed,
    TxnAction.TTL_EXPIRE_PESSIMISTIC_ROLLBACK: kvrpcpb_pb2.TTLExpirePessimisticRollback,
    TxnAction.LOCK_NOT_EXIST_DO_NOTHING: kvrpcpb_pb2.LockNotExistDoNothing,
}
ACTION_OF_KVRPC = {code: action for action, code in KVRPC_OF_ACTION.items()}
