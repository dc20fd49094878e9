package io.theflash.spark;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.ArrayList;
import java.util.List;

/** A read session the service opened: its ts, row and byte estimates, and its streams' URLs. */
final class ReadSession {
  final String id;
  final long ts;
  final long rows;
  final long bytes;
  final List<String> streamUrls = new ArrayList<>();
  /** A partitioned table's partitions the session reads and the ones its filter pruned. */
  final List<String> tablePartitions = new ArrayList<>();
  final List<String> tablePartitionsPruned = new ArrayList<>();
  /** What planning did (the session's "plan"): the scan's metrics ({@link ScanMetrics}). */
  final long regions;
  final long waitMs;
  final long locksResolved;
  final long parts;
  final long partBytes;

  ReadSession(JsonNode session) {
    this.id = session.get("id").asText();
    this.ts = session.get("ts").asLong();
    this.rows = session.path("rows").asLong(-1);
    this.bytes = session.path("bytes").asLong(-1);
    for (JsonNode s : session.get("streams")) {
      streamUrls.add(s.get("url").asText());
    }
    JsonNode plan = session.path("plan");
    this.regions = plan.path("regions").asLong(0);
    this.waitMs = Math.round(plan.path("learner_wait_s").asDouble(0) * 1000);
    this.locksResolved = plan.path("locks_resolved").asLong(0);
    this.parts = plan.path("parts").asLong(0);
    this.partBytes = plan.path("part_bytes").asLong(0);
    for (JsonNode p : session.path("plan").path("table_partitions")) tablePartitions.add(p.asText());
    for (JsonNode p : session.path("plan").path("table_partitions_pruned")) tablePartitionsPruned.add(p.asText());
  }
}
