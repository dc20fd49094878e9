package io.theflash.spark;

import java.net.URI;
import org.apache.spark.sql.connector.read.InputPartition;

/** One stream of a read session: where an executor reads it. */
final class StreamPartition implements InputPartition {
  final String server;
  final String session;
  final String url;
  final int index;

  StreamPartition(String server, String session, String url, int index) {
    this.server = server;
    this.session = session;
    this.url = url;
    this.index = index;
  }

  /** The service's host, unless it is loopback (then every executor is as near as any). */
  @Override
  public String[] preferredLocations() {
    String host = URI.create(server).getHost();
    if (host == null || host.equals("localhost") || host.startsWith("127.") || host.equals("::1")) {
      return new String[0];
    }
    return new String[] {host};
  }
}
