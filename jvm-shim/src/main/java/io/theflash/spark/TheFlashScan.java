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

/**
 * One planned scan: a read session opened on first need (statistics or partitions), so the
 * optimizer plans with the session's row and byte estimates and the batch reads its streams.
 */
final class TheFlashScan implements Scan, SupportsReportStatistics, Batch {
  private final String name;
  private final ReadOptions options;
  private final StructType readSchema;
  private final List<Object> filter;
  private final List<Predicate> pushed;
  private final int limit;
  private final TableSnapshot snapshot;
  private ReadSession session;

  TheFlashScan(String name, ReadOptions options, StructType readSchema, List<Object> filter, List<Predicate> pushed,
      int limit, TableSnapshot snapshot) {
    this.snapshot = snapshot;
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
      ReadOptions read = options;
      Long settled = snapshot == null ? null : snapshot.ts();
      if (settled != null) read = options.settledAt(settled);
      if (snapshot != null && settled == null) QueryWithoutExtension.warnOnce(name);
      ReadSession opened = new ReadSession(client.openSession(read.request(columns, filter)));
      if (snapshot != null && snapshot.settle(opened.ts) != opened.ts) {
        // another scan of the table settled first, at another ts: read at that one
        client.releaseSession(opened.id);
        opened = new ReadSession(client.openSession(options.settledAt(snapshot.ts()).request(columns, filter)));
      }
      session = opened;
    }
    return session;
  }

  @Override
  public StructType readSchema() {
    return readSchema;
  }

  @Override
  public String description() {
    Long settled = snapshot == null ? null : snapshot.ts();
    return "TheFlashScan " + name
        + (options.snapshotTs != null ? " snapshot_ts=" + options.snapshotTs : "")
        + (settled != null ? " snapshot_ts=" + settled : "")
        + (options.asOf != null ? " as_of=" + options.asOf : "")
        + " PushedFilters: " + FilterTranslation.describe(pushed)
        + (limit >= 0 ? ", PushedLimit: " + limit : "")
        + ", ReadSchema: " + readSchema.catalogString()
        + partitionsRead();
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
      throw new IllegalArgumentException(TheFlashMicroBatchStream.NEEDS_START);
    }
    return new TheFlashMicroBatchStream(name, options, readSchema, checkpointLocation);
  }

  @Override
  public ContinuousStream toContinuousStream(String checkpointLocation) {
    throw new ReadOnlyReplica("a streaming read");
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

  @Override
  public PartitionReaderFactory createReaderFactory() {
    return new StreamReaderFactory(readSchema, limit, options.token);
  }
}
