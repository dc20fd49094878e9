package io.theflash.spark;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import org.apache.spark.sql.types.StructField;
import org.apache.spark.sql.types.StructType;

/**
 * A replicated table's Spark schema, as the service lists it (GET /v1/tables): the visible
 * columns, their TiDB types as column comments, and the readable hidden columns.
 */
public final class TableSchema {
  public final String table;
  private final StructType all; // visible columns, then the hidden readable ones
  private final List<String> hidden;

  private TableSchema(String table, StructType all, List<String> hidden) {
    this.table = table;
    this.all = all;
    this.hidden = hidden;
  }

  static TableSchema of(JsonNode entry) {
    Map<String, String> tidbTypes = new HashMap<>();
    for (JsonNode f : entry.get("fields")) {
      if (f.hasNonNull("tidb_type")) tidbTypes.put(f.get("name").asText(), f.get("tidb_type").asText());
    }
    List<String> hidden = new ArrayList<>();
    for (JsonNode h : entry.path("hidden")) hidden.add(h.asText());
    StructType arrow = ArrowTypes.sparkSchema(ArrowTypes.decodeSchema(entry.get("arrow_schema").asText()));
    StructType all = new StructType();
    for (StructField f : arrow.fields()) {
      String tidb = tidbTypes.get(f.name());
      all = all.add(tidb == null ? f : f.withComment(tidb));
    }
    return new TableSchema(entry.get("table").asText(), all, hidden);
  }

  /** Every replicated table the service lists, by db.table. */
  static Map<String, TableSchema> list(ServiceClient client) {
    Map<String, TableSchema> out = new java.util.LinkedHashMap<>();
    for (JsonNode entry : client.tables()) {
      TableSchema t = of(entry);
      out.put(t.table, t);
    }
    return out;
  }

  /** The table named {@code name} (any case), or null. */
  static TableSchema find(ServiceClient client, String name) {
    for (JsonNode entry : client.tables()) {
      if (entry.get("table").asText().equalsIgnoreCase(name)) return of(entry);
    }
    return null;
  }

  /**
   * The table named {@code name}; else an error naming the store, the closest tables it has (did
   * you mean, chosen as the CLI and the catalog choose them) and the ones it has.
   */
  static TableSchema require(ServiceClient client, String name) {
    List<String> known = new ArrayList<>();
    for (JsonNode entry : client.tables()) {
      if (entry.get("table").asText().equalsIgnoreCase(name)) return of(entry);
      known.add(entry.get("table").asText());
    }
    List<String> close = ClosestNames.tables(name, known, 3);
    List<String> shown = known.subList(0, Math.min(20, known.size()));
    String store = client.store() != null ? "store " + client.store() : "the theflash store";
    throw new UserErrorException(store + " has no table " + name
        + (close.isEmpty() ? "" : "; did you mean " + String.join(" or ", close) + "?") + " (its tables: "
        + (shown.isEmpty() ? "none" : String.join(", ", shown) + (known.size() > shown.size() ? ", ..." : "")) + ")");
  }

  /** The visible columns (all, or those named, in that order) and then the hidden ones asked for. */
  public StructType select(List<String> columns, List<String> hiddenColumns) {
    StructType out = new StructType();
    if (columns.isEmpty()) {
      for (StructField f : all.fields()) {
        if (!hidden.contains(f.name())) out = out.add(f);
      }
    } else {
      List<String> missing = new ArrayList<>();
      for (String c : columns) {
        StructField f = field(c);
        if (f == null || hidden.contains(f.name())) missing.add(c);
        else out = out.add(f);
      }
      if (!missing.isEmpty()) {
        throw new UserErrorException("table " + table + " has no column(s) " + missing);
      }
    }
    for (String h : hiddenColumns) {
      out = out.add(field(h));
    }
    return out;
  }

  private StructField field(String name) {
    for (StructField f : all.fields()) {
      if (f.name().toLowerCase(Locale.ROOT).equals(name.toLowerCase(Locale.ROOT))) return f;
    }
    return null;
  }
}
