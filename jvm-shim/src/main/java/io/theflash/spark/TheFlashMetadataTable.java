package io.theflash.spark;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.EnumSet;
import java.util.List;
import java.util.Set;
import org.apache.spark.sql.catalyst.InternalRow;
import org.apache.spark.sql.catalyst.expressions.GenericInternalRow;
import org.apache.spark.sql.connector.catalog.SupportsRead;
import org.apache.spark.sql.connector.catalog.TableCapability;
import org.apache.spark.sql.connector.read.ScanBuilder;
import org.apache.spark.sql.types.DataType;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.StructType;
import org.apache.spark.sql.util.CaseInsensitiveStringMap;
import org.apache.spark.unsafe.types.UTF8String;

/**
 * A metadata table of a replicated table, Iceberg's way: {@code theflash.db.t.history} (the
 * readable ts range), {@code .schemas} (schema versions: ts, DDL), {@code .regions} (resolved ts,
 * lag) and {@code .parts} (rows, bytes, delete marks). Its rows are the service's answer to
 * {@code GET /v1/tables/{db.t}/{kind}} when the table is loaded: small, read in one partition.
 */
final class TheFlashMetadataTable implements SupportsRead {
  static final List<String> KINDS = Collections.unmodifiableList(Arrays.asList("history", "schemas", "regions", "parts"));

  private final String name;
  private final StructType schema;
  private final InternalRow[] rows;

  private TheFlashMetadataTable(String name, StructType schema, InternalRow[] rows) {
    this.name = name;
    this.schema = schema;
    this.rows = rows;
  }

  /** The metadata table {@code kind} of {@code table} (db.t), as the service answers it now. */
  static TheFlashMetadataTable load(ServiceClient client, String table, String kind) {
    JsonNode answer = client.tableMetadata(table, kind);
    StructType schema = new StructType();
    List<String> names = new ArrayList<>();
    List<DataType> types = new ArrayList<>();
    for (JsonNode c : answer.get("columns")) {
      DataType type = sparkType(c.get("type").asText());
      names.add(c.get("name").asText());
      types.add(type);
      schema = schema.add(c.get("name").asText(), type, true);
    }
    List<InternalRow> rows = new ArrayList<>();
    for (JsonNode r : answer.get("rows")) {
      Object[] values = new Object[names.size()];
      for (int i = 0; i < values.length; i++) values[i] = value(r.get(names.get(i)), types.get(i));
      rows.add(new GenericInternalRow(values));
    }
    return new TheFlashMetadataTable(answer.get("table").asText() + "." + kind, schema, rows.toArray(new InternalRow[0]));
  }

  private static DataType sparkType(String arrowType) {
    switch (arrowType) {
      case "int64":
        return DataTypes.LongType;
      case "bool":
        return DataTypes.BooleanType;
      default:
        return DataTypes.StringType;
    }
  }

  private static Object value(JsonNode v, DataType type) {
    if (v == null || v.isNull()) return null;
    if (type == DataTypes.LongType) return v.asLong();
    if (type == DataTypes.BooleanType) return v.asBoolean();
    return UTF8String.fromString(v.asText());
  }

  @Override
  public String name() {
    return name;
  }

  @Override
  @SuppressWarnings("deprecation")
  public StructType schema() {
    return schema;
  }

  @Override
  public Set<TableCapability> capabilities() {
    return EnumSet.of(TableCapability.BATCH_READ);
  }

  @Override
  public ScanBuilder newScanBuilder(CaseInsensitiveStringMap options) {
    return () -> new MetadataScan(name, schema, rows);
  }
}
