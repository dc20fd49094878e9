package io.theflash.spark;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.ConnectException;
import java.net.InetSocketAddress;
import java.net.StandardSocketOptions;
import java.net.URI;
import java.nio.ByteBuffer;
import java.nio.channels.ReadableByteChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Locale;
import java.util.Map;

/**
 * One stream's HTTP body, read off its own socket as a {@link ReadableByteChannel} that Arrow's
 * reader fills its vectors' buffers from: the payload goes from the socket into the direct
 * buffers, the chunked framing decoded in between. The JDK's HTTP client hands a body over as
 * a list of 16 KiB heap buffers through one selector thread shared by every connection, then
 * copies it again into Arrow's buffers; on loopback that took 0.18 s of a 2M-row, two-column
 * read where this takes 0.10 s (two threads, the same service).
 *
 * <p>It speaks the HTTP/1.1 the service answers (docs/service.md): one GET per connection
 * ({@code Connection: close}), a body that is chunked, has a Content-Length, or ends when the
 * connection does. A body that stops before its framing says it is whole (no last chunk, fewer
 * bytes than its length) reads as ended ({@link #exhausted()}), which the caller reports as a
 * cut: Arrow's own end-of-stream marker decides whether a stream is whole
 * ({@link #endedWithMarker()}).
 *
 * <p>It asks for trailers ({@code TE: trailers}): after a whole stream's last chunk the service
 * sends what the read did besides its rows (docs/service.md), which {@link #finish()} reads.
 */
final class StreamBody implements ReadableByteChannel {
  private static final int CONNECT_TIMEOUT_MS = 10_000;
  private static final int MAX_HEAD_BYTES = 64 << 10;

  private final SocketChannel socket;
  // Bytes read off the socket but not yet consumed (the head's tail, chunk size lines and what
  // arrived with them): between position and limit.
  private final ByteBuffer ahead = ByteBuffer.allocate(64 << 10).flip();
  private boolean chunked;
  private long left; // payload bytes left: in this chunk (chunked), in the body (Content-Length)
  private boolean untilClose; // neither chunked nor a length: the body is all the connection sends
  private boolean done; // the framing said the body is whole (a further read answers -1)
  private boolean exhausted; // read answered -1: the body ended, whole or cut
  private int last4; // the last four payload bytes (older ones shift out)
  private long count;
  private final Map<String, String> trailers = new HashMap<>(); // lower-case names, after the last chunk

  private StreamBody(SocketChannel socket) {
    this.socket = socket;
  }

  /**
   * GET {@code path} of {@code server} ({@code http://host:port}): the body of a 200, or the
   * service's error (as {@link ServiceClient} raises it) for anything else.
   */
  static StreamBody open(ServiceClient client, String path, BearerToken bearer) {
    URI uri = URI.create(client.server() + path);
    if (!"http".equalsIgnoreCase(uri.getScheme()) || uri.getHost() == null) {
      throw new UserErrorException("theflash streams are read over plain HTTP from http://host:port, not "
          + client.server());
    }
    int port = uri.getPort() < 0 ? 80 : uri.getPort();
    SocketChannel socket = null;
    try {
      socket = SocketChannel.open();
      socket.setOption(StandardSocketOptions.TCP_NODELAY, true);
      socket.socket().connect(new InetSocketAddress(uri.getHost(), port), CONNECT_TIMEOUT_MS);
      StreamBody body = new StreamBody(socket);
      body.request(uri, port, bearer);
      int status = body.head();
      if (status != 200) {
        throw client.error(status, body.readAll());
      }
      return body;
    } catch (ConnectException e) {
      closeQuietly(socket);
      throw client.unreachable(e);
    } catch (IOException e) {
      closeQuietly(socket);
      // ClosedByInterruptException has no message: a cancelled task or a stopped query
      String why = e.getMessage() != null ? e.getMessage()
          : e instanceof java.nio.channels.ClosedByInterruptException ? "interrupted (the task was cancelled)"
          : e.getClass().getSimpleName();
      throw new UncheckedIOException("theflash service " + client.server() + ": GET " + path + ": " + why, e);
    } catch (RuntimeException e) {
      closeQuietly(socket);
      throw e;
    }
  }

  private void request(URI uri, int port, BearerToken bearer) throws IOException {
    StringBuilder head = new StringBuilder()
        .append("GET ").append(uri.getRawPath()).append(uri.getRawQuery() == null ? "" : "?" + uri.getRawQuery())
        .append(" HTTP/1.1\r\nHost: ").append(uri.getHost()).append(':').append(port)
        .append("\r\nAccept: application/vnd.apache.arrow.stream\r\nTE: trailers\r\nConnection: close, TE\r\n");
    if (bearer != null) {
      head.append("Authorization: ").append(bearer.header()).append("\r\n");
    }
    ByteBuffer out = ByteBuffer.wrap(head.append("\r\n").toString().getBytes(StandardCharsets.ISO_8859_1));
    while (out.hasRemaining()) {
      socket.write(out);
    }
  }

  /** Reads the status line and headers; returns the status. */
  private int head() throws IOException {
    String status = line();
    String[] words = status.split(" ", 3);
    if (words.length < 2 || !words[0].startsWith("HTTP/1.")) {
      throw new IOException("the answer is not HTTP/1.x: " + status);
    }
    long length = -1;
    int bytes = status.length();
    for (String header = line(); !header.isEmpty(); header = line()) {
      bytes += header.length();
      if (bytes > MAX_HEAD_BYTES) {
        throw new IOException("the answer's headers run past " + MAX_HEAD_BYTES + " bytes");
      }
      int colon = header.indexOf(':');
      if (colon < 0) continue;
      String name = header.substring(0, colon).trim().toLowerCase(Locale.ROOT);
      String value = header.substring(colon + 1).trim();
      if (name.equals("transfer-encoding") && value.toLowerCase(Locale.ROOT).contains("chunked")) {
        chunked = true;
      } else if (name.equals("content-length")) {
        length = Long.parseLong(value);
      }
    }
    if (!chunked) {
      untilClose = length < 0;
      left = Math.max(length, 0);
      done = length == 0;
    }
    try {
      return Integer.parseInt(words[1]);
    } catch (NumberFormatException e) {
      throw new IOException("the answer's status line has no status: " + status);
    }
  }

