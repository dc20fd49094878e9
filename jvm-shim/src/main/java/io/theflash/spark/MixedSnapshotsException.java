package io.theflash.spark;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * A query over theflash tables that were already read at different snapshot ts, one of which
 * changed between its read and the newest of those ts: answering it would mix two snapshots (an
 * order from one, its items from another), so it is refused. The message (one line) names each
 * table with its ts, the table that changed with its first change, and the ways out.
 */
public final class MixedSnapshotsException extends UserErrorException {
  MixedSnapshotsException(String apart, String changes) {
    super("this query reads theflash tables that were already read at different snapshots (" + apart + "), and "
        + changes + ", so no one snapshot holds what they read. Load the DataFrame again (a new "
        + "spark.read...load(), or its view made again, reads at the query's ts), or set "
        + QuerySnapshotRule.MIXED_SNAPSHOTS + "=allow to read each table at its own ts");
  }

  @Override
  public String getCondition() {
    return "THEFLASH_MIXED_SNAPSHOTS";
  }

  /** "shop.orders at 451..., shop.order_items at 452...": the tables by the ts they were read at. */
  static String describe(Map<Long, List<String>> tablesByTs) {
    List<String> parts = new ArrayList<>();
    for (Map.Entry<Long, List<String>> e : tablesByTs.entrySet()) {
      parts.add(String.join(", ", e.getValue()) + " at snapshot_ts=" + e.getKey());
    }
    return String.join("; ", parts);
  }

  /**
   * "shop.orders changed between snapshot_ts=451... and 452...: a commit at ts 4515...": each
   * table the service found changed since its read ({@code POST /v1/snapshots}' changed), or
   * that may have, when the store cannot tell (below its GC safe point).
   */
  static String describeChanges(JsonNode changed, long newest) {
    List<String> parts = new ArrayList<>();
    for (JsonNode c : changed) {
      boolean known = !"unknown".equals(c.path("kind").asText());
      parts.add(c.get("table").asText() + (known ? " changed" : " may have changed") + " between snapshot_ts="
          + c.get("read_ts").asLong() + " and " + newest + ": " + c.get("change").asText());
    }
    return String.join("; ", parts);
  }
}
