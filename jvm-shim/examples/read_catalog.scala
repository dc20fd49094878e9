// bin/spark-shell --jars $(theflash jar) \
//   --conf spark.sql.catalog.theflash=io.theflash.spark.TheFlashCatalog \
//   --conf spark.sql.catalog.theflash.server=http://127.0.0.1:8816 -i read_catalog.scala
spark.sql("SHOW TABLES IN theflash.bank").show()
val r = spark.sql("SELECT count(*), sum(balance) FROM theflash.bank.accounts").first()
println(s"theflash bank.accounts rows=${r.get(0)} sum(balance)=${r.get(1)}")
sys.exit(0)
