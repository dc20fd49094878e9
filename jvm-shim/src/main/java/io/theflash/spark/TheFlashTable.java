package io.theflash.spark;

import java.util.EnumSet;
import java.util.Set;
import org.apache.spark.sql.connector.catalog.Column;
import org.apache.spark.sql.connector.catalog.SupportsDeleteV2;
import org.apache.spark.sql.connector.catalog.SupportsRead;
import org.apache.spark.sql.connector.catalog.SupportsWrite;
import org.apache.spark.sql.connector.catalog.TableCapability;
import org.apache.spark.sql.connector.expressions.filter.Predicate;
import org.apache.spark.sql.connector.read.ScanBuilder;
import org.apache.spark.sql.connector.write.LogicalWriteInfo;
import org.apache.spark.sql.connector.write.WriteBuilder;
import org.apache.spark.sql.types.StructField;
import org.apache.spark.sql.types.StructType;
import org.apache.spark.sql.util.CaseInsensitiveStringMap;

/**
 * A replicated TiDB table, read at a snapshot ts. It takes writes only to refuse them with
 * one sentence: the replica is read-only, changes come from the upstream.
 */
final class TheFlashTable implements SupportsRead, SupportsWrite, SupportsDeleteV2 {
  private final String name;
  private final StructType schema;
  private final ReadOptions options;

  private final boolean inCatalog;
  private final TableSnapshot snapshot = new TableSnapshot();

  /**
   * {@code inCatalog}: a catalog's table takes writes and streaming reads to refuse them itself
   * (INSERT, DELETE, readStream.table); a {@code format("theflash")} table declares reads only,
   * so Spark hands {@code df.write} and {@code readStream} to the provider, which refuses them.
   */
  TheFlashTable(String name, StructType schema, ReadOptions options, boolean inCatalog) {
    this.name = name;
    this.schema = schema;
    this.options = options;
    this.inCatalog = inCatalog;
  }

  @Override
  public String name() {
    return name;
  }

  @Override
  @SuppressWarnings("deprecation")
  public StructType schema() {
    return schema;
  }

  @Override
  public Column[] columns() {
    Column[] out = new Column[schema.fields().length];
    for (int i = 0; i < out.length; i++) {
      StructField f = schema.fields()[i];
      out[i] = Column.create(f.name(), f.dataType(), f.nullable(), f.getComment().isDefined() ? f.getComment().get() : null,
          null);
    }
    return out;
  }

  @Override
  public Set<TableCapability> capabilities() {
    if (!inCatalog) {
      // readStream with starting_ts: a stream of changes (TheFlashMicroBatchStream)
      return options.changeStream() ? EnumSet.of(TableCapability.BATCH_READ, TableCapability.MICRO_BATCH_READ)
          : EnumSet.of(TableCapability.BATCH_READ);
    }
    // The write and streaming capabilities are there so Spark reaches this table's refusals
    // (newWriteBuilder, toMicroBatchStream) instead of answering with its own generic error.
    return EnumSet.of(TableCapability.BATCH_READ, TableCapability.BATCH_WRITE, TableCapability.TRUNCATE,
        TableCapability.OVERWRITE_BY_FILTER, TableCapability.OVERWRITE_DYNAMIC, TableCapability.MICRO_BATCH_READ,
        TableCapability.CONTINUOUS_READ, TableCapability.STREAMING_WRITE, TableCapability.ACCEPT_ANY_SCHEMA);
  }

  @Override
  public ScanBuilder newScanBuilder(CaseInsensitiveStringMap ignored) {
    ReadOptions read = options.pinnedBy(SessionConf.get(ReadOptions.SESSION_SNAPSHOT));
    return new TheFlashScanBuilder(name, read, schema, read.fixedTs() ? null : snapshot);
  }

  /**
   * The snapshot this table's reads share when they name no ts of their own (no snapshot_ts,
   * as_of, time travel or session pin), for {@link QuerySnapshotRule} to plan with every other
   * table of the query; null when the read names its ts.
   */
  TableSnapshot querySnapshot() {
    return options.pinnedBy(SessionConf.get(ReadOptions.SESSION_SNAPSHOT)).fixedTs() ? null : snapshot;
  }

  /** The read's options (server, store, snapshot mode), as the query's snapshot is asked for. */
  ReadOptions readOptions() {
    return options;
  }

  @Override
  public WriteBuilder newWriteBuilder(LogicalWriteInfo info) {
    throw ReadOnlyReplica.refuse("writing to " + name);
  }

  @Override
  public boolean canDeleteWhere(Predicate[] predicates) {
    throw ReadOnlyReplica.refuse("deleting from " + name);
  }

  @Override
  public void deleteWhere(Predicate[] predicates) {
    throw ReadOnlyReplica.refuse("deleting from " + name);
  }
}
