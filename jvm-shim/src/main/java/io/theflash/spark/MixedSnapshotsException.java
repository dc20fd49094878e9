package io.theflash.spark;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * A query over theflash tables that were already read at different snapshot ts: answering it
 * would mix two snapshots (an order from one, its items from another), so it is refused. The
 * message names each table with its ts and the three ways out.
 */
public final class MixedSnapshotsException extends IllegalArgumentException {
  MixedSnapshotsException(String apart) {
    super("this query reads theflash tables that were already read at different snapshots (" + apart
        + "), and one query reads one snapshot. Load the DataFrames again (a new spark.read...load() "
        + "reads at the query's ts), pin one ts for the session with spark.conf.set(\"" + ReadOptions.SESSION_SNAPSHOT
        + "\", ts), or set " + QuerySnapshotRule.MIXED_SNAPSHOTS + "=allow to read each at its own ts");
  }

  /** "shop.orders at 451..., shop.order_items at 452...": the tables by the ts they were read at. */
  static String describe(Map<Long, List<String>> tablesByTs) {
    List<String> parts = new ArrayList<>();
    for (Map.Entry<Long, List<String>> e : tablesByTs.entrySet()) {
      parts.add(String.join(", ", e.getValue()) + " at snapshot_ts=" + e.getKey());
    }
    return String.join("; ", parts);
  }
}
