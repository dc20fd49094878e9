"""The store published as open tables: every replicated table is also a Delta Lake table whose
version v is the replica at one resolved ts, every table at the same ts (docs/delta.md)."""
