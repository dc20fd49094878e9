package io.theflash.spark;

import java.util.ArrayList;
import java.util.List;
import org.apache.spark.sql.connector.expressions.filter.Predicate;
import org.apache.spark.sql.connector.read.Scan;
import org.apache.spark.sql.connector.read.SupportsPushDownLimit;
import org.apache.spark.sql.connector.read.SupportsPushDownRequiredColumns;
import org.apache.spark.sql.connector.read.SupportsPushDownV2Filters;
import org.apache.spark.sql.types.StructType;

/**
 * What one scan of a theflash table asks for: the columns Spark needs, the predicates the
 * service evaluates exactly (reported as handled; the rest stay with Spark), and a limit.
 * One builder per scan, so pushed filters belong to that scan only.
 */
final class TheFlashScanBuilder
    implements SupportsPushDownRequiredColumns, SupportsPushDownV2Filters, SupportsPushDownLimit {
  private final String name;
  private final ReadOptions options;
  private final StructType tableSchema;
  private StructType readSchema;
  private final List<Predicate> pushed = new ArrayList<>();
  private final List<Object> filter = new ArrayList<>();
  private int limit = -1;
  private final TableSnapshot snapshot;

  /** {@code snapshot}: the table's snapshot, for a read without a ts of its own (else null). */
  TheFlashScanBuilder(String name, ReadOptions options, StructType tableSchema, TableSnapshot snapshot) {
    this.snapshot = snapshot;
    this.name = name;
    this.options = options;
    this.tableSchema = tableSchema;
    this.readSchema = tableSchema;
  }

  @Override
  public void pruneColumns(StructType required) {
    this.readSchema = required;
  }

  @Override
  public Predicate[] pushPredicates(Predicate[] predicates) {
    if (options.changeRead() || options.changeStream()) {
      return predicates; // a change read takes no filter: Spark filters the changes
    }
    FilterTranslation translation = new FilterTranslation(tableSchema);
    List<Predicate> remaining = new ArrayList<>();
    for (Predicate p : predicates) {
      Object conjunct = translation.translate(p);
      if (conjunct == null) {
        remaining.add(p);
      } else {
        pushed.add(p);
        filter.add(conjunct);
      }
    }
    return remaining.toArray(new Predicate[0]);
  }

  @Override
  public Predicate[] pushedPredicates() {
    return pushed.toArray(new Predicate[0]);
  }

  @Override
  public boolean pushLimit(int limit) {
    if (options.changeRead() || options.changeStream()) return false;
    this.limit = limit;
    return true;
  }

  @Override
  public boolean isPartiallyPushed() {
    return true; // each stream stops after `limit` rows; Spark still takes the first `limit` of them all
  }

  @Override
  public Scan build() {
    // built while the optimizer plans a query: the ts QuerySnapshotRule planned for it, if any
    return new TheFlashScan(name, options, readSchema, new ArrayList<>(filter), new ArrayList<>(pushed), limit,
        snapshot, snapshot == null ? null : snapshot.forScan());
  }
}
