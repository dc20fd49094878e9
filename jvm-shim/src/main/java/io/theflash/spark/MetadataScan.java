package io.theflash.spark;

import org.apache.spark.sql.catalyst.InternalRow;
import org.apache.spark.sql.connector.read.Batch;
import org.apache.spark.sql.connector.read.InputPartition;
import org.apache.spark.sql.connector.read.PartitionReader;
import org.apache.spark.sql.connector.read.PartitionReaderFactory;
import org.apache.spark.sql.connector.read.Scan;
import org.apache.spark.sql.types.StructType;

/** The scan of a {@link TheFlashMetadataTable}: its rows, taken when the table was loaded, in one partition. */
final class MetadataScan implements Scan, Batch {
  private final String name;
  private final StructType schema;
  private final InternalRow[] rows;

  MetadataScan(String name, StructType schema, InternalRow[] rows) {
    this.name = name;
    this.schema = schema;
    this.rows = rows;
  }

  @Override
  public StructType readSchema() {
    return schema;
  }

  @Override
  public String description() {
    return "TheFlashMetadataScan " + name + " (" + rows.length + " rows)";
  }

  @Override
  public Batch toBatch() {
    return this;
  }

  @Override
  public InputPartition[] planInputPartitions() {
    return new InputPartition[] {new Rows(rows)};
  }

  @Override
  public PartitionReaderFactory createReaderFactory() {
    return partition -> new RowsReader(((Rows) partition).rows);
  }

  /** The metadata table's rows (InternalRow is Serializable). */
  static final class Rows implements InputPartition {
    private static final long serialVersionUID = 1L;
    final InternalRow[] rows;

    Rows(InternalRow[] rows) {
      this.rows = rows;
    }
  }

  private static final class RowsReader implements PartitionReader<InternalRow> {
    private final InternalRow[] rows;
    private int next = -1;

    RowsReader(InternalRow[] rows) {
      this.rows = rows;
    }

    @Override
    public boolean next() {
      return ++next < rows.length;
    }

    @Override
    public InternalRow get() {
      return rows[next];
    }

    @Override
    public void close() {}
  }
}
