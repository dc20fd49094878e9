package io.theflash.spark;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.LinkedHashMap;
import java.util.Map;
import org.apache.spark.sql.connector.read.streaming.Offset;

/**
 * A change stream's offset (scan/change_stream.py StreamOffset): every change with commit ts at
 * or below {@code ts} has been read, or with {@code snapshot} the table's rows at {@code ts} are
 * still to read (the stream's first batch). Its JSON is what Spark's checkpoint keeps.
 */
final class TheFlashOffset extends Offset {
  final long ts;
  final boolean snapshot;

  TheFlashOffset(long ts, boolean snapshot) {
    this.ts = ts;
    this.snapshot = snapshot;
  }

  static TheFlashOffset of(JsonNode node) {
    if (node == null || !node.has("ts")) {
      throw new IllegalArgumentException("a theflash stream offset is {\"ts\": <TSO>, \"snapshot\": bool}, not " + node);
    }
    return new TheFlashOffset(node.get("ts").asLong(), node.path("snapshot").asBoolean(false));
  }

  /** Spark hands a restarted query's offsets back as it read them from the checkpoint (SerializedOffset). */
  static TheFlashOffset from(Offset offset) {
    return offset instanceof TheFlashOffset ? (TheFlashOffset) offset : parse(offset.json());
  }

  static TheFlashOffset parse(String json) {
    try {
      return of(ServiceClient.JSON.readTree(json));
    } catch (IOException e) {
      throw new UncheckedIOException("a theflash stream offset that is not JSON: " + json, e);
    }
  }

  Map<String, Object> toMap() {
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("snapshot", snapshot);
    m.put("ts", ts);
    return m;
  }

  @Override
  public String json() {
    return "{\"snapshot\": " + snapshot + ", \"ts\": " + ts + "}";
  }
}
