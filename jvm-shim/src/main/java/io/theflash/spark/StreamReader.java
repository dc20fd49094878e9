package io.theflash.spark;

import java.io.IOException;
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
 *
 * <p>A stream is whole only when it ends with Arrow's end-of-stream marker. Arrow's reader also
 * ends quietly when the bytes stop at a message boundary, so the reader checks that the body
 * ({@link StreamBody}) did not run out first: a stream cut short fails with
 * {@link StreamTruncatedException}.
 *
 * <p>A whole stream ends with the trailers saying what its read did besides its rows: the
 * deletion-vector rows it dropped and the rows it took from the fresh tail, which the reader
 * reports as task metrics ({@link #currentMetricsValues}) that Spark sums into the scan node's.
 */
final class StreamReader implements PartitionReader<ColumnarBatch> {
  private static final BufferAllocator ROOT = new RootAllocator(Long.MAX_VALUE);

  private final StreamPartition partition;
  private final BufferAllocator allocator;
  private final StreamBody body;
  private final ArrowStreamReader reader;
  private final VectorSchemaRoot root;
  private final ColumnarBatch batch;
  private final long limit;
  private long rows;
  private long deletionVectorRows;
  private long freshTailRows;

  StreamReader(StreamPartition partition, StructType readSchema, int limit, BearerToken token) {
    this.partition = partition;
    this.limit = limit < 0 ? Long.MAX_VALUE : limit;
    this.allocator = ROOT.newChildAllocator("theflash stream " + partition.url, 0, Long.MAX_VALUE);
    StreamBody in = null;
    try {
      in = new ServiceClient(partition.server, token).openStream(partition.url);
      this.body = in;
      this.reader = new ArrowStreamReader(in, allocator); // straight from the socket into the vectors
      this.root = readSchemaMessage();
    } catch (IOException | RuntimeException e) {
      closeQuietly(in);
      allocator.close();
      if (e instanceof IOException) throw new UncheckedIOException(e.getMessage(), (IOException) e);
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

  private VectorSchemaRoot readSchemaMessage() throws IOException {
    try {
      return reader.getVectorSchemaRoot();
    } catch (IOException e) {
      throw truncated(e);
    } catch (RuntimeException e) {
      if (body.exhausted()) throw truncated(e);
      throw e;
    }
  }

  @Override
  public boolean next() throws IOException {
    if (rows >= limit) {
      return false; // enough for the pushed limit: close() leaves the rest unread
    }
    boolean loaded;
    try {
      loaded = reader.loadNextBatch();
    } catch (IOException e) {
      throw truncated(e);
    } catch (RuntimeException e) {
      if (body.exhausted()) throw truncated(e); // Arrow's decoder tripping over the cut
      throw e;
    }
    if (!loaded) {
      if (!body.endedWithMarker()) {
        throw truncated(null);
      }
      readTrailers();
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

  /** The read's figures from the trailers of a whole stream (none from a service that sends none). */
  private void readTrailers() throws IOException {
    java.util.Map<String, String> trailers = body.finish();
    deletionVectorRows = count(trailers, ScanMetrics.DELETION_VECTOR_ROWS_TRAILER);
    freshTailRows = count(trailers, ScanMetrics.FRESH_TAIL_ROWS_TRAILER);
  }

  private long count(java.util.Map<String, String> trailers, String name) {
    String value = trailers.get(name.toLowerCase(java.util.Locale.ROOT));
    if (value == null) return 0;
    try {
      return Long.parseLong(value);
    } catch (NumberFormatException e) {
      throw new IllegalStateException("theflash stream " + partition.url + ": trailer " + name + " is not a count: "
          + value);
    }
  }

  /** The deletion-vector and fresh-tail rows of the stream, once it was read whole (0 before). */
  @Override
  public org.apache.spark.sql.connector.metric.CustomTaskMetric[] currentMetricsValues() {
    return ScanMetrics.ofStream(deletionVectorRows, freshTailRows);
  }

  /** The stream broke off: {@code cause} is the read's error, or null when the body just ended. */
  private StreamTruncatedException truncated(Throwable cause) {
    if (cause instanceof StreamTruncatedException) return (StreamTruncatedException) cause;
    return new StreamTruncatedException(partition, rows, cause == null ? "the body ended without it" : why(cause), cause);
  }

  /** The messages of {@code cause} and its causes ("closed: EOF reached while reading"). */
  private static String why(Throwable cause) {
    StringBuilder out = new StringBuilder();
    for (Throwable t = cause; t != null && out.length() < 500; t = t.getCause()) {
      String m = t.getMessage() == null ? t.getClass().getSimpleName() : t.getMessage();
      if (out.indexOf(m) >= 0) continue;
      if (out.length() > 0) out.append(": ");
      out.append(m);
    }
    return out.toString();
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

  private static void closeQuietly(StreamBody in) {
    if (in == null) return;
    try {
      in.close();
    } catch (IOException ignored) {
      // already failing
    }
  }
}
