package io.theflash.spark;

import org.apache.spark.sql.connector.metric.CustomMetric;
import org.apache.spark.sql.connector.metric.CustomSumMetric;
import org.apache.spark.sql.connector.metric.CustomTaskMetric;

/**
 * What a {@link TheFlashScan}'s read session planned, as the scan node's metrics in the Spark
 * UI (the SQL tab) and in {@code BatchScanExec.metrics()}: the snapshot ts, the regions read,
 * the time waited for them to catch up to the ts (read index / resolved ts), the locks resolved,
 * and the live parts and their bytes the session reads, reported by the driver once the session
 * is planned; and what reading its streams did, reported by each task ({@link StreamReader}) and
 * summed by Spark: the rows deletion vectors dropped and the rows from the fresh tail (delta
 * parts). Spark makes each metric from its class name in the UI, so each is a public class with
 * a no-argument constructor.
 */
final class ScanMetrics {
  private ScanMetrics() {}

  static CustomMetric[] supported() {
    return new CustomMetric[] {new SnapshotTs(), new Regions(), new WaitMs(), new LocksResolved(), new Parts(),
        new PartBytes(), new DeletionVectorRows(), new FreshTailRows()};
  }

  /** The trailers of a whole stream that carry its task metrics (service/http.py STREAM_TRAILERS). */
  static final String DELETION_VECTOR_ROWS_TRAILER = "X-TheFlash-Deletion-Vector-Rows";
  static final String FRESH_TAIL_ROWS_TRAILER = "X-TheFlash-Fresh-Tail-Rows";

  /** One stream's task metrics, under the names of {@link #supported()}. */
  static CustomTaskMetric[] ofStream(long deletionVectorRows, long freshTailRows) {
    return new CustomTaskMetric[] {value(DeletionVectorRows.NAME, deletionVectorRows),
        value(FreshTailRows.NAME, freshTailRows)};
  }

  /** The session's figures, under the names of {@link #supported()}. */
  static CustomTaskMetric[] of(ReadSession s) {
    return new CustomTaskMetric[] {value(SnapshotTs.NAME, s.ts), value(Regions.NAME, s.regions),
        value(WaitMs.NAME, s.waitMs), value(LocksResolved.NAME, s.locksResolved), value(Parts.NAME, s.parts),
        value(PartBytes.NAME, s.partBytes)};
  }

  private static CustomTaskMetric value(String name, long value) {
    return new CustomTaskMetric() {
      @Override
      public String name() {
        return name;
      }

      @Override
      public long value() {
        return value;
      }
    };
  }

  /** The snapshot ts (a TSO) the scan read at: shown as the number, not summed across scans' tasks. */
  public static final class SnapshotTs implements CustomMetric {
    static final String NAME = "snapshot_ts";

    @Override
    public String name() {
      return NAME;
    }

    @Override
    public String description() {
      return "snapshot ts";
    }

    @Override
    public String aggregateTaskMetrics(long[] values) {
      long max = 0;
      for (long v : values) max = Math.max(max, v);
      return Long.toString(max);
    }
  }

  public static final class Regions extends CustomSumMetric {
    static final String NAME = "regions";

    @Override
    public String name() {
      return NAME;
    }

    @Override
    public String description() {
      return "regions read";
    }
  }

  public static final class WaitMs extends CustomSumMetric {
    static final String NAME = "resolved_wait_ms";

    @Override
    public String name() {
      return NAME;
    }

    @Override
    public String description() {
      return "time waited for regions to reach the snapshot ts (ms)";
    }
  }

  public static final class LocksResolved extends CustomSumMetric {
    static final String NAME = "locks_resolved";

    @Override
    public String name() {
      return NAME;
    }

    @Override
    public String description() {
      return "locks resolved (committed or rolled back)";
    }
  }

  public static final class Parts extends CustomSumMetric {
    static final String NAME = "parts";

    @Override
    public String name() {
      return NAME;
    }

    @Override
    public String description() {
      return "parts read";
    }
  }

  public static final class PartBytes extends CustomSumMetric {
    static final String NAME = "part_bytes";

    @Override
    public String name() {
      return NAME;
    }

    @Override
    public String description() {
      return "bytes of the parts read";
    }
  }

  /** Stable-part versions the streams' deletion vectors dropped: versions a newer one supersedes at the ts. */
  public static final class DeletionVectorRows extends CustomSumMetric {
    static final String NAME = "deletion_vector_rows";

    @Override
    public String name() {
      return NAME;
    }

    @Override
    public String description() {
      return "rows dropped by deletion vectors";
    }
  }

  /** Rows the streams returned from delta parts: what the writer flushed since the last compaction. */
  public static final class FreshTailRows extends CustomSumMetric {
    static final String NAME = "fresh_tail_rows";

    @Override
    public String name() {
      return NAME;
    }

    @Override
    public String description() {
      return "rows from the fresh tail (delta parts)";
    }
  }
}
