package io.theflash.spark;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.Serializable;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The options of one theflash read. The jar parses none of them itself: it hands them to the
 * service it reads through ({@code POST /v1/read-options}), which checks them by the rules the
 * Python source reads them by (pyspark_theflash/scan/options.py, one parser for both) and
 * answers the checked form kept here; a refused option is the service's message, the Python
 * source's words. The jar keeps what it needs before it can ask: {@code server}, and
 * {@code token}/{@code token_file}, read on the driver and never sent as an option.
 */
public final class ReadOptions implements Serializable {
  /** The session conf that pins every read of a Spark session to one ts. */
  public static final String SESSION_SNAPSHOT = "theflash.snapshot_ts";
  /** The session conf naming the service when a read gives no server option. */
  public static final String SESSION_SERVER = "theflash.server";
  /** The session conf holding the bearer token when a read gives no token option. */
  public static final String SESSION_TOKEN = "theflash.token";
  /** The session conf naming the store when a read gives no store option. */
  public static final String SESSION_STORE = "theflash.store";
  /** The session conf choosing how a read without a ts takes one: fresh (default) or resolved. */
  public static final String SESSION_SNAPSHOT_MODE = "theflash.snapshot";
  /** The session conf bounding the staleness of a read without a ts (max_staleness). */
  public static final String SESSION_MAX_STALENESS = "theflash.max_staleness";

  public final String server;
  /** The store directory the read names (sent to the service, which checks it), or null. */
  public final String store;
  public final String table;
  public final Long snapshotTs;
  public final String asOf;
  public final String isolation;
  /** How a read without a ts takes one: "fresh" or "resolved"; null: the session's theflash.snapshot. */
  public final String snapshot;
  /** The staleness bound of a read without a ts ("5s"), or null: the session's theflash.max_staleness. */
  public final String maxStaleness;
  public final List<String> columns;
  public final List<String> hidden;
  public final Map<String, String> requestOptions;
  /** The options as given, less {@code token}: the token is in {@link #token} only. */
  public final Map<String, String> raw;
  /** The read's bearer token (options token, token_file), or null: each JVM's THEFLASH_TOKEN then. */
  final BearerToken token;
  /**
   * readChangeFeed with a start and no end: the change read's changes_from (a batch read ends at
   * its ts, a fresh one at planning; a stream starts at starting_ts, the same value), or null.
   */
  public final Long feedFrom;

  private ReadOptions(Map<String, String> raw, String server, String store, String table, Long snapshotTs,
      String asOf, String isolation, String snapshot, String maxStaleness, List<String> columns, List<String> hidden,
      Map<String, String> requestOptions, BearerToken token, Long feedFrom) {
    this.feedFrom = feedFrom;
    this.raw = raw;
    this.snapshot = snapshot;
    this.maxStaleness = maxStaleness;
    this.token = token;
    this.server = server;
    this.store = store;
    this.table = table;
    this.snapshotTs = snapshotTs;
    this.asOf = asOf;
    this.isolation = isolation;
    this.columns = columns;
    this.hidden = hidden;
    this.requestOptions = requestOptions;
  }

  /** Parses a read's options with the active session's theflash.server, .token and .store. */
  public static ReadOptions parse(Map<String, String> options) {
    return parse(options, Collections.<String>emptyList());
  }

  /** The same, for a catalog whose own options {@code catalogOptions} an unknown option's error names too. */
  static ReadOptions parse(Map<String, String> options, List<String> catalogOptions) {
    return parse(options, SessionConf.get(SESSION_SERVER), SessionConf.get(SESSION_TOKEN),
        SessionConf.get(SESSION_STORE), catalogOptions);
  }

  /**
   * Parses a read's options; {@code sessionServer}, {@code sessionToken} and {@code sessionStore}
   * are the session's {@code theflash.server}, {@code theflash.token} and {@code theflash.store}
   * (null when unset).
   */
  public static ReadOptions parse(Map<String, String> options, String sessionServer, String sessionToken,
      String sessionStore) {
    return parse(options, sessionServer, sessionToken, sessionStore, Collections.<String>emptyList());
  }

