package io.theflash.spark;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.ConnectException;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The TheFlash API service's HTTP resources (docs/service.md), with the JDK's HTTP client:
 * tables and read sessions; a session's streams, Arrow IPC byte streams, are read by StreamBody.
 */
public final class ServiceClient {
  static final ObjectMapper JSON = new ObjectMapper();
  private static volatile HttpClient shared;

  private final String server;
  private final BearerToken token;
  private final String store;

  /**
   * {@code token}: the read's own bearer token (options token / token_file), or null to send this
   * JVM's THEFLASH_TOKEN if it is set.
   */
  ServiceClient(String server, BearerToken token) {
    this(server, token, null);
  }

  /** {@code store}: the store directory the calls name (the service checks it), or null. */
  ServiceClient(String server, BearerToken token, String store) {
    this.server = server.endsWith("/") ? server.substring(0, server.length() - 1) : server;
    this.token = token;
    this.store = store;
  }

  public String server() {
    return server;
  }

  /** The store directory the calls name, or null (the service's own store). */
  public String store() {
    return store;
  }

  private static HttpClient http() {
    HttpClient client = shared;
    if (client == null) {
      synchronized (ServiceClient.class) {
        if (shared == null) {
          shared = HttpClient.newBuilder()
              .version(HttpClient.Version.HTTP_1_1) // the service speaks HTTP/1.1 (chunked streams)
              .connectTimeout(Duration.ofSeconds(10))
              .build();
        }
        client = shared;
      }
    }
    return client;
  }

  /** GET /v1/tables: the replicated tables (of the store named, if one is). */
  public JsonNode tables() {
    String query = store == null ? "" : "?store=" + URLEncoder.encode(store, StandardCharsets.UTF_8);
    return json(HttpRequest.newBuilder(uri("/v1/tables" + query)).GET()).get("tables");
  }

  /** GET /v1/tables/{db.t}/{kind}: a metadata table of a replicated table ({"table", "kind", "columns", "rows"}). */
  public JsonNode tableMetadata(String table, String kind) {
    String query = store == null ? "" : "?store=" + URLEncoder.encode(store, StandardCharsets.UTF_8);
    return json(HttpRequest.newBuilder(uri("/v1/tables/" + URLEncoder.encode(table, StandardCharsets.UTF_8) + "/"
        + kind + query)).GET());
  }

