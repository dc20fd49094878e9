package io.theflash.spark;

import java.io.Serializable;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeSet;

/**
 * The options of one theflash read: the Python source's (pyspark_theflash/scan/options.py,
 * OPTION_DOCS) plus {@code server}, checked once. A misspelt option is an error that names the
 * known ones: a read must never silently answer something else than what was asked.
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

  /** The options a user may give, as the README lists them. */
  public static final List<String> PUBLIC = Collections.unmodifiableList(Arrays.asList(
      "server", "store", "table", "upstream", "latch", "snapshot_ts", "as_of", "versionAsOf", "timestampAsOf",
      "snapshot", "max_staleness", "isolation",
      "region_wait_timeout", "lock_wait_timeout", "lease_ttl", "batch_rows", "columns", "hidden",
      "partition_target_bytes", "min_partitions", "schema", "token", "token_file", "changes_from", "changes",
      "starting_ts", "max_rows_per_trigger", "readChangeFeed", "startingVersion", "startingTimestamp",
      "endingVersion", "endingTimestamp"));
  private static final List<String> ALSO = Arrays.asList("path", "paths", SESSION_SNAPSHOT);
  /** Delta's and Iceberg's names for time travel (lower case, as options arrive): the same options. */
  private static final Map<String, String> ALIASES = new LinkedHashMap<>();

  static {
    ALIASES.put("versionasof", "snapshot_ts");
    ALIASES.put("timestampasof", "as_of");
  }
  static final List<String> HIDDEN_READABLE = Arrays.asList("_tidb_rowid", "_tidb_commit_ts");
  // read option -> the read request's field (service/request.py OPTION_FIELDS)
  private static final Map<String, String> REQUEST_FIELDS = new LinkedHashMap<>();

  static {
    REQUEST_FIELDS.put("schema", "schema");
    REQUEST_FIELDS.put("lease_ttl", "lease_ttl");
    REQUEST_FIELDS.put("batch_rows", "batch_rows");
    REQUEST_FIELDS.put("min_partitions", "min_streams");
    REQUEST_FIELDS.put("partition_target_bytes", "stream_target_bytes");
    REQUEST_FIELDS.put("region_wait_timeout", "region_wait_timeout");
    REQUEST_FIELDS.put("lock_wait_timeout", "lock_wait_timeout");
    REQUEST_FIELDS.put("changes_from", "changes_from");
    REQUEST_FIELDS.put("changes", "changes");
  }

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
  final Long feedFrom;

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
    return parse(options, SessionConf.get(SESSION_SERVER), SessionConf.get(SESSION_TOKEN),
        SessionConf.get(SESSION_STORE));
  }

  /**
   * Parses a read's options; {@code sessionServer}, {@code sessionToken} and {@code sessionStore}
   * are the session's {@code theflash.server}, {@code theflash.token} and {@code theflash.store}
   * (null when unset).
   */
  public static ReadOptions parse(Map<String, String> options, String sessionServer, String sessionToken,
      String sessionStore) {
    Map<String, String> opts = new LinkedHashMap<>();
    for (Map.Entry<String, String> e : options.entrySet()) {
      if (e.getValue() != null) {
        opts.put(e.getKey().toLowerCase(Locale.ROOT), e.getValue());
      }
    }
    refuseUnknown(opts.keySet());
    // the name each option was given by, for its errors: versionAsOf, not snapshot_ts
    Map<String, String> givenAs = new LinkedHashMap<>();
    for (Map.Entry<String, String> alias : ALIASES.entrySet()) {
      String value = opts.remove(alias.getKey());
      if (value == null) continue;
      String given = opts.get(alias.getValue());
      if (given != null && !given.trim().equals(value.trim())) {
        throw new UserErrorException("option " + alias.getValue() + "=" + quote(given) + " and its alias "
            + publicName(alias.getKey()) + "=" + quote(value) + " disagree: give one of them");
      }
      if (given == null) givenAs.put(alias.getValue(), publicName(alias.getKey()));
      opts.put(alias.getValue(), value);
    }
    Long feedFrom = changeFeed(opts);
    refuseIncompleteChangeRead(opts, givenAs);
    BearerToken token = BearerToken.fromOptions(opts.remove("token"), opts.get("token_file"));
    if (token == null) token = BearerToken.fromSession(sessionToken, SESSION_TOKEN);
    String server = blankToNull(opts.getOrDefault("server", sessionServer));
    String store = blankToNull(opts.getOrDefault("store", sessionStore));
    if (server == null) {
      throw new UserErrorException("option \"server\" is required: the JVM connector reads through the "
          + "theflash service (`theflash serve --store DIR` prints its HTTP address), e.g. "
          + ".option(\"server\", \"http://127.0.0.1:8816\"), or set the session conf " + SESSION_SERVER
          + "; from PySpark, theflash_session() starts a service in its own process and sets it");
    }
    if (!server.startsWith("http://") && !server.startsWith("https://")) {
      throw new UserErrorException("option server=" + quote(server) + " must be http://host:port");
    }
    String table = blankToNull(opts.getOrDefault("table", opts.get("path")));
    if (table == null) {
      throw new UserErrorException("no table given: use .load(\"db.table\") or .option(\"table\", \"db.table\")");
    }
    if (!table.contains(".")) {
      throw new UserErrorException("table " + quote(table) + " must be written as db.table");
    }
    Long snapshotTs = ts(givenAs.getOrDefault("snapshot_ts", "snapshot_ts"), opts.get("snapshot_ts"));
    String asOf = blankToNull(opts.get("as_of"));
    if (asOf != null) { // a malformed time, under the name it was given by, as the Python source reads it
      timeToTs(givenAs.getOrDefault("as_of", "as_of"), opts.get("as_of"));
    }
    if (snapshotTs != null && asOf != null) {
      throw new UserErrorException("give either " + givenAs.getOrDefault("snapshot_ts", "snapshot_ts") + " or "
          + givenAs.getOrDefault("as_of", "as_of") + ", not both");
    }
    if (snapshotTs == null && asOf == null) {
      snapshotTs = ts(SESSION_SNAPSHOT, opts.get(SESSION_SNAPSHOT));
    }
    if (opts.containsKey("schema")) OptionValues.schemaMode(opts.get("schema"));
    String snapshot = blankToNull(opts.get("snapshot"));
    if (snapshot != null) snapshot = snapshotMode("snapshot", snapshot);
    String maxStaleness = blankToNull(opts.get("max_staleness"));
    if (maxStaleness != null && OptionValues.durationS("max_staleness", opts.get("max_staleness")) <= 0) {
      throw new UserErrorException("option max_staleness=" + quote(opts.get("max_staleness"))
          + " must be a positive duration");
    }
    if (("resolved".equals(snapshot) || maxStaleness != null) && (opts.get("snapshot_ts") != null || asOf != null)) {
      throw new UserErrorException("snapshot_ts / as_of name the ts of a read; snapshot=resolved and "
          + "max_staleness choose one: give one or the other");
    }
    if ("resolved".equals(snapshot) && maxStaleness != null) {
      throw new UserErrorException("snapshot=resolved reads the resolved ts whatever its age; max_staleness "
          + "chooses between a fresh and the resolved ts: give one or the other");
    }
    String isolation = opts.getOrDefault("isolation", "SI").trim().toUpperCase(Locale.ROOT);
    if (!isolation.equals("SI") && !isolation.equals("RC")) {
      throw new UserErrorException("option isolation=" + quote(opts.get("isolation")) + ": use SI (default) or RC");
    }
    List<String> hidden = list(opts.get("hidden"));
    for (String name : hidden) {
      if (!HIDDEN_READABLE.contains(name)) {
        throw new UserErrorException("option hidden: " + quote(name)
            + " is not a readable hidden column; use " + String.join(", ", HIDDEN_READABLE));
      }
    }
    // refused here, not by the service: its request fields have other names (min_streams)
    for (String name : Arrays.asList("region_wait_timeout", "lock_wait_timeout", "lease_ttl")) {
      if (opts.containsKey(name)) OptionValues.durationS(name, opts.get(name));
    }
    if (opts.containsKey("batch_rows")) OptionValues.positiveInt("batch_rows", opts.get("batch_rows"));
    if (opts.containsKey("partition_target_bytes")) {
      OptionValues.sizeBytes("partition_target_bytes", opts.get("partition_target_bytes"));
    }
    if (opts.containsKey("min_partitions")) OptionValues.positiveInt("min_partitions", opts.get("min_partitions"));
    Map<String, String> request = new LinkedHashMap<>();
    for (Map.Entry<String, String> e : REQUEST_FIELDS.entrySet()) {
      if (opts.containsKey(e.getKey())) {
        request.put(e.getValue(), opts.get(e.getKey()));
      }
    }
    return new ReadOptions(opts, server, store, table, snapshotTs, asOf, isolation, snapshot, maxStaleness,
        list(opts.get("columns")), hidden, request, token, feedFrom);
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

  /** Delta's change data feed options (lower case, as they arrive) and how users spell them. */
  private static final Map<String, String> FEED_NAMES = new LinkedHashMap<>();

  static {
    FEED_NAMES.put("readchangefeed", "readChangeFeed");
    FEED_NAMES.put("startingversion", "startingVersion");
    FEED_NAMES.put("startingtimestamp", "startingTimestamp");
    FEED_NAMES.put("endingversion", "endingVersion");
    FEED_NAMES.put("endingtimestamp", "endingTimestamp");
  }

  /**
   * Delta's change data feed names turned into ours in {@code opts} (lower case), Delta's
   * semantics mapped exactly: startingVersion v is inclusive (changes_from = v - 1), endingVersion
   * inclusive (snapshot_ts = v); startingTimestamp/endingTimestamp are times (as as_of is written)
   * taken from the first/last TSO of their millisecond. With an end the read is a batch change
   * read (changes_from, snapshot_ts); without one it is starting_ts = start - 1 for a stream, and
   * the returned start for a batch read, which ends at its ts (fresh at planning). The same as
   * the Python source's (scan/options.py change_feed_options).
   */
  static Long changeFeed(Map<String, String> opts) {
    Map<String, String> given = new LinkedHashMap<>();
    for (String key : FEED_NAMES.keySet()) {
      String value = opts.remove(key);
      // blank and stripped as Python's str.strip() has it (the Python source's change_feed_options)
      if (value != null && !AsOfTime.strip(value).isEmpty()) given.put(key, AsOfTime.strip(value));
    }
    if (given.isEmpty()) return null;
    String flag = given.getOrDefault("readchangefeed", "false").toLowerCase(Locale.ROOT);
    if (!flag.equals("true") && !flag.equals("false")) {
      throw new UserErrorException("option readChangeFeed=" + quote(given.get("readchangefeed"))
          + ": use true or false");
    }
    List<String> rangeNames = new ArrayList<>();
    for (String key : given.keySet()) {
      if (!key.equals("readchangefeed")) rangeNames.add(FEED_NAMES.get(key));
    }
    if (!flag.equals("true")) {
      if (!rangeNames.isEmpty()) {
        throw new UserErrorException("option " + String.join(", ", rangeNames) + " names the range of a change "
            + "read: add readChangeFeed=true (Delta's change data feed), or give changes_from and snapshot_ts");
      }
      return null;
    }
    String[][] ours = {{"changes_from", "changes_from"}, {"snapshot_ts", "snapshot_ts (versionAsOf)"},
        {"as_of", "as_of (timestampAsOf)"}, {"starting_ts", "starting_ts"}};
    for (String[] o : ours) {
      if (given(opts, o[0])) {
        throw new UserErrorException("option " + o[1] + " does not go with readChangeFeed: readChangeFeed takes "
            + "its range from startingVersion/startingTimestamp and endingVersion/endingTimestamp; give Delta's names "
            + "or ours (changes_from with snapshot_ts, or starting_ts for a stream), not both");
      }
    }
    if (given.containsKey("startingversion") && given.containsKey("startingtimestamp")) {
      throw new UserErrorException("give startingVersion or startingTimestamp, not both: each is where the "
          + "change read starts");
    }
    if (given.containsKey("endingversion") && given.containsKey("endingtimestamp")) {
      throw new UserErrorException("give endingVersion or endingTimestamp, not both: each is where the change "
          + "read ends");
    }
    String startName;
    long start;
    if (given.containsKey("startingversion")) {
      startName = "startingversion";
      start = version(given, "startingversion") - 1;
    } else if (given.containsKey("startingtimestamp")) {
      startName = "startingtimestamp";
      start = ((timeToTs("startingTimestamp", given.get("startingtimestamp")) >> 18) << 18) - 1;
    } else {
      throw new UserErrorException("readChangeFeed=true needs where the changes start: give startingVersion (a "
          + "commit TSO) or startingTimestamp (a time); for a stream of the table from now, drop readChangeFeed and "
          + "give starting_ts=latest");
    }
    String endName = null;
    Long end = null;
    if (given.containsKey("endingversion")) {
      endName = "endingversion";
      end = version(given, "endingversion");
    } else if (given.containsKey("endingtimestamp")) {
      endName = "endingtimestamp";
      end = timeToTs("endingTimestamp", given.get("endingtimestamp"));
    }
    if (end != null && start >= end) {
      throw new UserErrorException(FEED_NAMES.get(startName) + "=" + quote(given.get(startName)) + " is after "
          + FEED_NAMES.get(endName) + "=" + quote(given.get(endName)) + ": the change read's range runs from its start "
          + "to its end, both inclusive");
    }
    if (end != null) {
      opts.put("changes_from", Long.toString(start));
      opts.put("snapshot_ts", Long.toString(end));
      return null;
    }
    // no end: a stream from start (starting_ts), or a batch change read to the read's ts
    opts.put("starting_ts", Long.toString(start));
    return start;
  }

  private static long version(Map<String, String> given, String key) {
    String name = FEED_NAMES.get(key);
    long value;
    try {
      value = Long.parseLong(given.get(key));
    } catch (NumberFormatException e) {
      throw new UserErrorException("option " + name + "=" + quote(given.get(key)) + " is not a version: a "
          + "version of a theflash table is a commit TSO (physical_ms << 18 | logical); for a time give "
          + name.replace("Version", "Timestamp"));
    }
    if (value <= 1) {
      throw new UserErrorException("option " + name + "=" + quote(given.get(key))
          + " is not a commit TSO (physical_ms << 18 | logical)");
    }
    return value;
  }

  /**
   * The last TSO of the millisecond a time names, as the service and the Python source read
   * options as_of, startingTimestamp and endingTimestamp (scan/snapshot.py as_of_to_ts; the
   * forms are {@link AsOfTime}'s); a malformed time is refused under {@code name}, the option's
   * name as the user gave it.
   */
  static long timeToTs(String name, String text) {
    return AsOfTime.toTs(name, text);
  }

  /** A stream's own options: a batch change read names its range instead. */
  static final List<String> STREAM_ONLY = Arrays.asList("starting_ts", "max_rows_per_trigger");

  /**
   * A change read's options (lower case, aliases resolved) are one range: changes_from with
   * snapshot_ts, its end. Refused, naming the option, before anything is read: an end given
   * another way (as_of, snapshot=resolved, max_staleness, the session's pin) or none, a stream's
   * starting_ts beside it, changes without it, or hidden (a change has _tidb_rowid and _commit_ts
   * already). A stream (starting_ts) has no end and no changes_from: it chooses each batch's
   * range. The same rules as the Python source's (scan/options.py refuse_incomplete_change_read).
   * {@code givenAs}: the name an aliased option was given by (versionAsOf for snapshot_ts), for
   * the messages.
   */
  static void refuseIncompleteChangeRead(Map<String, String> opts, Map<String, String> givenAs) {
    if (given(opts, "starting_ts")) {
      for (String name : Arrays.asList("changes_from", "changes", "snapshot_ts", "as_of", "snapshot", "max_staleness",
          "hidden")) {
        if (given(opts, name)) {
          throw new UserErrorException("option " + givenAs.getOrDefault(name, name) + " does not go with "
              + "starting_ts: a stream "
              + "(spark.readStream with starting_ts) starts there and follows the table, choosing each batch's range "
              + "itself, and every change has _tidb_rowid and _commit_ts; a batch change read (spark.read) takes "
              + "changes_from and snapshot_ts, without starting_ts");
        }
      }
    }
    if (!given(opts, "changes_from")) {
      if (given(opts, "changes")) {
        throw new UserErrorException("option changes (all/net) applies to a change read: give changes_from too "
            + "(and snapshot_ts, the range (changes_from, snapshot_ts] ends at)");
      }
      return;
    }
    for (String name : STREAM_ONLY) {
      if (given(opts, name)) {
        throw new UserErrorException("option " + name + " is a stream's (spark.readStream); a batch change read "
            + "(changes_from) reads the range (changes_from, snapshot_ts]: drop " + name + ", or drop changes_from and "
            + "read a stream");
      }
    }
    if (given(opts, "as_of")) {
      throw new UserErrorException("a change read (changes_from) ends at snapshot_ts, a TSO: option as_of "
          + "(timestampAsOf) is not taken with it; give snapshot_ts instead");
    }
    for (String name : Arrays.asList("snapshot", "max_staleness")) {
      if (given(opts, name)) {
        throw new UserErrorException("option " + name + "=" + quote(opts.get(name)) + " chooses the ts of a "
            + "snapshot read; a change read (changes_from) ends at the snapshot_ts it names: drop " + name);
      }
    }
    if (given(opts, "hidden")) {
      throw new UserErrorException("option hidden=" + quote(opts.get("hidden")) + " does not go with "
          + "changes_from: every change has _tidb_rowid and _commit_ts (its commit TSO) already; drop hidden");
    }
    if (!given(opts, "snapshot_ts")) {
      throw new UserErrorException("a change read (changes_from) needs its end: give option snapshot_ts, the TSO "
          + "the range (changes_from, snapshot_ts] ends at (a session's pinned ts is not taken for it)");
    }
    String from = opts.get("changes_from").trim();
    long start = from.equals("0") ? 0L : ts("changes_from", from); // 0: the rows at snapshot_ts, as inserts
    long end = ts(givenAs.getOrDefault("snapshot_ts", "snapshot_ts"), opts.get("snapshot_ts"));
    if (start >= end) {
      throw new UserErrorException("changes_from=" + start + " must be below snapshot_ts=" + end
          + ": the range is (changes_from, snapshot_ts]");
    }
    String mode = opts.get("changes");
    if (mode != null && !mode.trim().isEmpty()) {
      String m = mode.trim().toLowerCase(Locale.ROOT);
      if (!m.equals("all") && !m.equals("net")) {
        throw new UserErrorException("option changes=" + quote(mode) + ": use all (default) or net");
      }
    }
  }

  /** Whether {@code name} is given (snapshot=fresh is the default, which a named ts overrides). */
  private static boolean given(Map<String, String> opts, String name) {
    String value = opts.get(name);
    if (value == null || value.trim().isEmpty()) return false;
    return !(name.equals("snapshot") && value.trim().equalsIgnoreCase("fresh"));
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

  static void refuseUnknown(Iterable<String> keys) {
    refuseUnknown(keys, Collections.<String>emptyList());
  }

  /** Refuses the keys that are neither read options nor {@code catalog}'s (the catalog's own options). */
  static void refuseUnknown(Iterable<String> keys, List<String> catalog) {
    List<String> unknown = new ArrayList<>();
    for (String k : keys) {
      if (!known(k) && !catalog.contains(k)) unknown.add(k);
    }
    if (unknown.isEmpty()) return;
    Collections.sort(unknown);
    TreeSet<String> names = new TreeSet<>(String.CASE_INSENSITIVE_ORDER);
    names.addAll(PUBLIC);
    names.addAll(catalog);
    List<String> hints = new ArrayList<>();
    for (String name : unknown) {
      String close = closest(name, names);
      hints.add(quote(name) + (close == null ? "" : " (did you mean " + quote(close) + "?)"));
    }
    TreeSet<String> reads = new TreeSet<>(String.CASE_INSENSITIVE_ORDER);
    reads.addAll(PUBLIC);
    throw new UserErrorException("unknown option" + (unknown.size() > 1 ? "s " : " ") + String.join(", ", hints)
        + "; theflash reads take: " + String.join(", ", reads)
        + (catalog.isEmpty() ? "" : "; the catalog also takes: " + String.join(", ", catalog)));
  }

  /** An option's name as the README spells it ("versionAsOf" for "versionasof", as options arrive). */
  static String publicName(String key) {
    for (String name : PUBLIC) {
      if (name.equalsIgnoreCase(key)) return name;
    }
    return key;
  }

  private static boolean known(String key) {
    if (ALSO.contains(key)) return true;
    for (String name : PUBLIC) {
      if (name.equalsIgnoreCase(key)) return true;
    }
    return false;
  }

  /** The known option nearest to a misspelt one (edit distance at most a third of its length). */
  static String closest(String name) {
    TreeSet<String> names = new TreeSet<>(String.CASE_INSENSITIVE_ORDER);
    names.addAll(PUBLIC);
    return closest(name, names);
  }

  private static String closest(String name, TreeSet<String> names) {
    String best = null;
    int bestDistance = Integer.MAX_VALUE;
    for (String known : names) { // options arrive in lower case: compare them so (scan/options.py closest_option)
      int d = distance(name, known.toLowerCase(Locale.ROOT));
      if (d < bestDistance) {
        best = known;
        bestDistance = d;
      }
    }
    return bestDistance * 3 <= Math.max(name.length(), 3) ? best : null;
  }

  /**
   * Insertions, deletions, substitutions and swaps of neighbours ("tabel" is one from "table"):
   * the optimal string alignment distance, as scan/options.py's _edit_distance.
   */
  private static int distance(String a, String b) {
    int[][] d = new int[a.length() + 1][b.length() + 1];
    for (int j = 0; j <= b.length(); j++) d[0][j] = j;
    for (int i = 1; i <= a.length(); i++) {
      d[i][0] = i;
      for (int j = 1; j <= b.length(); j++) {
        int sub = d[i - 1][j - 1] + (a.charAt(i - 1) == b.charAt(j - 1) ? 0 : 1);
        d[i][j] = Math.min(sub, Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1));
        if (i > 1 && j > 1 && a.charAt(i - 1) == b.charAt(j - 2) && a.charAt(i - 2) == b.charAt(j - 1)) {
          d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
        }
      }
    }
    return d[a.length()][b.length()];
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

  static List<String> list(String text) {
    List<String> out = new ArrayList<>();
    if (text == null) return out;
    for (String part : text.split(",")) {
      if (!part.trim().isEmpty()) out.add(part.trim());
    }
    return out;
  }

  private static String blankToNull(String s) {
    return s == null || s.trim().isEmpty() ? null : s.trim();
  }

  static String quote(String s) {
    return "'" + s + "'";
  }
}
