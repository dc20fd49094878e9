package io.theflash.spark;

import org.apache.spark.sql.SparkSession;

/**
 * The active Spark session's theflash settings (theflash.server, .token, .store, .snapshot_ts).
 */
final class SessionConf {
  private SessionConf() {}

  static String get(String key) {
    scala.Option<SparkSession> active = SparkSession.getActiveSession();
    if (active.isEmpty()) {
      active = SparkSession.getDefaultSession();
    }
    if (active.isEmpty()) return null;
    return active.get().conf().get(key, null);
  }
}
