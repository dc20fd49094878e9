package io.theflash.spark;

import java.time.Instant;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.apache.spark.sql.catalyst.analysis.NoSuchNamespaceException;
import org.apache.spark.sql.catalyst.analysis.NoSuchTableException;
import org.apache.spark.sql.connector.catalog.Identifier;
import org.apache.spark.sql.connector.catalog.NamespaceChange;
import org.apache.spark.sql.connector.catalog.SupportsNamespaces;
import org.apache.spark.sql.connector.catalog.Table;
import org.apache.spark.sql.connector.catalog.TableCatalog;
import org.apache.spark.sql.connector.catalog.TableChange;
import org.apache.spark.sql.connector.catalog.TableInfo;
import org.apache.spark.sql.connector.expressions.Transform;
import org.apache.spark.sql.types.StructType;
import org.apache.spark.sql.util.CaseInsensitiveStringMap;

/**
 * The replicated tables as a Spark catalog: a namespace per TiDB database.
 *
 * <pre>
 * spark.sql.catalog.theflash         = io.theflash.spark.TheFlashCatalog
 * spark.sql.catalog.theflash.server  = http://127.0.0.1:8816     -- a running `theflash serve`, or:
 * spark.sql.catalog.theflash.pd      = pd0:2379                  -- the catalog starts its own service
 * spark.sql.catalog.theflash.store   = /data/flash               --   of this store (ServiceProcess)
 * SELECT * FROM theflash.bank.accounts VERSION AS OF 4520...          -- a TSO
 * SELECT * FROM theflash.bank.accounts TIMESTAMP AS OF '2026-11-21 06:00:00'
 * SELECT * FROM theflash.bank.accounts.history   -- the readable ts range; also .schemas, .regions, .parts
 * </pre>
 *
 * Other catalog options are read options every read of the catalog takes (isolation, ...), or
 * the catalog's own: {@code pd}, {@code python}, {@code start_timeout}.
 */
public final class TheFlashCatalog implements TableCatalog, SupportsNamespaces {
  private static final DateTimeFormatter ISO_MICROS =
      DateTimeFormatter.ofPattern("yyyy-MM-dd'T'HH:mm:ss.SSSSSSxxx").withZone(ZoneOffset.UTC);
  /** The catalog's own options, beside the read options: the service it starts from PD. */
  static final List<String> CATALOG_OPTIONS = java.util.Arrays.asList("pd", "python", "start_timeout");

  private String name;
  private Map<String, String> readOptions;
  /** The service this catalog starts ({@code pd} without {@code server}), or null. */
  private ServiceProcess.Settings service;

  @Override
  public void initialize(String name, CaseInsensitiveStringMap options) {
    this.name = name;
    Map<String, String> opts = new LinkedHashMap<>();
    for (Map.Entry<String, String> e : options.entrySet()) {
      opts.put(e.getKey().toLowerCase(java.util.Locale.ROOT), e.getValue());
    }
    String pd = opts.remove("pd");
    String python = opts.remove("python");
    String startTimeout = opts.remove("start_timeout");
    if (pd != null) {
      if (opts.get("server") != null && !opts.get("server").trim().isEmpty()) {
        throw new UserErrorException(conf("server") + " and " + conf("pd") + " are both set: give server to "
            + "read through a running `theflash serve`, or pd with store for the catalog to start its own service");
      }
      if (opts.get("upstream") != null) {
        throw new UserErrorException(conf("upstream") + " beside " + conf("pd") + ": pd is the upstream of "
            + "the service this catalog starts; drop upstream");
      }
      String store = opts.get("store");
      if (store == null || store.trim().isEmpty()) store = SessionConf.get(ReadOptions.SESSION_STORE);
      if (store == null || store.trim().isEmpty()) {
        throw new UserErrorException("catalog " + name + " starts its theflash service from " + conf("pd")
            + " and a store: set " + conf("store") + " to the store directory the writer fills (`theflash writer "
            + "run --store DIR`)");
      }
      service = ServiceProcess.settings(name, pd, store, python, startTimeout);
      opts.put("store", service.store);
      opts.remove("token");
      opts.remove("token_file");
    } else if (python != null || startTimeout != null) {
      throw new UserErrorException(conf(python != null ? "python" : "start_timeout") + " configures the "
          + "service this catalog starts from " + conf("pd") + " (with " + conf("store") + "): set pd too, or drop it");
    }
    this.readOptions = opts;
    if (service != null) ServiceProcess.obtain(service);  // started now: a wrong pd or store fails here
  }

