"""The spark-submit quick start of jvm-shim/README.md: reads through the connector jar only
(no Python worker).

    PYSPARK_PYTHON=$PWD/.venv/bin/python .venv/bin/spark-submit --jars $(.venv/bin/theflash jar) \
      ... jvm-shim/examples/accounts.py
"""
from pyspark.sql import SparkSession

spark = SparkSession.builder.appName("theflash-accounts").getOrCreate()
# one query, one snapshot ts across both sides of the join (the extension's rule)
row = spark.sql("SELECT count(*) AS accounts, sum(a.balance) AS total FROM theflash.bank.accounts a "
                "JOIN theflash.bank.accounts b ON a.id = b.id").collect()[0]
print(f"accounts={row.accounts} total={row.total}")
spark.stop()
