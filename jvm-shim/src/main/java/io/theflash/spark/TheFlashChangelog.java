package io.theflash.spark;

import java.util.ArrayList;
import java.util.List;
import org.apache.spark.sql.connector.catalog.Changelog;
import org.apache.spark.sql.connector.catalog.Column;
import org.apache.spark.sql.connector.expressions.Expressions;
import org.apache.spark.sql.connector.expressions.NamedReference;
import org.apache.spark.sql.connector.read.ScanBuilder;
import org.apache.spark.sql.types.StructField;
import org.apache.spark.sql.types.StructType;
import org.apache.spark.sql.util.CaseInsensitiveStringMap;

/**
 * {@code SELECT * FROM theflash.db.t CHANGES FROM VERSION a TO VERSION b}: the change read of
 * (from, to] (store/changes.py) as Spark's Changelog. {@code _commit_version} is the commit TSO
 * (the service's {@code _commit_ts}), {@code _commit_timestamp} its time, the row id the handle
 * {@code _tidb_rowid} and the row version the commit TSO. An update is a preimage and a
 * postimage already, so Spark has nothing to pair; with NET_CHANGES the service folds the range
 * itself, so Spark has no intermediate change to remove.
 */
final class TheFlashChangelog implements Changelog {
  static final String COMMIT_VERSION = "_commit_version";
  static final String SERVICE_COMMIT_TS = "_commit_ts";

  private final String name;
  private final ReadOptions options; // snapshot_ts = the range's end, changes_from = its start (exclusive)
  private final StructType schema;
  private final boolean net;

  TheFlashChangelog(String name, ReadOptions options, StructType serviceSchema, boolean net) {
    this.name = name;
    this.options = options;
    this.net = net;
    StructType renamed = new StructType();
    for (StructField f : serviceSchema.fields()) {
      renamed = renamed.add(f.name().equals(SERVICE_COMMIT_TS) ? new StructField(COMMIT_VERSION, f.dataType(),
          f.nullable(), f.metadata()) : f);
    }
    this.schema = renamed;
  }

  @Override
  public String name() {
    return name;
  }

  @Override
  public Column[] columns() {
    Column[] out = new Column[schema.fields().length];
    for (int i = 0; i < out.length; i++) {
      StructField f = schema.fields()[i];
      out[i] = Column.create(f.name(), f.dataType(), f.nullable());
    }
    return out;
  }

  @Override
  public boolean containsCarryoverRows() {
    return false;
  }

  @Override
  public boolean containsIntermediateChanges() {
    return !net;
  }

  @Override
  public boolean representsUpdateAsDeleteAndInsert() {
    return false;
  }

  @Override
  public ScanBuilder newScanBuilder(CaseInsensitiveStringMap ignored) {
    return new TheFlashScanBuilder(name, options, schema, null);
  }

  @Override
  public NamedReference[] rowId() {
    return new NamedReference[] {Expressions.column("_tidb_rowid")};
  }

  @Override
  public NamedReference rowVersion() {
    return Expressions.column(COMMIT_VERSION);
  }

  /** The service's names of the columns a scan of this changelog reads. */
  static List<String> serviceColumns(String[] names) {
    List<String> out = new ArrayList<>();
    for (String n : names) out.add(n.equals(COMMIT_VERSION) ? SERVICE_COMMIT_TS : n);
    return out;
  }
}
