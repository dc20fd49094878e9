package io.theflash.spark;

import org.apache.spark.sql.catalyst.InternalRow;
import org.apache.spark.sql.connector.read.InputPartition;
import org.apache.spark.sql.connector.read.PartitionReader;
import org.apache.spark.sql.connector.read.PartitionReaderFactory;
import org.apache.spark.sql.types.StructType;
import org.apache.spark.sql.vectorized.ColumnarBatch;

/** Makes the columnar reader of a stream on an executor; there are no row readers. */
final class StreamReaderFactory implements PartitionReaderFactory {
  private final StructType readSchema;
  private final int limit;
  private final BearerToken token; // the read's own token (null: each executor's THEFLASH_TOKEN)

  StreamReaderFactory(StructType readSchema, int limit, BearerToken token) {
    this.readSchema = readSchema;
    this.limit = limit;
    this.token = token;
  }

  @Override
  public boolean supportColumnarReads(InputPartition partition) {
    return true;
  }

  @Override
  public PartitionReader<ColumnarBatch> createColumnarReader(InputPartition partition) {
    return new StreamReader((StreamPartition) partition, readSchema, limit, token);
  }

  @Override
  public PartitionReader<InternalRow> createReader(InputPartition partition) {
    throw new UnsupportedOperationException("theflash streams are read as columnar batches only");
  }
}
