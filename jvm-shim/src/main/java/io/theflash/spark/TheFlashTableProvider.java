package io.theflash.spark;

import java.util.Map;
import org.apache.spark.sql.SQLContext;
import org.apache.spark.sql.SaveMode;
import org.apache.spark.sql.connector.catalog.Table;
import org.apache.spark.sql.connector.catalog.TableProvider;
import org.apache.spark.sql.connector.expressions.Transform;
import org.apache.spark.sql.sources.BaseRelation;
import org.apache.spark.sql.sources.CreatableRelationProvider;
import org.apache.spark.sql.sources.DataSourceRegister;
import org.apache.spark.sql.sources.StreamSourceProvider;
import org.apache.spark.sql.types.StructType;
import org.apache.spark.sql.util.CaseInsensitiveStringMap;

/**
 * {@code spark.read.format("theflash").option("server", "http://127.0.0.1:8816").load("bank.accounts")}:
 * the table's schema comes from the service (GET /v1/tables), its rows from a read session.
 */
public final class TheFlashTableProvider
    implements TableProvider, DataSourceRegister, CreatableRelationProvider, StreamSourceProvider {
  @Override
  public String shortName() {
    return "theflash";
  }

  static ReadOptions options(Map<String, String> properties) {
    return ReadOptions.parse(properties);
  }

  @Override
  public StructType inferSchema(CaseInsensitiveStringMap properties) {
    return schema(options(properties));
  }

  static StructType schema(ReadOptions given) {
    ReadOptions options = given.pinnedBy(SessionConf.get(ReadOptions.SESSION_SNAPSHOT));
    ServiceClient client = options.client();
    if (options.changeStream()) {
      return changeSchema(TableSchema.require(client, options.table), options.columns);
    }
    if (options.schemaAsOf()) {
      // the table as it was at ts: the session knows that schema
      java.util.List<String> named = null;  // the columns/hidden options, as the session returns them
      if (!options.columns.isEmpty()) {
        named = new java.util.ArrayList<>(options.columns);
        named.addAll(options.hidden);
      } else if (!options.hidden.isEmpty()) {
        // every column the table had at ts, then the hidden ones: ask for the columns first
        StructType all = schema(options.withoutHidden());
        named = new java.util.ArrayList<>(java.util.Arrays.asList(all.fieldNames()));
        named.addAll(options.hidden);
      }
      com.fasterxml.jackson.databind.JsonNode opened = client.openSession(options.request(named, null));
      try {
        return ArrowTypes.sparkSchema(ArrowTypes.decodeSchema(opened.get("arrow_schema").asText()));
      } finally {
        client.releaseSession(opened.get("id").asText());
      }
    }
    return TableSchema.require(client, options.table).select(options.columns, options.hidden);
  }

  /**
   * A change stream's schema (store/changes.py change_schema): the table's columns (all, or those
   * named), then _change_type, _commit_ts, _commit_timestamp and the handle _tidb_rowid.
   */
  static StructType changeSchema(TableSchema table, java.util.List<String> columns) {
    StructType base = table.select(columns, java.util.Collections.<String>emptyList());
    StructType rowid = table.select(java.util.Collections.<String>emptyList(), java.util.Arrays.asList("_tidb_rowid"));
    return base
        .add("_change_type", org.apache.spark.sql.types.DataTypes.StringType, false)
        .add("_commit_ts", org.apache.spark.sql.types.DataTypes.LongType, false)
        .add("_commit_timestamp", org.apache.spark.sql.types.DataTypes.TimestampType, false)
        .add(rowid.fields()[rowid.fields().length - 1]);
  }

  /** A user's {@code .schema("id BIGINT, balance BIGINT")} selects those columns, as in the Python source. */
  @Override
  public boolean supportsExternalMetadata() {
    return true;
  }

  @Override
  public Table getTable(StructType schema, Transform[] partitioning, Map<String, String> properties) {
    ReadOptions options = options(properties);
    StructType table = schema(options);
    StructType chosen = new StructType();
    for (org.apache.spark.sql.types.StructField f : schema.fields()) {
      org.apache.spark.sql.types.StructField known = null;
      for (org.apache.spark.sql.types.StructField t : table.fields()) {
        if (t.name().equalsIgnoreCase(f.name())) known = t;
      }
      if (known == null) {
        throw new UserErrorException("table " + options.table + " has no column " + f.name() + " (columns: "
            + String.join(", ", table.fieldNames()) + ")");
      }
      if (!known.dataType().equals(f.dataType())) {
        throw new UserErrorException("column " + known.name() + " of " + options.table + " is "
            + known.dataType().sql() + ", not " + f.dataType().sql() + ": give its type in .schema(...)");
      }
      chosen = chosen.add(known);
    }
    return new TheFlashTable(options.table, chosen, options, false);
  }

  /** {@code df.write.format("theflash")}: refused. */
  @Override
  public BaseRelation createRelation(SQLContext sqlContext, SaveMode mode, scala.collection.immutable.Map<String, String> parameters,
      org.apache.spark.sql.Dataset<org.apache.spark.sql.Row> data) {
    throw ReadOnlyReplica.refuse("writing a DataFrame");
  }

  /**
   * {@code spark.readStream.format("theflash")}: Spark asks a {@code StreamSourceProvider} for its
   * schema as it loads any stream, even one it then reads through the table's
   * {@code MicroBatchStream}: with starting_ts, the change stream's schema; without it (the
   * table then declares no micro-batch reads and Spark falls back here), the read is told to
   * name it.
   */
  @Override
  public scala.Tuple2<String, StructType> sourceSchema(SQLContext sqlContext, scala.Option<StructType> schema,
      String providerName, scala.collection.immutable.Map<String, String> parameters) {
    ReadOptions options = options(scala.jdk.javaapi.CollectionConverters.asJava(parameters));
    if (!options.changeStream()) {
      throw new UserErrorException(TheFlashMicroBatchStream.NEEDS_START);
    }
    return new scala.Tuple2<>(shortName(), schema(options));
  }

  @Override
  public org.apache.spark.sql.execution.streaming.Source createSource(SQLContext sqlContext, String metadataPath,
      scala.Option<StructType> schema, String providerName, scala.collection.immutable.Map<String, String> parameters) {
    throw new UserErrorException(TheFlashMicroBatchStream.NEEDS_START);
  }
}