  private static ReadOptions parse(Map<String, String> options, String sessionServer, String sessionToken,
      String sessionStore, List<String> catalogOptions) {
    Map<String, String> opts = new LinkedHashMap<>();
    for (Map.Entry<String, String> e : options.entrySet()) {
      if (e.getValue() != null) {
        opts.put(e.getKey().toLowerCase(Locale.ROOT), e.getValue());
      }
    }
    BearerToken token = BearerToken.fromOptions(opts.remove("token"), opts.get("token_file"));
    if (token == null) token = BearerToken.fromSession(sessionToken, SESSION_TOKEN);
    String server = blankToNull(opts.getOrDefault("server", sessionServer));
    if (server == null) {
      throw new UserErrorException("option \"server\" is required: the JVM connector reads through the "
          + "theflash service (`theflash serve --store DIR` prints its HTTP address), e.g. "
          + ".option(\"server\", \"http://127.0.0.1:8816\"), or set the session conf " + SESSION_SERVER
          + "; from PySpark, theflash_session() starts a service in its own process and sets it");
    }
    if (!server.startsWith("http://") && !server.startsWith("https://")) {
      throw new UserErrorException("option server=" + quote(server) + " must be http://host:port");
    }
    String sessionStoreNamed = blankToNull(sessionStore);
    JsonNode form = new ServiceClient(server, token, blankToNull(opts.getOrDefault("store", sessionStoreNamed)))
        .readOptions(opts, catalogOptions);
    String store = text(form, "store");
    return new ReadOptions(strings(form.path("raw")), server, store != null ? store : sessionStoreNamed,
        text(form, "table"), number(form, "snapshot_ts"), text(form, "as_of"), text(form, "isolation"),
        text(form, "snapshot"), text(form, "max_staleness"), list(form.path("columns")), list(form.path("hidden")),
        strings(form.path("request")), token, number(form, "feed_from"));
  }

  private static String text(JsonNode form, String field) {
    JsonNode v = form.path(field);
    return v.isTextual() ? v.asText() : null;
  }

  private static Long number(JsonNode form, String field) {
    JsonNode v = form.path(field);
    return v.isIntegralNumber() ? v.asLong() : null;
  }

  private static List<String> list(JsonNode array) {
    List<String> out = new ArrayList<>();
    for (JsonNode v : array) out.add(v.asText());
    return Collections.unmodifiableList(out);
  }

  private static Map<String, String> strings(JsonNode object) {
    Map<String, String> out = new LinkedHashMap<>();
    object.fields().forEachRemaining(e -> out.put(e.getKey(), e.getValue().asText()));
    return out;
  }

  /**
   * The read pinned by the session's {@code theflash.snapshot_ts} ({@code sessionTs}, null when
   * unset) unless it names its own ts (snapshot_ts, as_of, time travel).
   */
  public ReadOptions pinnedBy(String sessionTs) {
    if (snapshotTs != null || asOf != null || sessionTs == null || sessionTs.trim().isEmpty()) return this;
    if (snapshot != null || maxStaleness != null) return this; // the read's own choice beats the session's pin
    return at(ts(SESSION_SNAPSHOT, sessionTs), null);
  }

  /** The same read at another ts (SQL time travel: VERSION AS OF / TIMESTAMP AS OF). */
  public ReadOptions at(Long snapshotTs, String asOf) {
    return new ReadOptions(raw, server, store, table, snapshotTs, asOf, isolation, snapshot, maxStaleness, columns,
        hidden, requestOptions, token, feedFrom);
  }

  /** Whether the read names its own ts (snapshot_ts, as_of, time travel). */
  public boolean fixedTs() {
    return snapshotTs != null || asOf != null;
  }

  /** How a read without a ts takes one: the option, else the session's theflash.snapshot, else fresh. */
  public String snapshotMode() {
    if (snapshot != null) return snapshot;
    if (maxStaleness != null) return "fresh";
    String session = blankToNull(SessionConf.get(SESSION_SNAPSHOT_MODE));
    return session == null ? "fresh" : snapshotMode(SESSION_SNAPSHOT_MODE, session);
  }

  /** The staleness bound of a read without a ts: the option, else the session's theflash.max_staleness. */
  public String staleness() {
    if (maxStaleness != null || snapshot != null) return maxStaleness;
    return blankToNull(SessionConf.get(SESSION_MAX_STALENESS));
  }

  private static String snapshotMode(String name, String value) {
    String mode = value.trim().toLowerCase(Locale.ROOT);
    if (!mode.equals("fresh") && !mode.equals("resolved")) {
      throw new UserErrorException("option " + name + "=" + quote(value) + ": use fresh (default) or resolved");
    }
    return mode;
  }

  /** The fields of POST /v1/snapshots choosing the ts of a query reading {@code tables}. */
  Map<String, Object> snapshotRequest(List<String> tables) {
    Map<String, Object> r = new LinkedHashMap<>();
    r.put("tables", tables);
    if (store != null) r.put("store", store);
    r.put("snapshot", snapshotMode());
    String bound = staleness();
    if (bound != null && !"resolved".equals(snapshotMode())) r.put("max_staleness", bound);
    if (requestOptions.containsKey("region_wait_timeout")) {
      r.put("region_wait_timeout", requestOptions.get("region_wait_timeout"));
    }
    return r;
  }

