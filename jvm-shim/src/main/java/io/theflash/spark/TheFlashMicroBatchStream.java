package io.theflash.spark;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.apache.spark.sql.connector.read.InputPartition;
import org.apache.spark.sql.connector.read.PartitionReaderFactory;
import org.apache.spark.sql.connector.read.streaming.MicroBatchStream;
import org.apache.spark.sql.connector.read.streaming.Offset;
import org.apache.spark.sql.connector.read.streaming.ReadLimit;
import org.apache.spark.sql.connector.read.streaming.ReadMaxRows;
import org.apache.spark.sql.connector.read.streaming.ReportsSourceMetrics;
import org.apache.spark.sql.connector.read.streaming.SupportsAdmissionControl;
import org.apache.spark.sql.types.StructType;

/**
 * {@code spark.readStream.format("theflash").option("starting_ts", "latest").load("db.t")}: a
 * stream of one table's changes. Offsets, admission control and the read lease at the last
 * committed offset are the service's ({@code POST /v1/change-streams/offset} and
 * {@code .../commit}, scan/change_stream.py); each micro-batch is one read session (the rows at
 * the starting ts as inserts, then change reads (a, b]), one Spark partition per stream.
 *
 * <p>The stream's id is a digest of its checkpoint location: a query restarted on the same
 * checkpoint is the same stream, so it adopts the lease its previous run held (within
 * lease_ttl), and each commit releases the stream's older leases.
 */
final class TheFlashMicroBatchStream implements MicroBatchStream, SupportsAdmissionControl, ReportsSourceMetrics {
  /** What a streaming read that names no starting_ts (or reads a catalog table) is told. */
  static final String NEEDS_START = "a streaming read of a theflash table streams its changes: use "
      + "spark.readStream.format(\"theflash\").option(\"starting_ts\", \"latest\") (or earliest, or a TSO), so its "
      + "schema is a change stream's: the table's columns, then _change_type, _commit_ts, _commit_timestamp, "
      + "_tidb_rowid";

  static final List<String> STREAM_OPTIONS = Arrays.asList(
      "starting_ts", "max_rows_per_trigger", "lease_ttl", "region_wait_timeout");

  private final String name;
  private final ReadOptions options;
  private final StructType schema;
  private final Map<String, String> streamOptions = new LinkedHashMap<>();
  private final Long maxRows;
  private volatile TheFlashOffset latest;
  private volatile double lagMs = -1;

  TheFlashMicroBatchStream(String name, ReadOptions options, StructType schema, String checkpointLocation) {
    this.name = name;
    this.options = options;
    this.schema = schema;
    for (String key : STREAM_OPTIONS) {
      String value = options.raw.get(key);
      if (value != null) streamOptions.put(key, value);
    }
    streamOptions.put("stream_id", digest(checkpointLocation));
    // the columns Spark fixed for this query: the service refuses a batch whose schema has a
    // column the table gained since (the stream would drop its values), asking for a restart
    try {
      streamOptions.put("stream_columns", ServiceClient.JSON.writeValueAsString(Arrays.asList(schema.fieldNames())));
    } catch (JsonProcessingException e) {
      throw new IllegalStateException(e);
    }
    String rows = options.raw.get("max_rows_per_trigger");
    this.maxRows = rows == null ? null : Long.parseLong(rows.trim());
  }

  static String digest(String text) {
    try {
      byte[] d = MessageDigest.getInstance("SHA-1").digest(text.getBytes(StandardCharsets.UTF_8));
      StringBuilder out = new StringBuilder();
      for (int i = 0; i < 8; i++) out.append(String.format("%02x", d[i]));
      return out.toString();
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }

  private Map<String, Object> body() {
    Map<String, Object> body = new LinkedHashMap<>();
    body.put("table", options.table);
    if (options.store != null) body.put("store", options.store);
    body.put("options", streamOptions);
    return body;
  }

  private JsonNode offsetCall(TheFlashOffset start, Long rows) {
    Map<String, Object> body = body();
    body.put("start", start == null ? null : start.toMap());
    if (rows != null) body.put("max_rows", rows);
    JsonNode answer = options.client().changeStream("offset", body);
    lagMs = answer.path("lag_ms").asDouble(-1);
    return answer;
  }

  @Override
  public Offset initialOffset() {
    return TheFlashOffset.of(offsetCall(null, null).get("offset"));
  }

  @Override
  public Offset latestOffset() {
    throw new UnsupportedOperationException("theflash streams take latestOffset(start, limit)");
  }

  @Override
  public ReadLimit getDefaultReadLimit() {
    return maxRows == null ? ReadLimit.allAvailable() : ReadLimit.maxRows(maxRows);
  }

  @Override
  public Offset latestOffset(Offset start, ReadLimit limit) {
    Long rows = limit instanceof ReadMaxRows ? ((ReadMaxRows) limit).maxRows() : null;
    latest = TheFlashOffset.of(offsetCall(TheFlashOffset.from(start), rows).get("offset"));
    return latest;
  }

  @Override
  public InputPartition[] planInputPartitions(Offset start, Offset end) {
    TheFlashOffset from = TheFlashOffset.from(start);
    TheFlashOffset to = TheFlashOffset.from(end);
    if (!from.snapshot && to.ts <= from.ts) return new InputPartition[0];
    Map<String, Object> request = options.streamRequest(Arrays.asList(schema.fieldNames()));
    request.remove("snapshot");
    request.remove("max_staleness");
    request.remove("as_of");
    request.put("snapshot_ts", to.ts);
    request.put("changes_from", from.snapshot ? 0L : from.ts);
    // the table's current schema: the stream's columns are the table's now (the service refuses
    // a batch otherwise), and a version from before a column was added reads its origin default
    request.put("schema", "current");
    ServiceClient client = options.client();
    ReadSession session = new ReadSession(client.openSession(request));
    InputPartition[] parts = new InputPartition[session.streamUrls.size()];
    for (int i = 0; i < parts.length; i++) {
      parts[i] = new StreamPartition(options.server, session.id, session.streamUrls.get(i), i);
    }
    return parts;
  }

  @Override
  public PartitionReaderFactory createReaderFactory() {
    return new StreamReaderFactory(schema, -1, options.token);
  }

  @Override
  public Offset deserializeOffset(String json) {
    return TheFlashOffset.parse(json);
  }

  @Override
  public void commit(Offset end) {
    Map<String, Object> body = body();
    body.put("end", TheFlashOffset.from(end).toMap());
    options.client().changeStream("commit", body);
  }

  @Override
  public void stop() {
    // the lease stays: a restart within lease_ttl continues from it; it expires on its own
  }

  @Override
  public Map<String, String> metrics(Optional<Offset> latestConsumedOffset) {
    Map<String, String> out = new HashMap<>();
    TheFlashOffset consumed = latestConsumedOffset.isPresent() ? TheFlashOffset.from(latestConsumedOffset.get()) : null;
    if (consumed != null) {
      out.put("offsetTs", Long.toString(consumed.ts));
      out.put("lagMs", Long.toString(Math.max(0L, System.currentTimeMillis() - (consumed.ts >> 18))));
    }
    if (latest != null) out.put("latestTs", Long.toString(latest.ts));
    if (lagMs >= 0) out.put("latestLagMs", Long.toString((long) lagMs));
    return out;
  }

  @Override
  public String toString() {
    return "TheFlashMicroBatchStream(" + name + ")";
  }
}