  /**
   * POST /v1/read-sessions: opens a session (ts, lease, schema, streams). The service answers once
   * the store's regions have reached the read's ts (up to region_wait_timeout); a call still waiting
   * after {@link #WAIT_NOTICE_MS} logs once, at WARN in Spark's log, what it waits for (#waitNotice).
   */
  public JsonNode openSession(Map<String, Object> request) {
    byte[] body;
    try {
      body = JSON.writeValueAsBytes(request);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    HttpRequest.Builder post = HttpRequest.newBuilder(uri("/v1/read-sessions"))
        .header("Content-Type", "application/json")
        .POST(HttpRequest.BodyPublishers.ofByteArray(body));
    Object table = request.get("table");
    return json(post, () -> LOG.warn(waitNotice(table == null ? "the table" : table.toString())));
  }

  /** How long a read session may take to open before the wait is said in the log (issue 52, item 7). */
  static final long WAIT_NOTICE_MS = 2000;
  private static final Logger LOG = LoggerFactory.getLogger(ServiceClient.class);

  /**
   * What a read that has waited {@link #WAIT_NOTICE_MS} for its session waits for: the table's
   * regions in the store, how many and how far the furthest is behind (the service's regions
   * metadata table, asked now), and what to check.
   */
  String waitNotice(String table) {
    String regions = "";
    try {
      JsonNode rows = tableMetadata(table, "regions").path("rows");
      JsonNode furthest = null;
      for (JsonNode row : rows) {
        if (furthest == null || row.path("lag_ms").asLong() > furthest.path("lag_ms").asLong()) furthest = row;
      }
      if (furthest != null) {
        regions = " (" + rows.size() + " region(s) in the store; region " + furthest.path("region_id").asLong()
            + " is resolved at " + furthest.path("resolved_ts").asLong() + ", "
            + String.format(java.util.Locale.ROOT, "%,.1f", furthest.path("lag_ms").asLong() / 1000.0)
            + " s behind the upstream)";
      }
    } catch (RuntimeException e) {
      regions = " (its regions are not known: " + e.getMessage() + ")";
    }
    return "theflash: reading " + table + " waits for the store's regions to reach the read's ts" + regions
        + "; is the writer applying the binlog (theflash writer status)? The service waits up to "
        + "region_wait_timeout (30s unless set), or read what the store already has with snapshot=resolved";
  }

  /** POST /v1/snapshots: the one ts of a query over several tables ({"ts", "snapshot", "tables"}). */
  public JsonNode querySnapshot(Map<String, Object> request) {
    return post("/v1/snapshots", request);
  }

  /**
   * POST /v1/read-options: a read's options (lower-case names, less the token) checked by the
   * service by the rules the Python source reads them by, answered in {@link ReadOptions}'s form.
   * A refused option is a {@link UserErrorException} of the service's message alone, the words the
   * Python source says it in; {@code catalogOptions}: a catalog's own, named beside the read's.
   */
  JsonNode readOptions(Map<String, String> options, List<String> catalogOptions) {
    Map<String, Object> request = new LinkedHashMap<>();
    request.put("options", options);
    if (!catalogOptions.isEmpty()) request.put("catalog_options", catalogOptions);
    try {
      return post("/v1/read-options", request).path("options");
    } catch (ServiceException e) {
      if ("invalid_option".equals(e.code)) throw new UserErrorException(e.serviceMessage);
      throw e;
    }
  }

  /** POST /v1/change-streams/{offset|commit}: a change stream's next offset, or its lease at a committed one. */
  public JsonNode changeStream(String call, Map<String, Object> request) {
    return post("/v1/change-streams/" + call, request);
  }

  /** POST of {@code request} as JSON to {@code path}: the JSON answer, or the service's error. */
  private JsonNode post(String path, Object request) {
    byte[] body;
    try {
      body = JSON.writeValueAsBytes(request);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    return json(HttpRequest.newBuilder(uri(path))
        .header("Content-Type", "application/json")
        .POST(HttpRequest.BodyPublishers.ofByteArray(body)));
  }

  /** DELETE /v1/read-sessions/{id}: ends a session, releases its lease. */
  public void releaseSession(String id) {
    send(HttpRequest.newBuilder(uri("/v1/read-sessions/" + id)).DELETE(), HttpResponse.BodyHandlers.ofByteArray());
  }

  /** GET of a stream's URL: the Arrow IPC stream's bytes, read as they arrive (StreamBody). */
  StreamBody openStream(String path) {
    return StreamBody.open(this, path, bearer());
  }

  private URI uri(String path) {
    return URI.create(server + path);
  }

  private JsonNode json(HttpRequest.Builder request) {
    return json(request, null);
  }

  /** The call's JSON answer; {@code slow}, if given, runs once if no answer came within WAIT_NOTICE_MS. */
  private JsonNode json(HttpRequest.Builder request, Runnable slow) {
    HttpResponse<byte[]> response = slow == null ? send(request, HttpResponse.BodyHandlers.ofByteArray())
        : sendNoticingWait(request, slow);
    if (response.statusCode() / 100 != 2) {
      throw error(response.statusCode(), response.body());
    }
    try {
      return JSON.readTree(response.body());
    } catch (IOException e) {
      throw new IllegalStateException("theflash service " + server + " answered something that is not JSON", e);
    }
  }

  /** The token this client sends: the read's own, else this JVM's THEFLASH_TOKEN, else none (null). */
  private BearerToken bearer() {
    return token != null ? token : BearerToken.fromEnvironment();
  }

  private <T> HttpResponse<T> send(HttpRequest.Builder request, HttpResponse.BodyHandler<T> handler) {
    BearerToken bearer = bearer();
    if (bearer != null) {
      request.header("Authorization", bearer.header());
    }
    try {
      return http().send(request.build(), handler);
    } catch (ConnectException e) {
      throw unreachable(e);
    } catch (IOException e) {
      throw new UncheckedIOException("theflash service " + server + ": " + e.getMessage(), e);
    } catch (InterruptedException e) {
      throw interrupted(e);
    }
  }

  /** {@link #send}, running {@code slow} once if the answer has not come within WAIT_NOTICE_MS. */
  private HttpResponse<byte[]> sendNoticingWait(HttpRequest.Builder request, Runnable slow) {
    BearerToken bearer = bearer();
    if (bearer != null) {
      request.header("Authorization", bearer.header());
    }
    java.util.concurrent.CompletableFuture<HttpResponse<byte[]>> answer =
        http().sendAsync(request.build(), HttpResponse.BodyHandlers.ofByteArray());
    try {
      try {
        return answer.get(WAIT_NOTICE_MS, java.util.concurrent.TimeUnit.MILLISECONDS);
      } catch (java.util.concurrent.TimeoutException e) {
        slow.run();
        return answer.get();
      }
    } catch (InterruptedException e) {
      answer.cancel(true);
      throw interrupted(e);
    } catch (java.util.concurrent.ExecutionException e) {
      Throwable cause = e.getCause();
      if (cause instanceof ConnectException) throw unreachable((ConnectException) cause);
      if (cause instanceof IOException) {
        throw new UncheckedIOException("theflash service " + server + ": " + cause.getMessage(), (IOException) cause);
      }
      if (cause instanceof RuntimeException) throw (RuntimeException) cause;
      throw new IllegalStateException(cause);
    }
  }

  /**
   * The thread was interrupted during a call: {@code query.stop()} on a stream, a cancelled job.
   * The interrupt stays set, and the exception is one Spark knows for an interruption (an
   * {@code InterruptedIOException} inside an {@code UncheckedIOException}, which its streaming
   * engine unwraps): a stopped query then ends quietly instead of failing with an ERROR log.
   */
  RuntimeException interrupted(InterruptedException e) {
    Thread.currentThread().interrupt();
    java.io.InterruptedIOException cause = new java.io.InterruptedIOException(
        "interrupted while calling the theflash service " + server);
    cause.initCause(e);
    return new UncheckedIOException(cause.getMessage(), cause);
  }

  RuntimeException unreachable(ConnectException e) {
    return new ServiceUnreachableException("cannot reach the theflash service at " + server
        + ": start it with `theflash serve --store DIR` and give its HTTP address as option server", e);
  }

  /** The service's error answer ({"error": {"code", "message"}}) as the exception to raise. */
  RuntimeException error(int status, byte[] body) {
    String code = "http_" + status;
    String message = new String(body, StandardCharsets.UTF_8);
    try {
      JsonNode err = JSON.readTree(body).get("error");
      if (err != null) {
        code = err.path("code").asText(code);
        message = err.path("message").asText(message);
      }
    } catch (IOException ignored) {
      // not JSON: keep the body as the message
    }
    if (status == 401) {
      BearerToken sent = bearer();
      message += sent == null
          ? "; this read sent no token: give it with option token or token_file, or set " + BearerToken.ENVIRONMENT
              + " on the driver and the executors"
          : "; this read sent the bearer token from " + sent.source;
    }
    return new ServiceException(server, code, status, message);
  }
}
