package io.theflash.spark;

import java.util.ArrayList;
import java.util.List;
import java.util.OptionalLong;
import org.apache.spark.sql.connector.expressions.filter.Predicate;
import org.apache.spark.sql.connector.read.Batch;
import org.apache.spark.sql.connector.read.InputPartition;
import org.apache.spark.sql.connector.read.PartitionReaderFactory;
import org.apache.spark.sql.connector.read.Scan;
import org.apache.spark.sql.connector.read.Statistics;
import org.apache.spark.sql.connector.read.SupportsReportStatistics;
import org.apache.spark.sql.connector.read.streaming.MicroBatchStream;
import org.apache.spark.sql.connector.read.streaming.ContinuousStream;
import org.apache.spark.sql.types.StructType;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One planned scan: a read session opened on first need (statistics or partitions), so the
 * optimizer plans with the session's row and byte estimates and the batch reads its streams.
 *
 * <p>A scan of a table read without a ts of its own reads at the ts {@link QuerySnapshotRule}
 * planned for its query (or the one the table was already read at). Planning is not reading: the
 * table's ts is fixed only when the scan starts reading ({@link #createReaderFactory}), so a view,
 * a cache or an explain of a DataFrame leaves the DataFrame's ts to the first query that reads it.
 */
final class TheFlashScan implements Scan, SupportsReportStatistics, Batch {
  private static final Logger LOG = LoggerFactory.getLogger(TheFlashScan.class);
  private final String name;
  private final ReadOptions options;
  private final StructType readSchema;
  private final List<Object> filter;
  private final List<Predicate> pushed;
  private final int limit;
  private final TableSnapshot snapshot;
  private final Long plannedTs;
  private ReadSession session;

  /**
   * {@code snapshot}: the table's snapshot when the read names no ts of its own (else null);
   * {@code plannedTs}: the ts planned for this scan's query, null when no rule planned one.
   */
  TheFlashScan(String name, ReadOptions options, StructType readSchema, List<Object> filter, List<Predicate> pushed,
      int limit, TableSnapshot snapshot, Long plannedTs) {
    this.snapshot = snapshot;
    this.plannedTs = plannedTs;
    this.name = name;
    this.options = options;
    this.readSchema = readSchema;
    this.filter = filter;
    this.pushed = pushed;
    this.limit = limit;
  }

  synchronized ReadSession session() {
    if (session == null) {
      List<String> columns = new ArrayList<>();
      for (String c : readSchema.fieldNames()) columns.add(c);
      ServiceClient client = options.client();
      Long ts = plannedTs != null ? plannedTs : snapshot == null ? null : snapshot.read();
      if (snapshot != null && ts == null) QueryWithoutExtension.warnOnce(name);
      ReadSession opened = new ReadSession(client.openSession(
          (ts == null ? options : options.settledAt(ts)).request(columns, filter)));
      if (snapshot != null && ts == null && snapshot.settle(opened.ts) != opened.ts) {
        // no rule planned the query, and another scan of the table read first, at another ts
        client.releaseSession(opened.id);
        opened = new ReadSession(client.openSession(options.settledAt(snapshot.read()).request(columns, filter)));
      }
      session = opened;
    }
    return session;
  }

  /**
   * The ts this scan reads at when the query chose it (the read names no ts of its own), once
   * known without asking the service; null otherwise. {@link QuerySnapshotRule} takes it from
   * scans already planned, such as those of a cached DataFrame.
   */
  synchronized Long querySnapshotTs() {
    if (snapshot == null) return null;
    if (plannedTs != null) return plannedTs;
    return session == null ? snapshot.read() : Long.valueOf(session.ts);
  }

  /** The read's options, as the query's snapshot is asked for. */
  ReadOptions readOptions() {
    return options;
  }

  String tableName() {
    return name;
  }

  @Override
  public StructType readSchema() {
    return readSchema;
  }

  @Override
  public String description() {
    Long settled = querySnapshotTs();
    return "TheFlashScan " + name
        + (options.snapshotTs != null ? " snapshot_ts=" + options.snapshotTs : "")
        + (settled != null ? " snapshot_ts=" + settled : "")
        + (options.asOf != null ? " as_of=" + options.asOf : "")
        + " PushedFilters: " + FilterTranslation.describe(pushed)
        + (limit >= 0 ? ", PushedLimit: " + limit : "")
        + ", ReadSchema: " + readSchema.catalogString()
        + partitionsRead()
        + readStreams();
  }

