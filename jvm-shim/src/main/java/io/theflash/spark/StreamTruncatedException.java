package io.theflash.spark;

import java.io.IOException;

/**
 * A stream that ended before its Arrow end-of-stream marker: the service died, failed mid-way or
 * the connection was cut. The rows read so far are not the stream's rows, so the task fails
 * (Spark may retry it) instead of returning a short table.
 */
public final class StreamTruncatedException extends IOException {
  public final String session;
  public final int stream;
  public final long rows;

  StreamTruncatedException(StreamPartition partition, long rows, String why, Throwable cause) {
    super("theflash stream " + partition.index + " of read session " + partition.session + " (" + partition.server
        + partition.url + ") broke off after " + rows + " rows, before the Arrow end-of-stream marker (" + why
        + "): the service stopped, failed mid-stream (see its log) or the connection was cut; the read fails "
        + "rather than return part of the table", cause);
    this.session = partition.session;
    this.stream = partition.index;
    this.rows = rows;
  }
}