  @Override
  public String name() {
    return name;
  }

  private String conf(String option) {
    return "spark.sql.catalog." + name + "." + option;
  }

  private ServiceClient client() {
    return options(null).client();
  }

  private ReadOptions options(String table) {
    Map<String, String> opts = new HashMap<>(readOptions);
    opts.put("table", table == null ? "catalog.listing" : table);
    if (service != null) {
      ServiceProcess running = ServiceProcess.obtain(service);
      opts.put("server", running.url);
      opts.put("token", running.token);
    } else if (opts.get("server") == null && SessionConf.get(ReadOptions.SESSION_SERVER) == null) {
      throw new UserErrorException("catalog " + name + " has no theflash service to read through: set "
          + conf("pd") + " (PD's client address, host:2379) and " + conf("store") + " (the writer's store directory) "
          + "for the catalog to start one, or " + conf("server") + " to the HTTP address of a running `theflash "
          + "serve`; from PySpark, theflash_session() starts a service and sets the session conf "
          + ReadOptions.SESSION_SERVER);
    }
    return ReadOptions.parse(opts, CATALOG_OPTIONS);
  }

  // -- namespaces: the TiDB databases with replicated tables -------------------------------------
  private Map<String, List<String>> databases() {
    Map<String, List<String>> out = new LinkedHashMap<>();
    for (String table : TableSchema.list(client()).keySet()) {
      int dot = table.indexOf('.');
      out.computeIfAbsent(table.substring(0, dot), k -> new ArrayList<>()).add(table.substring(dot + 1));
    }
    return out;
  }

  private String database(String[] namespace) {
    if (namespace.length != 1) return null;
    for (String db : databases().keySet()) {
      if (db.equalsIgnoreCase(namespace[0])) return db;
    }
    return null;
  }

  @Override
  public String[][] listNamespaces() {
    Set<String> dbs = new LinkedHashSet<>(databases().keySet());
    String[][] out = new String[dbs.size()][];
    int i = 0;
    for (String db : dbs) out[i++] = new String[] {db};
    return out;
  }

  @Override
  public String[][] listNamespaces(String[] namespace) throws NoSuchNamespaceException {
    if (namespace.length == 0) return listNamespaces();
    if (database(namespace) == null) throw unchecked(noSuchDatabase(namespace));
    return new String[0][];
  }

  @Override
  public boolean namespaceExists(String[] namespace) {
    return database(namespace) != null;
  }

  @Override
  public Map<String, String> loadNamespaceMetadata(String[] namespace) throws NoSuchNamespaceException {
    if (database(namespace) == null) throw unchecked(noSuchDatabase(namespace));
    return Collections.singletonMap(SupportsNamespaces.PROP_COMMENT, "TiDB database " + namespace[0]
        + ", replicated by theflash (read-only)");
  }

  @Override
  public void createNamespace(String[] namespace, Map<String, String> metadata) {
    throw ReadOnlyReplica.refuse("CREATE NAMESPACE");
  }

  @Override
  public void alterNamespace(String[] namespace, NamespaceChange... changes) {
    throw ReadOnlyReplica.refuse("ALTER NAMESPACE");
  }

  @Override
  public boolean dropNamespace(String[] namespace, boolean cascade) {
    throw ReadOnlyReplica.refuse("DROP NAMESPACE");
  }

  // -- tables ----------------------------------------------------------------------------------
  @Override
  public Identifier[] listTables(String[] namespace) throws NoSuchNamespaceException {
    String db = database(namespace);
    if (db == null) throw unchecked(noSuchDatabase(namespace));
    List<String> tables = databases().get(db);
    Identifier[] out = new Identifier[tables.size()];
    for (int i = 0; i < out.length; i++) out[i] = Identifier.of(new String[] {db}, tables.get(i));
    return out;
  }

  @Override
  public Table loadTable(Identifier ident) throws NoSuchTableException {
    return load(ident, null, null);
  }

  /** {@code VERSION AS OF <tso>}: the table at that TSO timestamp. */
  @Override
  public Table loadTable(Identifier ident, String version) throws NoSuchTableException {
    Long ts = ReadOptions.ts("VERSION AS OF", version);
    return load(ident, ts, null);
  }

