import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;

/**
 * A plain Java Spark application reading a replicated table through the connector jar:
 *
 *   spark-submit --jars $(theflash jar) --class ReadTable read-table.jar http://127.0.0.1:8816 bank.accounts balance [TS]
 *
 * prints the table's row count and the sum of one column at one snapshot ts.
 */
public final class ReadTable {
  public static void main(String[] args) {
    String server = args[0];
    String table = args[1];
    String column = args[2];
    SparkSession spark = SparkSession.builder().appName("theflash-read-table").getOrCreate();
    var reader = spark.read().format("theflash").option("server", server);
    if (args.length > 3) {
      reader = reader.option("snapshot_ts", args[3]);
    }
    Dataset<Row> df = reader.load(table);
    Row r = df.selectExpr("count(*)", "sum(" + column + ")").first();
    System.out.println("theflash " + table + " rows=" + r.get(0) + " sum(" + column + ")=" + r.get(1));
    spark.stop();
  }
}
