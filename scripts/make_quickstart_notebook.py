"""Write notebooks/quickstart.ipynb (without outputs) from the cells below, so the notebook's
content is reviewed as code. Run: .venv/bin/python scripts/make_quickstart_notebook.py"""
import nbformat as nbf
nb = nbf.v4.new_notebook()
md, code = nbf.v4.new_markdown_cell, nbf.v4.new_code_cell
nb.cells = [
md("""# TheFlash for Spark — quickstart

TheFlash keeps a columnar, transaction-consistent replica of a TiDB/TiKV database and lets
Spark read it at one snapshot timestamp per query. This notebook runs the whole loop on your
machine, with nothing but this package installed:

1. the **embedded mini cluster** (TSO, regions, Percolator transactions, TiDB encodings) runs
   a `bank` workload (transfers that keep the total balance constant; some transactions die
   after prewrite and leave locks behind) and an `orders` workload (every TiDB type);
2. the **writer** consumes its change log (the binlog, streamed over gRPC) into a store directory;
3. **Spark** reads the store with `spark.read.format("theflash")`.

Every process binds to 127.0.0.1 and lives in a temporary directory, which the last cell
removes (and so does the kernel's exit, should a cell fail before it)."""),
code("""import atexit, shutil, tempfile, time
from pathlib import Path

from pyspark_theflash.demo.deployment import LocalDeployment, store_lag_ms

work = Path(tempfile.mkdtemp(prefix="theflash-quickstart-"))
atexit.register(shutil.rmtree, work, ignore_errors=True)
cluster = LocalDeployment(work, rate=40, accounts=200)
atexit.register(cluster.stop)  # at exit, last registered runs first: the processes stop, then their files go
cluster.start()
print("upstream", cluster.upstream_address)
print("binlog  ", cluster.binlog_address)
print("store   ", cluster.store)"""),
md("""## A Spark session

`theflash_session()` is a normal `SparkSession` with the Spark connector jar on it: `format("theflash")`
is a Java DataSource V2 that prunes columns and pushes filters, reading Arrow streams from a service
`theflash_session()` starts in this process. Without the jar (`theflash_session(jvm=False)`), the same
format is the package's Python data source, found without registration because the package is named
`pyspark_theflash`."""),
code("""from pyspark.sql import functions as F
from pyspark_theflash.spark.session import theflash_session

spark = theflash_session(master="local[2]", app_name="theflash-quickstart", **{"spark.ui.showConsoleProgress": "false"})
spark.sparkContext.setLogLevel("ERROR")

def read(table, **options):
    reader = spark.read.format("theflash").option("store", str(cluster.store))  # the writer recorded the upstream address
    for key, value in options.items():
        reader = reader.option(key, str(value))
    return reader.load(table)

accounts = read("bank.accounts")
accounts.printSchema()
accounts.orderBy("id").show(5)"""),
md("""## A consistent total while transfers run

Each query takes a fresh snapshot ts from the upstream TSO, waits until every region of the
table has caught up to it (a *learner read*) and resolves the locks of transactions that may
have committed at or below it. Whatever the workload is doing, the total is exact."""),
code("""from pyspark_theflash.upstream_client.client import connect

upstream = connect(cluster.upstream_address)
expected = 200 * 1000
totals = []
for _ in range(5):
    ts = upstream.get_ts()
    total = read("bank.accounts", snapshot_ts=ts).agg(F.sum("balance")).first()[0]
    totals.append((ts, total))
    print(ts, total)
assert all(total == expected for _, total in totals), totals"""),
md("""## Freshness and throughput over time

The replica's lag is the upstream's current time minus the oldest region's resolved ts in
the store: how stale the newest consistent snapshot in the store is. The writer publishes
its throughput through the latch service (`theflash writer status`)."""),
code("""from pyspark_theflash.latch import connect as connect_latch
from pyspark_theflash.writer.status import writer_status

latch = connect_latch(str(cluster.store))
samples = []
started = time.monotonic()
while time.monotonic() - started < 12:
    status = writer_status(str(cluster.store), latch.status())
    samples.append((time.monotonic() - started, store_lag_ms(cluster.store, upstream.get_ts()), status.get("rows_per_s", 0)))
    time.sleep(0.5)
print(f"{len(samples)} samples; median lag {sorted(s[1] for s in samples)[len(samples) // 2]:.0f} ms")"""),
code("""import matplotlib.pyplot as plt

t, lag, rows = zip(*samples)
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.5))
ax1.plot(t, lag, marker=".")
ax1.set(title="replica lag", xlabel="seconds", ylabel="ms behind the upstream")
ax2.plot(t, rows, marker=".", color="tab:green")
ax2.set(title="writer throughput", xlabel="seconds", ylabel="rows/s")
fig.tight_layout()
plt.show()"""),
md("""## Two tables at one snapshot

Reads that share a `snapshot_ts` see the same transactions. The orders workload inserts an
order with its items in one transaction and deletes them together, so at any single ts no
item is without its order."""),
code("""ts = upstream.get_ts()
orders, items = read("shop.orders", snapshot_ts=ts), read("shop.order_items", snapshot_ts=ts)
orphans = items.join(orders, items.order_id == orders.id, "left_anti").count()
print("orders", orders.count(), "items", items.count(), "items without their order", orphans)
assert orphans == 0
orders.groupBy("status").agg(F.count("*").alias("orders"), F.sum("total").alias("revenue")).orderBy("status").show()"""),
md("""## TiDB's changes as a stream

The store keeps every committed version inside the GC window, so Spark can stream what
changed. `readStream.format("theflash")` starts at `starting_ts` (`latest`: the newest ts every
region of the table has resolved) with the table's rows there as inserts, then each
micro-batch is the change read of (previous offset, next offset]: `insert`,
`update_preimage`/`update_postimage` pairs and `delete`, with `_commit_ts`. Offsets are
resolved timestamps, so no batch misses a late commit; with a checkpoint a restarted query
goes on exactly once. Here it writes into Parquet while the transfers run, and the source's
`lagMs` metric (the upstream's now minus the stream's offset) is sampled from Spark's progress."""),
code("""import json

stream_dir = work / "stream"
changes = (spark.readStream.format("theflash").option("store", str(cluster.store))
           .option("starting_ts", "latest").load("bank.accounts"))
query = (changes.writeStream.format("parquet").option("path", str(stream_dir / "sink"))
         .option("checkpointLocation", str(stream_dir / "checkpoint")).trigger(processingTime="500 milliseconds").start())
lags = []
started = time.monotonic()
while time.monotonic() - started < 12:
    progress = query.lastProgress
    if progress and progress["sources"][0].get("metrics"):
        lags.append((time.monotonic() - started, float(progress["sources"][0]["metrics"]["lagMs"])))
    time.sleep(0.5)
query.processAllAvailable()
query.stop()
end = query.lastProgress["sources"][0]["endOffset"]
offset_ts = int((json.loads(end) if isinstance(end, str) else end)["ts"])
print(f"stream offset {offset_ts}; {len(lags)} lag samples, median {sorted(l for _, l in lags)[len(lags) // 2]:.0f} ms")"""),
code("""t, lag = zip(*lags)
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(t, lag, marker=".", color="tab:purple")
ax.set(title="change stream lag", xlabel="seconds", ylabel="ms behind the upstream")
fig.tight_layout()
plt.show()"""),
md("""The sink holds the rows at the start and every change after it, so replaying it — each
account's last change by commit ts — gives the table at the stream's offset: the bank total
holds there too, and equals a snapshot read at that ts."""),
code("""from pyspark.sql import Window

sink = spark.read.parquet(str(stream_dir / "sink"))
sink.groupBy("_change_type").count().orderBy("_change_type").show()
order = F.when(F.col("_change_type") == "update_preimage", 0).otherwise(1)
last = (sink.withColumn("n", F.row_number().over(Window.partitionBy("id").orderBy(F.desc("_commit_ts"), F.desc(order))))
        .where("n = 1 AND _change_type != 'delete'").select("id", "balance"))
at_offset = read("bank.accounts", snapshot_ts=offset_ts).select("id", "balance")
replayed_total = last.agg(F.sum("balance")).first()[0]
print("replayed rows", last.count(), "total", replayed_total, "| differences from the snapshot at the offset",
      last.exceptAll(at_offset).count() + at_offset.exceptAll(last).count())
assert replayed_total == expected and last.exceptAll(at_offset).count() == 0 and at_offset.exceptAll(last).count() == 0"""),
md("""The same changes through SQL, between two timestamps (`CHANGES FROM VERSION a TO VERSION b`
includes both ends; `EXCLUSIVE` leaves out `a`, as the change read does):"""),
code("""spark.conf.set("theflash.store", str(cluster.store))  # what the catalog reads without a store option
a = offset_ts
b = upstream.get_ts()
spark.sql(f"SELECT _change_type, count(*) AS changes, sum(balance) AS balance "
          f"FROM theflash.bank.accounts CHANGES FROM VERSION {a} EXCLUSIVE TO VERSION {b} "
          f"GROUP BY _change_type ORDER BY _change_type").show()"""),
md("""## Clean up"""),
code("""spark.stop()
upstream.close()
cluster.stop()
shutil.rmtree(work)  # the mini cluster's data, the binlog and the store"""),
]
for i, cell in enumerate(nb.cells):  # stable ids: regenerating gives the same file
    cell["id"] = f"cell-{i:02d}"
nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
from pathlib import Path

nbf.write(nb, str(Path(__file__).resolve().parent.parent / "notebooks" / "quickstart.ipynb"))
