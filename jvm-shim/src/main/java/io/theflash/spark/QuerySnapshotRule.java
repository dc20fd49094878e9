package io.theflash.spark;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.ArrayList;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.WeakHashMap;
import org.apache.spark.sql.catalyst.QueryPlanningTracker;
import org.apache.spark.sql.catalyst.plans.QueryPlan;
import org.apache.spark.sql.catalyst.plans.logical.LogicalPlan;
import org.apache.spark.sql.catalyst.rules.Rule;
import org.apache.spark.sql.connector.catalog.Table;
import org.apache.spark.sql.connector.read.Scan;
import org.apache.spark.sql.execution.SparkPlan;
import org.apache.spark.sql.execution.columnar.InMemoryRelation;
import org.apache.spark.sql.execution.datasources.v2.BatchScanExec;
import org.apache.spark.sql.execution.datasources.v2.DataSourceV2Relation;
import org.apache.spark.sql.execution.datasources.v2.DataSourceV2ScanRelation;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One snapshot ts per Spark query. For each query the optimizer plans, this rule finds every
 * theflash table read without a ts of its own (no snapshot_ts, as_of, time travel or session
 * pin), in the plan, its subqueries and the cached plans it reads, and plans them all at one ts:
 *
 * <ul>
 *   <li>the ts at which some of them were already read (a DataFrame reads one snapshot, and lends
 *       it to the tables joined to it), or at which a cached DataFrame the query reads was planned
 *       (cached data is one snapshot);
 *   <li>else a ts it asks the service for once ({@code POST /v1/snapshots}: fresh from the
 *       upstream TSO, the store's resolved ts, or bounded by max_staleness).
 * </ul>
 *
 * <p>Tables already read at different ts: the query reads every table at the newest of those ts
 * when no table read at an older one changed in between, for a table nobody wrote since its read
 * reads the same at a later ts (the usual case: each view of a database counted, then queried).
 * The service says which changed, in the same one request ({@code POST /v1/snapshots} with the
 * tables already read, each with its ts). A DataFrame read before keeps its own ts for its own
 * later queries; only this query reads it at the newer one. A table that changed in between
 * cannot be read at one ts with the others: the query is refused with {@link
 * MixedSnapshotsException}, naming it and its first change, unless the session conf {@value
 * #MIXED_SNAPSHOTS} is {@code allow}, when each keeps its own ts and a warning says so.
 *
 * <p>The rule changes no plan node: it plans each table's {@link TableSnapshot} for this query,
 * and the table's scans, built later in the same optimizer run, read at that ts. Planning is not
 * reading: a table's ts is fixed when a scan of it starts reading, so creating a view of a
 * DataFrame, caching it or explaining it fixes nothing, and a plan that only names a query
 * (CREATE VIEW's, CACHE TABLE's) is not looked into.
 *
 * <p>A query is one {@link QueryPlanningTracker}: Spark optimizes a query's subqueries in
 * nested runs of the optimizer before the outer plan, all under the query's tracker, so the
 * ts is kept per tracker and every run of the query uses it.
 */
final class QuerySnapshotRule extends Rule<LogicalPlan> {
  /** The session conf saying what a query over tables already read at different ts does. */
  static final String MIXED_SNAPSHOTS = "theflash.mixed_snapshots";

  private static final Logger LOG = LoggerFactory.getLogger(QuerySnapshotRule.class);
  /**
   * The analyzed plan of each query being planned in this JVM: the optimizer plans a query's
   * subqueries in nested runs before the outer plan, and each run must see every table of the
   * whole query to choose its ts (a table read before, in another subquery, lends it).
   */
  private static final Map<QueryPlanningTracker, LogicalPlan> ANALYZED =
      Collections.synchronizedMap(new WeakHashMap<>());
  /** The ts of each query planned in this JVM, per group of tables (service, store, snapshot mode). */
  private static final Map<QueryPlanningTracker, Map<String, QueryTs>> QUERIES =
      Collections.synchronizedMap(new WeakHashMap<>());

  @Override
  public String ruleName() {
    return "theflash.QuerySnapshotRule";
  }

  /**
   * Keeps the analyzed plan of the query this thread is planning (a check rule: Spark runs it on
   * every analyzed plan, under the query's tracker). Nothing is asked of the service here: a
   * DataFrame is analyzed as it is made, and most are never read.
   */
  static void noteAnalyzed(LogicalPlan analyzed) {
    scala.Option<QueryPlanningTracker> tracker = QueryPlanningTracker.get();
    if (tracker.isDefined()) ANALYZED.put(tracker.get(), analyzed);
  }

  @Override
  public LogicalPlan apply(LogicalPlan plan) {
    Found found = new Found();
    scala.Option<QueryPlanningTracker> tracker = QueryPlanningTracker.get();
    Set<QueryPlan<?>> seen = Collections.newSetFromMap(new IdentityHashMap<>());
    LogicalPlan whole = tracker.isDefined() ? ANALYZED.get(tracker.get()) : null;
    if (whole != null) collect(whole, found, seen);
    collect(plan, found, seen);
    if (found.groups.isEmpty()) return plan;
    Map<String, QueryTs> query = tracker.isDefined()
        ? QUERIES.computeIfAbsent(tracker.get(), k -> Collections.synchronizedMap(new LinkedHashMap<>()))
        : new LinkedHashMap<>();
    for (Map.Entry<String, Group> entry : found.groups.entrySet()) {
      Group group = entry.getValue();
      if (group.tables.isEmpty()) continue; // only cached scans: nothing left to plan
      QueryTs q = query.computeIfAbsent(entry.getKey(), k -> queryTs(group));
      if (!tracker.isDefined()) continue;
      for (TheFlashTable table : group.tables) {
        TableSnapshot snapshot = table.querySnapshot();
        Long read = snapshot.read();
        if (read == null) {
          snapshot.plan(tracker.get(), q.ts);
        } else if (q.everyTable && read != q.ts) {
          snapshot.sameThrough(q.ts); // unchanged since its read: its rows at q.ts are the ones it read
          snapshot.plan(tracker.get(), q.ts);
        }
      }
    }
    return plan;
  }

  /** A group's ts in one query, and whether its tables read before at an older ts read at it too. */
  private static final class QueryTs {
    final long ts;
    final boolean everyTable;

    QueryTs(long ts, boolean everyTable) {
      this.ts = ts;
      this.everyTable = everyTable;
    }
  }

  /**
   * The query's ts for a group: the one its tables were already read at (or its cached scans
   * planned at), else a new one from the service. Several of those: the newest, if the service
   * finds that none of the tables read at an older one changed since; else refused, unless allowed.
   */
  private static QueryTs queryTs(Group group) {
    Map<Long, List<String>> read = new TreeMap<>();
    List<Map<String, Object>> readByTable = new ArrayList<>();
    List<String> names = new ArrayList<>();
    for (TheFlashTable t : group.tables) {
      if (!names.contains(t.readOptions().table)) names.add(t.readOptions().table);
      Long ts = t.querySnapshot().read();
      if (ts == null) continue;
      read.computeIfAbsent(ts, k -> new ArrayList<>()).add(t.name());
      readByTable.add(readAt(t.readOptions().table, ts));
    }
    for (TheFlashScan s : group.scans) {
      Long ts = s.querySnapshotTs();
      if (ts == null) continue;
      read.computeIfAbsent(ts, k -> new ArrayList<>()).add(s.tableName() + " (cached)");
      readByTable.add(readAt(s.readOptions().table, ts));
      if (!names.contains(s.readOptions().table)) names.add(s.readOptions().table);
    }
    ReadOptions options = group.tables.get(0).readOptions();
    if (read.size() > 1) {
      Map<String, Object> request = options.snapshotRequest(names);
      request.put("read", readByTable);
      JsonNode answer = options.client().querySnapshot(request);
      JsonNode changed = answer.get("changed");
      if (changed == null || !changed.isArray()) {
        throw new IllegalStateException("the theflash service at " + options.server + " does not say whether the "
            + "tables changed since they were read (POST /v1/snapshots with read): upgrade it");
      }
      if (changed.size() == 0) return new QueryTs(answer.get("ts").asLong(), true);
      String apart = MixedSnapshotsException.describe(read);
      String changes = MixedSnapshotsException.describeChanges(changed, answer.get("ts").asLong());
      if (!"allow".equalsIgnoreCase(String.valueOf(SessionConf.get(MIXED_SNAPSHOTS)).trim())) {
        throw new MixedSnapshotsException(apart, changes);
      }
      LOG.warn("this query reads theflash tables already read at different snapshots ({}), and {}; as {}=allow "
          + "lets it, each keeps its own ts", apart, changes, MIXED_SNAPSHOTS);
    }
    if (!read.isEmpty()) return new QueryTs(read.keySet().iterator().next(), false);
    return new QueryTs(options.client().querySnapshot(options.snapshotRequest(names)).get("ts").asLong(), false);
  }

  private static Map<String, Object> readAt(String table, long ts) {
    Map<String, Object> r = new LinkedHashMap<>();
    r.put("table", table);
    r.put("ts", ts);
    return r;
  }

  /** Tables of one service and store, read the same way, share a ts. */
  private static String groupKey(ReadOptions options) {
    String bound = options.staleness();
    return options.server + "\u0000" + options.store + "\u0000" + options.snapshotMode() + "\u0000"
        + (bound == null ? "" : bound);
  }

  /** The theflash tables a query reads without a ts of their own, and the scans already planned, by group. */
  private static final class Found {
    final Map<String, Group> groups = new LinkedHashMap<>();

    Group group(ReadOptions options) {
      return groups.computeIfAbsent(groupKey(options), k -> new Group());
    }
  }

  private static final class Group {
    final List<TheFlashTable> tables = new ArrayList<>();
    final List<TheFlashScan> scans = new ArrayList<>();
  }

  /**
   * Every theflash table and planned scan the query reads: in the plan, its subqueries, and the
   * physical plans of the cached data it reads. A logical plan's other inner plans (the query
   * CREATE VIEW or CACHE TABLE names) are not read by this query: they are planned when read.
   */
  private static void collect(QueryPlan<?> plan, Found found, Set<QueryPlan<?>> seen) {
    if (!seen.add(plan)) return;
    Table table = null;
    Scan scan = null;
    if (plan instanceof DataSourceV2Relation) {
      table = ((DataSourceV2Relation) plan).table();
    } else if (plan instanceof DataSourceV2ScanRelation) {
      scan = ((DataSourceV2ScanRelation) plan).scan();
    } else if (plan instanceof BatchScanExec) {
      scan = ((BatchScanExec) plan).scan();
    }
    if (table instanceof TheFlashTable && ((TheFlashTable) table).querySnapshot() != null) {
      TheFlashTable t = (TheFlashTable) table;
      List<TheFlashTable> tables = found.group(t.readOptions()).tables;
      if (!tables.contains(t)) tables.add(t);
    }
    if (scan instanceof TheFlashScan && ((TheFlashScan) scan).querySnapshotTs() != null) {
      found.group(((TheFlashScan) scan).readOptions()).scans.add((TheFlashScan) scan);
    }
    for (scala.collection.Iterator<?> it = plan.children().iterator(); it.hasNext(); ) {
      collect((QueryPlan<?>) it.next(), found, seen);
    }
    for (scala.collection.Iterator<?> it = plan.subqueries().iterator(); it.hasNext(); ) {
      collect((QueryPlan<?>) it.next(), found, seen);
    }
    if (plan instanceof InMemoryRelation || plan instanceof SparkPlan) {
      for (scala.collection.Iterator<?> it = plan.innerChildren().iterator(); it.hasNext(); ) {
        Object inner = it.next();
        if (inner instanceof QueryPlan) collect((QueryPlan<?>) inner, found, seen);
      }
    }
  }
}
