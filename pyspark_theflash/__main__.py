from pyspark_theflash.cli import entry

entry()
