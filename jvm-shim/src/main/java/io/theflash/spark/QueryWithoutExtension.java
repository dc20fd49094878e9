package io.theflash.spark;

import java.util.concurrent.atomic.AtomicBoolean;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A scan of a table without a ts that no {@link QuerySnapshotRule} settled: the session runs
 * without the connector's extension, so each table of a query settles its own ts. Said once
 * per JVM, with the setting that fixes it.
 */
final class QueryWithoutExtension {
  private static final Logger LOG = LoggerFactory.getLogger(QueryWithoutExtension.class);
  private static final AtomicBoolean WARNED = new AtomicBoolean();

  private QueryWithoutExtension() {}

  static void warnOnce(String table) {
    if (WARNED.compareAndSet(false, true)) {
      LOG.warn("theflash table {} takes a snapshot ts of its own: this session runs without the connector's "
          + "extension, so the tables of one query may read at different ts. Set spark.sql.extensions="
          + "io.theflash.spark.TheFlashExtensions (theflash_session() does) for one ts per query", table);
    }
  }
}
