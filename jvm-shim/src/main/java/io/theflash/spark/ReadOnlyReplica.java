package io.theflash.spark;

import java.util.Collections;

/**
 * The one sentence every write, DDL statement and streaming read of a theflash table gets: an
 * {@link org.apache.spark.sql.AnalysisException} (condition {@code THEFLASH_READ_ONLY_REPLICA},
 * SQLSTATE 0A000, feature not supported) without a cause, which spark-sql prints as that sentence
 * alone, without the stack it prints for any other exception, and PySpark raises as its
 * {@code AnalysisException}.
 */
public final class ReadOnlyReplica extends org.apache.spark.sql.AnalysisException {
  public static final String MESSAGE =
      "theflash tables are a read-only replica of the upstream TiDB: write to the upstream, and the "
          + "changes arrive here through replication (%s is not supported)";

  public ReadOnlyReplica(String what) {
    super("THEFLASH_READ_ONLY_REPLICA", "0A000", String.format(MESSAGE, what),
        scala.collection.immutable.Map.from(scala.jdk.javaapi.CollectionConverters.asScala(
            Collections.<String, String>emptyMap())),
        scala.Option.<Throwable>empty(), scala.Option.<String>empty());
  }

  /**
   * Throw the refusal from a method that declares no checked exception (a Spark interface
   * written in Scala, where AnalysisException is unchecked, as {@code newWriteBuilder}); the
   * return type lets a caller write {@code throw ReadOnlyReplica.refuse(...)}.
   */
  static RuntimeException refuse(String what) {
    throw ReadOnlyReplica.<RuntimeException>unchecked(new ReadOnlyReplica(what));
  }

  @SuppressWarnings("unchecked")
  private static <E extends Throwable> E unchecked(Throwable t) throws E {
    throw (E) t;
  }
}
