package io.theflash.spark;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.util.List;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.ipc.ArrowStreamReader;
import org.apache.spark.sql.connector.read.PartitionReader;
import org.apache.spark.sql.types.StructType;
import org.apache.spark.sql.vectorized.ArrowColumnVector;
import org.apache.spark.sql.vectorized.ColumnVector;
import org.apache.spark.sql.vectorized.ColumnarBatch;

/**
 * Reads one stream: the Arrow IPC stream from the service, decoded by Arrow's
 * ArrowStreamReader into one VectorSchemaRoot that each batch reloads, handed to Spark as a
 * ColumnarBatch of ArrowColumnVectors over those same vectors (no row conversion).
 */
final class StreamReader implements PartitionReader<ColumnarBatch> {
  private static final BufferAllocator ROOT = new RootAllocator(Long.MAX_VALUE);

  private final BufferAllocator allocator;
  private final ArrowStreamReader reader;
  private final VectorSchemaRoot root;
  private final ColumnarBatch batch;
  private final long limit;
  private long rows;

  StreamReader(StreamPartition partition, StructType readSchema, int limit) {
    this.limit = limit < 0 ? Long.MAX_VALUE : limit;
    this.allocator = ROOT.newChildAllocator("theflash stream " + partition.url, 0, Long.MAX_VALUE);
    InputStream in = null;
    try {
      in = new ServiceClient(partition.server).openStream(partition.url);
      this.reader = new ArrowStreamReader(in, allocator);
      this.root = reader.getVectorSchemaRoot();
    } catch (IOException | RuntimeException e) {
      closeQuietly(in);
      allocator.close();
      if (e instanceof IOException) throw new UncheckedIOException("theflash stream " + partition.url, (IOException) e);
      throw (RuntimeException) e;
    }
    List<FieldVector> vectors = root.getFieldVectors();
    String[] names = readSchema.fieldNames();
    if (vectors.size() != names.length) {
      throw new IllegalStateException("theflash stream " + partition.url + " has columns " + root.getSchema()
          + ", not the " + names.length + " asked for: " + readSchema.catalogString());
    }
    ColumnVector[] columns = new ColumnVector[names.length];
    for (int i = 0; i < names.length; i++) {
      columns[i] = new ArrowColumnVector(vectors.get(i));
    }
    this.batch = new ColumnarBatch(columns);
  }

  @Override
  public boolean next() throws IOException {
    if (rows >= limit || !reader.loadNextBatch()) {
      return false;
    }
    int n = root.getRowCount();
    if (rows + n > limit) {
      n = (int) (limit - rows);
    }
    rows += n;
    batch.setNumRows(n);
    return true;
  }

  @Override
  public ColumnarBatch get() {
    return batch;
  }

  @Override
  public void close() throws IOException {
    try {
      reader.close(); // the root's vectors, and the HTTP body: a stream left early is freed on the server
    } finally {
      allocator.close();
    }
  }

  private static void closeQuietly(InputStream in) {
    if (in == null) return;
    try {
      in.close();
    } catch (IOException ignored) {
      // already failing
    }
  }
}
