package io.theflash.spark;

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
 * <p>Tables already read at two different ts cannot share one: the query is refused with
 * {@link MixedSnapshotsException}, unless the session conf {@value #MIXED_SNAPSHOTS} is
 * {@code allow}, when each keeps its own ts and a warning says so.
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
  private static final Map<QueryPlanningTracker, Map<String, Long>> QUERIES =
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
    Map<String, Long> query = tracker.isDefined()
        ? QUERIES.computeIfAbsent(tracker.get(), k -> Collections.synchronizedMap(new LinkedHashMap<>()))
        : new LinkedHashMap<>();
    for (Map.Entry<String, Group> entry : found.groups.entrySet()) {
      Group group = entry.getValue();
      if (group.tables.isEmpty()) continue; // only cached scans: nothing left to plan
      long ts = query.computeIfAbsent(entry.getKey(), k -> queryTs(group));
      if (!tracker.isDefined()) continue;
      for (TheFlashTable table : group.tables) {
        if (table.querySnapshot().read() == null) table.querySnapshot().plan(tracker.get(), ts);
      }
    }
    return plan;
  }

  /**
   * The query's ts for a group: the one its tables were already read at (or its cached scans
   * planned at), else a new one from the service. Two of those: refused, unless allowed.
   */
  private static long queryTs(Group group) {
    Map<Long, List<String>> read = new TreeMap<>();
    for (TheFlashTable t : group.tables) {
      Long ts = t.querySnapshot().read();
      if (ts != null) read.computeIfAbsent(ts, k -> new ArrayList<>()).add(t.name());
    }
    for (TheFlashScan s : group.scans) {
      Long ts = s.querySnapshotTs();
      if (ts != null) read.computeIfAbsent(ts, k -> new ArrayList<>()).add(s.tableName() + " (cached)");
    }
    if (read.size() > 1) {
      String apart = MixedSnapshotsException.describe(read);
      if (!"allow".equalsIgnoreCase(String.valueOf(SessionConf.get(MIXED_SNAPSHOTS)).trim())) {
        throw new MixedSnapshotsException(apart);
      }
      LOG.warn("this query reads theflash tables already read at different snapshots ({}), as {}=allow lets it: "
          + "each keeps its own ts", apart, MIXED_SNAPSHOTS);
    }
    if (!read.isEmpty()) return read.keySet().iterator().next();
    List<String> names = new ArrayList<>();
    for (TheFlashTable t : group.tables) {
      if (!names.contains(t.readOptions().table)) names.add(t.readOptions().table);
    }
    ReadOptions options = group.tables.get(0).readOptions();
    return options.client().querySnapshot(options.snapshotRequest(names)).get("ts").asLong();
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