  /** {@code TIMESTAMP AS OF '...'}: the table as of that time (microseconds since the epoch, UTC). */
  @Override
  public Table loadTable(Identifier ident, long timestampMicros) throws NoSuchTableException {
    Instant at = Instant.ofEpochSecond(Math.floorDiv(timestampMicros, 1_000_000L),
        Math.floorMod(timestampMicros, 1_000_000L) * 1000L);
    return load(ident, null, ISO_MICROS.format(at));
  }

  /**
   * {@code CHANGES FROM VERSION a [EXCLUSIVE] TO VERSION b} (and the TIMESTAMP form): the change
   * read of the range, as (from, to] in TSO terms. A version is a TSO; a timestamp covers every
   * TSO of its millisecond; no end reads to a fresh ts.
   */
  @Override
  public org.apache.spark.sql.connector.catalog.Changelog loadChangelog(Identifier ident,
      org.apache.spark.sql.connector.catalog.ChangelogContext context, CaseInsensitiveStringMap options)
      throws NoSuchTableException {
    if (ident.namespace().length != 1) throw unchecked(notFound(ident));
    TableSchema table = TableSchema.find(client(), ident.namespace()[0] + "." + ident.name());
    if (table == null) throw unchecked(notFound(ident));
    org.apache.spark.sql.connector.catalog.ChangelogRange range = context.range();
    long from;
    Long to = null;
    if (range instanceof org.apache.spark.sql.connector.catalog.ChangelogRange.VersionRange) {
      org.apache.spark.sql.connector.catalog.ChangelogRange.VersionRange v =
          (org.apache.spark.sql.connector.catalog.ChangelogRange.VersionRange) range;
      long start = ReadOptions.ts("CHANGES FROM VERSION", v.startingVersion());
      from = v.startingBoundInclusive() ? start - 1 : start;
      if (v.endingVersion().isPresent()) {
        long end = ReadOptions.ts("CHANGES TO VERSION", v.endingVersion().get());
        to = v.endingBoundInclusive() ? end : end - 1;
      }
    } else if (range instanceof org.apache.spark.sql.connector.catalog.ChangelogRange.TimestampRange) {
      org.apache.spark.sql.connector.catalog.ChangelogRange.TimestampRange t =
          (org.apache.spark.sql.connector.catalog.ChangelogRange.TimestampRange) range;
      long startMs = Math.floorDiv(t.startingTimestamp(), 1000L);
      // the TSOs of a millisecond are ms << 18 .. ms << 18 | 0x3FFFF
      from = t.startingBoundInclusive() ? (startMs << 18) - 1 : (startMs << 18) | 0x3FFFFL;
      if (t.endingTimestamp().isPresent()) {
        long endMs = Math.floorDiv(t.endingTimestamp().get(), 1000L);
        to = t.endingBoundInclusive() ? (endMs << 18) | 0x3FFFFL : (endMs << 18) - 1;
      }
    } else {
      throw new UserErrorException("changes of " + table.table + " need a range: CHANGES FROM VERSION <tso> "
          + "[TO VERSION <tso>] (or the TIMESTAMP form); the store keeps versions back to its GC safe point only");
    }
    ReadOptions read = options(table.table);
    if (to == null) {
      java.util.Map<String, Object> request = read.snapshotRequest(java.util.Arrays.asList(table.table));
      to = read.client().querySnapshot(request).get("ts").asLong();
    }
    if (to <= from) {
      throw new UserErrorException("changes of " + table.table + ": the range (" + from + ", " + to
          + "] is empty; its end must be after its start");
    }
    boolean net = context.deduplicationMode()
        == org.apache.spark.sql.connector.catalog.ChangelogContext.DeduplicationMode.NET_CHANGES;
    // the catalog's read options; the statement's own (WITH (...)) are Spark's changelog options,
    // which the context carries
    java.util.Map<String, String> raw = new HashMap<>(readOptions);
    // the statement names the range: the catalog's choice of a snapshot read's ts is not the end
    for (String ts : java.util.Arrays.asList("snapshot", "max_staleness", "as_of", "timestampasof", "versionasof",
        ReadOptions.SESSION_SNAPSHOT)) {
      raw.remove(ts);
    }
    raw.put("table", table.table);
    raw.put("snapshot_ts", Long.toString(to));
    raw.put("changes_from", Long.toString(from));
    raw.put("changes", net ? "net" : "all");
    ReadOptions changes = ReadOptions.parse(raw, CATALOG_OPTIONS);
    StructType schema = TheFlashTableProvider.schema(changes);
    return new TheFlashChangelog(table.table, changes, schema, net);
  }

