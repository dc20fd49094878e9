package io.theflash.spark;

import java.util.Map;
import java.util.WeakHashMap;
import org.apache.spark.sql.catalyst.QueryPlanningTracker;

/**
 * The snapshot of one theflash table read without a ts of its own (no snapshot_ts, as_of, time
 * travel or session pin). It keeps two kinds of ts apart, because planning a table is not reading
 * it:
 *
 * <ul>
 *   <li><b>planned</b>: the ts {@link QuerySnapshotRule} chose for the table in one query being
 *       planned (one per {@link QueryPlanningTracker}). Creating a view of a DataFrame, caching it
 *       or explaining it plans the table, and fixes nothing beyond that one plan.
 *   <li><b>read</b>: the ts of the first query that actually read the table (one of its scans
 *       started reading). Every later query of this table object reads at it: a DataFrame, every
 *       DataFrame made from it and every view of it read one snapshot. A later query that reads
 *       it with tables read at a newer ts, when the service says it did not change in between,
 *       reads it at that newer ts: the same rows.
 * </ul>
 */
final class TableSnapshot {
  private Long read;
  /** The newest ts known to read the same rows as {@link #read} (nothing changed in between). */
  private long sameThrough;
  private final Map<QueryPlanningTracker, Long> planned = new WeakHashMap<>();

  /** The ts the table was first read at, or null while no query has read it. */
  synchronized Long read() {
    return read;
  }

  /** The query planned on {@code query} reads this table at {@code ts}. */
  synchronized void plan(QueryPlanningTracker query, long ts) {
    planned.put(query, ts);
  }

  /**
   * The table, read at {@link #read}, did not change up to {@code ts} (the service said so): a
   * read at any ts in between returns the rows it read.
   */
  synchronized void sameThrough(long ts) {
    sameThrough = Math.max(sameThrough, ts);
  }

  /** Whether a read at {@code ts} returns the rows the table was read at (its own ts, or one known alike). */
  synchronized boolean readsAlike(long ts) {
    return read != null && (ts == read || (ts > read && ts <= sameThrough));
  }

  /**
   * The ts a scan built now reads at: the one planned for the query this thread is planning (a
   * query reads one ts: a table read before at an older ts, unchanged since, reads at the query's),
   * else the ts the table was read at, else null (no rule planned it: the session runs without
   * the connector's extension, and the first read fixes the ts).
   */
  synchronized Long forScan() {
    scala.Option<QueryPlanningTracker> query = QueryPlanningTracker.get();
    Long forQuery = query.isDefined() ? planned.get(query.get()) : null;
    return forQuery != null ? forQuery : read;
  }

  /** A scan at {@code ts} starts reading: the first fixes the table's ts. Returns the table's ts. */
  synchronized long settle(long ts) {
    if (read == null) read = ts;
    return read;
  }
}
