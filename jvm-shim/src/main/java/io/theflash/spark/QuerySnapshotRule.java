package io.theflash.spark;

import java.util.ArrayList;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.WeakHashMap;
import org.apache.spark.sql.catalyst.QueryPlanningTracker;
import org.apache.spark.sql.catalyst.plans.logical.LogicalPlan;
import org.apache.spark.sql.catalyst.rules.Rule;
import org.apache.spark.sql.connector.catalog.Table;
import org.apache.spark.sql.execution.datasources.v2.DataSourceV2Relation;
import org.apache.spark.sql.execution.datasources.v2.DataSourceV2ScanRelation;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One snapshot ts per Spark query. For each query the optimizer plans, this rule finds every
 * theflash table read without a ts of its own (no snapshot_ts, as_of, time travel or session
 * pin), in the plan and in its subqueries, and settles them all on one ts that it asks the
 * service for once ({@code POST /v1/snapshots}: fresh from the upstream TSO, the store's
 * resolved ts, or bounded by max_staleness). The rule changes no plan node: it settles the
 * tables' {@link TableSnapshot}s before any scan of them opens a read session, and the scans
 * read at the settled ts.
 *
 * <p>A query is one {@link QueryPlanningTracker}: Spark optimizes a query's subqueries in
 * nested runs of the optimizer before the outer plan, all under the query's tracker, so the
 * ts is kept per tracker and every run of the query uses it.
 *
 * <p>A table settles once: later actions on the same DataFrame (or on DataFrames made from it)
 * read its settled ts, as before. A query over a DataFrame already read takes that DataFrame's
 * ts for its other tables; two DataFrames already read at different ts keep theirs (a warning
 * says so: load them again, or pin theflash.snapshot_ts, to read them at one ts).
 */
final class QuerySnapshotRule extends Rule<LogicalPlan> {
  private static final Logger LOG = LoggerFactory.getLogger(QuerySnapshotRule.class);
  /** The ts of each query planned in this JVM, per group of tables (service, store, snapshot mode). */
  private static final Map<QueryPlanningTracker, Map<String, Long>> QUERIES =
      Collections.synchronizedMap(new WeakHashMap<>());

  @Override
  public String ruleName() {
    return "theflash.QuerySnapshotRule";
  }

  @Override
  public LogicalPlan apply(LogicalPlan plan) {
    Map<TheFlashTable, Boolean> found = new IdentityHashMap<>();
    collect(plan, found, Collections.newSetFromMap(new IdentityHashMap<>()));
    Map<String, List<TheFlashTable>> groups = new LinkedHashMap<>();
    for (TheFlashTable table : found.keySet()) {
      TableSnapshot snapshot = table.querySnapshot();
      if (snapshot == null) continue;
      groups.computeIfAbsent(groupKey(table.readOptions()), k -> new ArrayList<>()).add(table);
    }
    if (groups.isEmpty()) return plan;
    scala.Option<QueryPlanningTracker> tracker = QueryPlanningTracker.get();
    Map<String, Long> query = tracker.isDefined()
        ? QUERIES.computeIfAbsent(tracker.get(), k -> Collections.synchronizedMap(new LinkedHashMap<>()))
        : new LinkedHashMap<>();
    for (Map.Entry<String, List<TheFlashTable>> group : groups.entrySet()) {
      settle(group.getValue(), query.computeIfAbsent(group.getKey(), k -> queryTs(group.getValue())));
    }
    return plan;
  }

  /** The query's ts for a group: the one its tables already read at, else a new one from the service. */
  private static long queryTs(List<TheFlashTable> tables) {
    Set<Long> settled = new LinkedHashSet<>();
    for (TheFlashTable t : tables) {
      Long ts = t.querySnapshot().ts();
      if (ts != null) settled.add(ts);
    }
    if (!settled.isEmpty()) return settled.iterator().next();
    Set<String> names = new LinkedHashSet<>();
    for (TheFlashTable t : tables) names.add(t.readOptions().table);
    ReadOptions options = tables.get(0).readOptions();
    return options.client().querySnapshot(options.snapshotRequest(new ArrayList<>(names))).get("ts").asLong();
  }

  private static void settle(List<TheFlashTable> tables, long ts) {
    List<String> apart = new ArrayList<>();
    for (TheFlashTable t : tables) {
      long settled = t.querySnapshot().settle(ts);
      if (settled != ts) apart.add(t.name() + " at " + settled);
    }
    if (!apart.isEmpty()) {
      LOG.warn("this query reads its theflash tables at snapshot_ts={}, except DataFrames already read at another "
          + "snapshot, which keep theirs ({}): a DataFrame reads one snapshot; load them again, or set the session "
          + "conf theflash.snapshot_ts, to read every table at one ts", ts, String.join(", ", apart));
    }
  }

  /** Tables of one service and store, read the same way, share a ts. */
  private static String groupKey(ReadOptions options) {
    String bound = options.staleness();
    return options.server + "\u0000" + options.store + "\u0000" + options.snapshotMode() + "\u0000"
        + (bound == null ? "" : bound);
  }

  /** Every theflash table of the plan, of its subqueries and of its inner plans. */
  private static void collect(LogicalPlan plan, Map<TheFlashTable, Boolean> found, Set<LogicalPlan> seen) {
    if (!seen.add(plan)) return;
    Table table = null;
    if (plan instanceof DataSourceV2Relation) {
      table = ((DataSourceV2Relation) plan).table();
    } else if (plan instanceof DataSourceV2ScanRelation) {
      table = ((DataSourceV2ScanRelation) plan).relation().table();
    }
    if (table instanceof TheFlashTable) found.put((TheFlashTable) table, Boolean.TRUE);
    scala.collection.Iterator<LogicalPlan> children = plan.children().iterator();
    while (children.hasNext()) collect(children.next(), found, seen);
    scala.collection.Iterator<LogicalPlan> subqueries = plan.subqueries().iterator();
    while (subqueries.hasNext()) collect(subqueries.next(), found, seen);
    scala.collection.Iterator<org.apache.spark.sql.catalyst.plans.QueryPlan<?>> inner = plan.innerChildren().iterator();
    while (inner.hasNext()) {
      Object child = inner.next();
      if (child instanceof LogicalPlan) collect((LogicalPlan) child, found, seen);
    }
  }
}