  /** Whether the table (or metadata table) exists: false, never an error, for one that does not. */
  @Override
  public boolean tableExists(Identifier ident) {
    String[] ns = ident.namespace();
    if (ns.length == 1) return TableSchema.find(client(), ns[0] + "." + ident.name()) != null;
    return ns.length == 2 && TheFlashMetadataTable.KINDS.contains(ident.name().toLowerCase(java.util.Locale.ROOT))
        && TableSchema.find(client(), ns[0] + "." + ns[1]) != null;
  }

  /**
   * The refusal of a name the store has no table for: Spark's TABLE_OR_VIEW_NOT_FOUND (its
   * condition and SQLSTATE, for code that looks for them) with the store's closest tables
   * (did you mean, chosen as the Python side chooses them) and the ones it has, where Spark's
   * own message would name neither. Thrown from loadTable: a NoSuchTableException would be
   * turned into Spark's generic message; {@link #tableExists} answers false for such names.
   */
  private org.apache.spark.sql.AnalysisException notFound(Identifier ident) {
    List<String> parts = new ArrayList<>();
    parts.add(name);
    parts.addAll(java.util.Arrays.asList(ident.namespace()));
    parts.add(ident.name());
    StringBuilder relation = new StringBuilder();
    for (String p : parts) {
      if (relation.length() > 0) relation.append('.');
      relation.append('`').append(p.replace("`", "``")).append('`');
    }
    List<String> known = new ArrayList<>(TableSchema.list(client()).keySet());
    String[] ns = ident.namespace();
    String reason;
    if (ns.length == 2 && find(known, ns[0] + "." + ns[1]) != null) {
      // db.t.x: db.t exists, x is no metadata table of it
      String table = find(known, ns[0] + "." + ns[1]);
      List<String> close = ClosestNames.closeMatches(ident.name().toLowerCase(java.util.Locale.ROOT),
          TheFlashMetadataTable.KINDS, 3, 0.6);
      List<String> named = new ArrayList<>();
      for (String kind : close) named.add(name + "." + table + "." + kind);
      reason = "table " + table + " has no metadata table " + ident.name()
          + (named.isEmpty() ? "" : "; did you mean " + String.join(" or ", named) + "?") + " (its metadata tables: "
          + String.join(", ", TheFlashMetadataTable.KINDS) + ")";
    } else {
      String wanted = ns.length == 2 && TheFlashMetadataTable.KINDS.contains(ident.name().toLowerCase(
          java.util.Locale.ROOT)) ? ns[0] + "." + ns[1] : String.join(".", parts.subList(1, parts.size()));
      String suffix = wanted.equals(String.join(".", parts.subList(1, parts.size()))) ? "" : "." + ident.name();
      List<String> named = new ArrayList<>();
      for (String t : ClosestNames.tables(wanted, known, 3)) named.add(name + "." + t + suffix);
      List<String> shown = known.subList(0, Math.min(20, known.size()));
      reason = "the theflash store has no table " + wanted
          + (named.isEmpty() ? "" : "; did you mean " + String.join(" or ", named) + "?") + " (its tables: "
          + (shown.isEmpty() ? "none" : String.join(", ", shown) + (known.size() > shown.size() ? ", ..." : "")) + ")";
    }
    Map<String, String> params = new LinkedHashMap<>();
    params.put("relationName", relation.toString());
    params.put("reason", reason);
    return new org.apache.spark.sql.AnalysisException("TABLE_OR_VIEW_NOT_FOUND", "42P01",
        "The table or view <relationName> cannot be found: <reason>.",
        scala.collection.immutable.Map.from(scala.jdk.javaapi.CollectionConverters.asScala(params)),
        scala.Option.<Throwable>empty(), scala.Option.<String>empty());
  }