  /** A batch change read: option changes_from (with snapshot_ts, the range's end). */
  public boolean changeRead() {
    return requestOptions.containsKey("changes_from") || feedFrom != null;
  }

  /** A stream of changes: readStream with option starting_ts. */
  public boolean changeStream() {
    return raw.containsKey("starting_ts");
  }

  /** The service's HTTP client for this read (its server and bearer token). */
  ServiceClient client() {
    return new ServiceClient(server, token, store);
  }

  /** The read request (service/request.py) for these columns and this filter. */
  public Map<String, Object> request(List<String> readColumns, List<Object> filter) {
    Map<String, Object> r = new LinkedHashMap<>();
    r.put("table", table);
    if (store != null) r.put("store", store);
    if (snapshotTs != null) r.put("snapshot_ts", snapshotTs);
    if (asOf != null) r.put("as_of", asOf);
    r.put("columns", changeRead() && readColumns != null ? TheFlashChangelog.serviceColumns(
        readColumns.toArray(new String[0])) : readColumns);
    if (filter != null && !filter.isEmpty()) r.put("filter", filter);
    r.put("isolation", isolation);
    if (snapshotTs == null && asOf == null) {
      r.put("snapshot", snapshotMode());
      String bound = staleness();
      if (bound != null && !"resolved".equals(snapshotMode())) r.put("max_staleness", bound);
    }
    r.putAll(requestOptions);
    if (feedFrom != null) {
      // readChangeFeed without an end, read as a batch: the changes up to the read's ts (the
      // session's pin or the query's, else a fresh one now, at planning)
      r.put("changes_from", feedFrom);
      r.put("snapshot_ts", snapshotTs != null ? snapshotTs
          : client().querySnapshot(snapshotRequest(Collections.singletonList(table))).get("ts").asLong());
      r.remove("snapshot");
      r.remove("max_staleness");
      r.remove("as_of");
    }
    return r;
  }

  /** The read request of one micro-batch of a stream (its range is the caller's to set). */
  Map<String, Object> streamRequest(List<String> readColumns) {
    return withoutFeed().request(readColumns, null);
  }

  private ReadOptions withoutFeed() {
    return new ReadOptions(raw, server, store, table, snapshotTs, asOf, isolation, snapshot, maxStaleness, columns,
        hidden, requestOptions, token, null);
  }

  /**
   * Does this read take the table and schema it had at its ts: a read at a ts the user named
   * (snapshot_ts, as_of, the session pin, VERSION/TIMESTAMP AS OF) unless the option
   * {@code schema} says {@code current} (the service's default is as_of too).
   */
  public boolean schemaAsOf() {
    String s = requestOptions.get("schema");
    boolean asOfMode = s == null || s.trim().isEmpty()
        || s.trim().toLowerCase(Locale.ROOT).replace('-', '_').equals("as_of");
    return asOfMode && (snapshotTs != null || asOf != null);
  }

  /** The same read without the hidden columns option. */
  ReadOptions withoutHidden() {
    return new ReadOptions(raw, server, store, table, snapshotTs, asOf, isolation, snapshot, maxStaleness, columns,
        Collections.<String>emptyList(), requestOptions, token, feedFrom);
  }

  /**
   * The same read at the ts an earlier scan of the DataFrame settled on: that is "the latest"
   * the user asked for, so the table is the current one (schema=current unless the user chose).
   */
  public ReadOptions settledAt(long ts) {
    ReadOptions r = at(ts, null);
    if (!requestOptions.containsKey("schema")) {
      Map<String, String> request = new LinkedHashMap<>(requestOptions);
      request.put("schema", "current");
      r = new ReadOptions(raw, server, store, table, ts, null, isolation, snapshot, maxStaleness, columns, hidden,
          request, token, feedFrom);
    }
    return r;
  }

  static Long ts(String name, String raw) {
    if (raw == null || raw.trim().isEmpty()) return null;
    long value;
    try {
      value = Long.parseLong(raw.trim());
    } catch (NumberFormatException e) {
      throw new UserErrorException("option " + name + "=" + quote(raw)
          + " is not a TSO number (physical_ms << 18 | logical)");
    }
    if (value <= 0) {
      throw new UserErrorException("option " + name + "=" + quote(raw) + " must be a positive TSO number");
    }
    return value;
  }

  private static String blankToNull(String s) {
    return s == null || s.trim().isEmpty() ? null : s.trim();
  }

  static String quote(String s) {
    return "'" + s + "'";
  }
}
