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
import java.util.Map;

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

  /** POST /v1/read-sessions: opens a session (ts, lease, schema, streams). */
  public JsonNode openSession(Map<String, Object> request) {
    try {
      byte[] body = JSON.writeValueAsBytes(request);
      return json(HttpRequest.newBuilder(uri("/v1/read-sessions"))
          .header("Content-Type", "application/json")
          .POST(HttpRequest.BodyPublishers.ofByteArray(body)));
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /** POST /v1/snapshots: the one ts of a query over several tables ({"ts", "snapshot", "tables"}). */
  public JsonNode querySnapshot(Map<String, Object> request) {
    try {
      byte[] body = JSON.writeValueAsBytes(request);
      return json(HttpRequest.newBuilder(uri("/v1/snapshots"))
          .header("Content-Type", "application/json")
          .POST(HttpRequest.BodyPublishers.ofByteArray(body)));
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /** POST /v1/change-streams/{offset|commit}: a change stream's next offset, or its lease at a committed one. */
  public JsonNode changeStream(String call, Map<String, Object> request) {
    try {
      byte[] body = JSON.writeValueAsBytes(request);
      return json(HttpRequest.newBuilder(uri("/v1/change-streams/" + call))
          .header("Content-Type", "application/json")
          .POST(HttpRequest.BodyPublishers.ofByteArray(body)));
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
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
    HttpResponse<byte[]> response = send(request, HttpResponse.BodyHandlers.ofByteArray());
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
    return new IllegalStateException("cannot reach the theflash service at " + server
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