  /**
   * The refusal of a namespace the store has no database for ({@code SHOW TABLES IN
   * theflash.nope}): Spark's SCHEMA_NOT_FOUND (its condition and SQLSTATE) with the store's
   * closest databases (did you mean, chosen as a misspelt table's database part is) and the ones
   * it has, where Spark's own message would name neither.
   */
  private org.apache.spark.sql.AnalysisException noSuchDatabase(String[] namespace) {
    StringBuilder schema = new StringBuilder("`").append(name.replace("`", "``")).append('`');
    for (String p : namespace) schema.append(".`").append(p.replace("`", "``")).append('`');
    String wanted = String.join(".", namespace);
    List<String> dbs = new ArrayList<>(databases().keySet());
    Map<String, String> byLower = new LinkedHashMap<>();
    for (String db : dbs) byLower.put(db.toLowerCase(java.util.Locale.ROOT), db);
    List<String> named = new ArrayList<>();
    for (String db : ClosestNames.closeMatches(wanted.toLowerCase(java.util.Locale.ROOT), byLower.keySet(), 3, 0.6)) {
      named.add(name + "." + byLower.get(db));
    }
    List<String> shown = dbs.subList(0, Math.min(20, dbs.size()));
    String reason = "the theflash store has no database " + wanted
        + (named.isEmpty() ? "" : "; did you mean " + String.join(" or ", named) + "?") + " (its databases: "
        + (shown.isEmpty() ? "none" : String.join(", ", shown) + (dbs.size() > shown.size() ? ", ..." : "")) + ")";
    Map<String, String> params = new LinkedHashMap<>();
    params.put("schemaName", schema.toString());
    params.put("reason", reason);
    return new org.apache.spark.sql.AnalysisException("SCHEMA_NOT_FOUND", "42704",
        "The schema <schemaName> cannot be found: <reason>.",
        scala.collection.immutable.Map.from(scala.jdk.javaapi.CollectionConverters.asScala(params)),
        scala.Option.<Throwable>empty(), scala.Option.<String>empty());
  }

  /**
   * {@code throw unchecked(e)} throws the checked {@code e} where the Java interface declares
   * only NoSuchTableException: Spark, written in Scala, throws AnalysisException from any
   * catalog method, and so may a catalog written in Java.
   */
  @SuppressWarnings("unchecked")
  private static <E extends Throwable> RuntimeException unchecked(Throwable e) throws E {
    throw (E) e;
  }

  private static String find(List<String> known, String table) {
    for (String t : known) {
      if (t.equalsIgnoreCase(table)) return t;
    }
    return null;
  }

  private Table load(Identifier ident, Long ts, String asOf) throws NoSuchTableException {
    if (ident.namespace().length == 2 && TheFlashMetadataTable.KINDS.contains(ident.name().toLowerCase(
        java.util.Locale.ROOT))) {
      // Iceberg's form: db.t.history is the metadata table "history" of the table db.t
      TableSchema table = TableSchema.find(client(), ident.namespace()[0] + "." + ident.namespace()[1]);
      if (table == null) throw unchecked(notFound(ident));
      if (ts != null || asOf != null) {
        throw new UserErrorException(table.table + "." + ident.name() + " is a metadata table: it has no "
            + "VERSION or TIMESTAMP AS OF (it lists what the store holds now)");
      }
      return TheFlashMetadataTable.load(options(table.table).client(), table.table,
          ident.name().toLowerCase(java.util.Locale.ROOT));
    }
    if (ident.namespace().length != 1) throw unchecked(notFound(ident));
    TableSchema table = TableSchema.find(client(), ident.namespace()[0] + "." + ident.name());
    if (table == null) throw unchecked(notFound(ident));
    ReadOptions options = options(table.table);
    if (ts != null || asOf != null) options = options.at(ts, asOf);
    // a session pin is a read at a past ts too: the table and columns it had then (schema=as_of)
    StructType schema = TheFlashTableProvider.schema(options.pinnedBy(SessionConf.get(ReadOptions.SESSION_SNAPSHOT)));
    return new TheFlashTable(table.table, schema, options, true);
  }

  @Override
  public Table createTable(Identifier ident, StructType schema, Transform[] partitions, Map<String, String> properties) {
    throw ReadOnlyReplica.refuse("CREATE TABLE");
  }

  @Override
  public Table createTable(Identifier ident, TableInfo info) {
    throw ReadOnlyReplica.refuse("CREATE TABLE");
  }

  @Override
  public Table alterTable(Identifier ident, TableChange... changes) {
    throw ReadOnlyReplica.refuse("ALTER TABLE");
  }

  @Override
  public boolean dropTable(Identifier ident) {
    throw ReadOnlyReplica.refuse("DROP TABLE");
  }

  @Override
  public void renameTable(Identifier oldIdent, Identifier newIdent) {
    throw ReadOnlyReplica.refuse("RENAME TABLE");
  }
}