  @Override
  public int read(ByteBuffer dst) throws IOException {
    if (!dst.hasRemaining()) return 0;
    if (done || exhausted) return end();
    if (chunked && left == 0 && !nextChunk()) return end();
    int want = untilClose ? dst.remaining() : (int) Math.min(dst.remaining(), left);
    int start = dst.position();
    int n;
    if (ahead.hasRemaining()) {
      n = Math.min(want, ahead.remaining());
      ByteBuffer slice = ahead.slice();
      slice.limit(n);
      dst.put(slice);
      ahead.position(ahead.position() + n);
    } else {
      int limit = dst.limit();
      dst.limit(start + want);
      try {
        n = socket.read(dst);
      } finally {
        dst.limit(limit);
      }
      if (n < 0) {
        exhausted = true; // cut (or, for a body without framing, its end): no more bytes
        return -1;
      }
    }
    for (int i = Math.max(start, start + n - 4); i < start + n; i++) {
      last4 = (last4 << 8) | (dst.get(i) & 0xff);
    }
    count += n;
    if (!untilClose) {
      left -= n;
      if (!chunked && left == 0) done = true;
    }
    return n;
  }

  /** The body is over: as the framing said, or as the connection ended. */
  private int end() {
    exhausted = true;
    return -1;
  }

  /** The next chunk's size line; false at the last chunk (its trailers read) or a cut. */
  private boolean nextChunk() throws IOException {
    String size;
    try {
      size = line();
      if (size.isEmpty()) size = line(); // the CRLF that ends the chunk before
    } catch (IOException e) {
      return false; // cut before the next chunk: the body ends here
    }
    int ext = size.indexOf(';');
    try {
      left = Long.parseLong((ext < 0 ? size : size.substring(0, ext)).trim(), 16);
    } catch (NumberFormatException e) {
      throw new IOException("a chunk's size line is not hexadecimal: '" + size + "'");
    }
    if (left > 0) return true;
    try {
      for (String trailer = line(); !trailer.isEmpty(); trailer = line()) {
        int colon = trailer.indexOf(':');
        if (colon > 0 && trailers.size() < 64) {
          trailers.put(trailer.substring(0, colon).trim().toLowerCase(Locale.ROOT), trailer.substring(colon + 1).trim());
        }
      }
      done = true;
    } catch (IOException e) {
      done = true; // the last chunk came but not the CRLF after it: the payload is whole
    }
    return false;
  }

  /** A CRLF- (or LF-) terminated line of the head or the chunk framing, without its end. */
  private String line() throws IOException {
    StringBuilder out = new StringBuilder();
    while (true) {
      while (ahead.hasRemaining()) {
        char c = (char) (ahead.get() & 0xff);
        if (c == '\n') {
          int n = out.length();
          return n > 0 && out.charAt(n - 1) == '\r' ? out.substring(0, n - 1) : out.toString();
        }
        if (out.length() >= MAX_HEAD_BYTES) {
          throw new IOException("a line of the answer runs past " + MAX_HEAD_BYTES + " bytes");
        }
        out.append(c);
      }
      if (!fill()) {
        throw new IOException("the connection ended inside a line of the HTTP framing");
      }
    }
  }

  /** Reads more of the connection into {@code ahead}; false at its end. */
  private boolean fill() throws IOException {
    ahead.compact();
    try {
      return socket.read(ahead) > 0;
    } finally {
      ahead.flip();
    }
  }

  /** The rest of an error's body (its message), however it is framed. */
  private byte[] readAll() throws IOException {
    java.io.ByteArrayOutputStream out = new java.io.ByteArrayOutputStream();
    ByteBuffer buf = ByteBuffer.allocate(8 << 10);
    while (out.size() < (1 << 20) && read(buf.clear()) >= 0) {
      out.write(buf.array(), 0, buf.position());
    }
    return out.toByteArray();
  }

  /**
   * True once a read answered -1. Arrow's reader reads exactly the bytes each message needs,
   * so it never reads past the end-of-stream marker: a body it finds ended is one that stopped
   * before the marker, whatever its framing said.
   */
  boolean exhausted() {
    return exhausted;
  }

  /** True when the last payload bytes are a zero message length and the body had not run out. */
  boolean endedWithMarker() {
    return !exhausted() && count >= 4 && last4 == 0;
  }

  /**
   * Reads what follows the payload a reader took (the last chunk and its trailers) and answers
   * the trailers, names in lower case: empty when the body ends without them. For a stream
   * Arrow's reader found whole; a payload byte past the marker is not the service's answer.
   */
  Map<String, String> finish() throws IOException {
    ByteBuffer rest = ByteBuffer.allocate(64);
    while (read(rest.clear()) >= 0) {
      if (rest.position() > 0) throw new IOException("bytes after the stream's end-of-stream marker");
    }
    return trailers;
  }

  @Override
  public boolean isOpen() {
    return socket.isOpen();
  }

  @Override
  public void close() throws IOException {
    socket.close(); // a stream left early is freed on the service when its connection closes
  }

  private static void closeQuietly(SocketChannel socket) {
    if (socket == null) return;
    try {
      socket.close();
    } catch (IOException ignored) {
      // already failing
    }
  }
}
