import sys

from pyspark_theflash.cli import main

sys.exit(main())
