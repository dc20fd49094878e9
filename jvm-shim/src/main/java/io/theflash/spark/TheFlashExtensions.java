package io.theflash.spark;

import org.apache.spark.sql.SparkSessionExtensions;
import scala.Function1;
import scala.runtime.BoxedUnit;

/**
 * The connector's session extension: {@code spark.sql.extensions = io.theflash.spark.TheFlashExtensions}
 * ({@code theflash_session()} sets it). It adds {@link QuerySnapshotRule} to the optimizer, so
 * every theflash table one Spark query reads without a ts of its own reads at one snapshot ts,
 * taken once as the query is planned: joins across tables, subqueries, CTEs, UNIONs, views, the
 * catalog and {@code format("theflash")} alike; a check rule shows it each query's whole analyzed
 * plan. Without it each table settles its own ts.
 */
public final class TheFlashExtensions implements Function1<SparkSessionExtensions, BoxedUnit> {
  @Override
  public BoxedUnit apply(SparkSessionExtensions extensions) {
    extensions.injectCheckRule(session -> analyzed -> {
      QuerySnapshotRule.noteAnalyzed(analyzed);
      return BoxedUnit.UNIT;
    });
    extensions.injectOptimizerRule(session -> new QuerySnapshotRule());
    return BoxedUnit.UNIT;
  }
}
