package io.theflash.spark;

/** The one sentence every write, DDL statement and streaming read of a theflash table gets. */
public final class ReadOnlyReplica extends UnsupportedOperationException {
  public static final String MESSAGE =
      "theflash tables are a read-only replica of the upstream TiDB: write to the upstream, and the "
          + "changes arrive here through replication (%s is not supported)";

  public ReadOnlyReplica(String what) {
    super(String.format(MESSAGE, what));
  }
}