  /**
   * Once planned: the read's Spark partitions (the service's streams), grouped from its regions
   * by bytes up to partition_target_bytes, not one a region (docs/reading.md).
   */
  private synchronized String readStreams() {
    if (session == null) return "";
    String target = options.requestOptions.getOrDefault("stream_target_bytes", "128MiB");
    return ", ReadStreams: " + session.streamUrls.size() + " over " + session.regions + " regions, sized by bytes ("
        + (session.bytes >= 0 ? String.format(java.util.Locale.ROOT, "%.1f MiB, ", session.bytes / 1048576.0) : "")
        + "partition_target_bytes " + target + ")";
  }

  /** A partitioned table: the partitions read and those the pushed filters pruned, once the
   * session is planned (the optimizer asks for statistics first, which opens it). */
  private synchronized String partitionsRead() {
    if (session == null || (session.tablePartitions.isEmpty() && session.tablePartitionsPruned.isEmpty())) return "";
    return ", Partitions: [" + String.join(", ", session.tablePartitions) + "], PrunedPartitions: ["
        + String.join(", ", session.tablePartitionsPruned) + "]";
  }

  @Override
  public Statistics estimateStatistics() {
    if (options.changeStream()) {
      // a stream's scan has no one session to measure (each micro-batch opens its own); Spark
      // asks anyway when it plans a batch's DataFrame (foreachBatch)
      return new Statistics() {
        @Override
        public OptionalLong sizeInBytes() {
          return OptionalLong.empty();
        }

        @Override
        public OptionalLong numRows() {
          return OptionalLong.empty();
        }
      };
    }
    ReadSession s = session();
    return new Statistics() {
      @Override
      public OptionalLong sizeInBytes() {
        return s.bytes < 0 ? OptionalLong.empty() : OptionalLong.of(s.bytes);
      }

      @Override
      public OptionalLong numRows() {
        return s.rows < 0 ? OptionalLong.empty() : OptionalLong.of(s.rows);
      }
    };
  }

  @Override
  public org.apache.spark.sql.connector.metric.CustomMetric[] supportedCustomMetrics() {
    return ScanMetrics.supported();
  }

  /** The session's planning figures, once it is planned (Spark asks after planning the partitions). */
  @Override
  public synchronized org.apache.spark.sql.connector.metric.CustomTaskMetric[] reportDriverMetrics() {
    if (session == null) return new org.apache.spark.sql.connector.metric.CustomTaskMetric[0];
    return ScanMetrics.of(session);
  }

  @Override
  public ColumnarSupportMode columnarSupportMode() {
    return ColumnarSupportMode.SUPPORTED;
  }

  @Override
  public Batch toBatch() {
    return this;
  }

  @Override
  public MicroBatchStream toMicroBatchStream(String checkpointLocation) {
    if (!options.changeStream()) {
      throw new UserErrorException(TheFlashMicroBatchStream.NEEDS_START);
    }
    return new TheFlashMicroBatchStream(name, options, readSchema, checkpointLocation);
  }

  @Override
  public ContinuousStream toContinuousStream(String checkpointLocation) {
    throw ReadOnlyReplica.refuse("a streaming read");
  }

  @Override
  public InputPartition[] planInputPartitions() {
    ReadSession s = session();
    InputPartition[] parts = new InputPartition[s.streamUrls.size()];
    for (int i = 0; i < parts.length; i++) {
      parts[i] = new StreamPartition(options.server, s.id, s.streamUrls.get(i), i);
    }
    return parts;
  }

  /** The scan starts reading (Spark asks for the reader factory as it executes, never as it plans). */
  @Override
  public PartitionReaderFactory createReaderFactory() {
    if (snapshot != null) {
      long read = session().ts;
      long table = snapshot.settle(read);
      if (table != read && !snapshot.readsAlike(read)) {
        // two queries of one DataFrame planned at once and the other read first: this query
        // still reads one ts across its tables, the one it was planned at
        LOG.warn("theflash table {} is read at snapshot_ts={} by this query, planned before another query of the "
            + "same DataFrame read it at snapshot_ts={}", name, read, table);
      }
    }
    return new StreamReaderFactory(readSchema, limit, options.token);
  }
}
