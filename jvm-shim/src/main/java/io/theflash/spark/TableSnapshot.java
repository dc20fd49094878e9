package io.theflash.spark;

/**
 * The ts a table read without a ts of its own settles on: the first scan's session's ts, which
 * every later scan of the same table object reuses. A DataFrame (and every DataFrame made from
 * it: filters, self-joins, repeated actions) and one SQL query (Spark loads a table once per
 * query) thus read one snapshot; load the table again for a fresh one.
 */
final class TableSnapshot {
  private Long ts;

  synchronized Long ts() {
    return ts;
  }

  /** Settles on {@code opened} unless a ts is already settled; returns the settled one. */
  synchronized long settle(long opened) {
    if (ts == null) ts = opened;
    return ts;
  }
}
