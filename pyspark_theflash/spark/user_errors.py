"""TheFlash's own errors as a Spark user sees them from the Python data source: one message,
not a traceback through the package.

Spark runs the source's methods in Python workers and puts the worker's formatted traceback into
the ``AnalysisException`` (or task failure) it raises on the driver; PySpark's simplified
traceback drops its own frames but keeps every frame of ours, 10-23 lines for an unknown table
or a bad option. An error TheFlash raises on purpose (``TheFlashError``) already says what failed
and what to do, so it leaves the source with its traceback cut to the method Spark called and
its chain dropped; any other exception (a bug) keeps its whole traceback.

In a Spark worker nothing is left above the message: the wrapper sets ``SPARK_HIDE_TRACEBACK``
in the worker's environment before the error leaves it (``_without_traceback_in_this_worker``
says why that concerns this error alone), and the worker reports ``ExceptionType: message``.
Spark's own setting ``spark.sql.execution.pyspark.udf.hideTraceback.enabled`` does that for
every worker of a session, the UDFs' too, so it stays the session's choice.

Elsewhere (the source's methods called in a process of the user's), or were the worker to format
the traceback, one frame is left: PySpark's simplified traceback keeps the frames from the first
one outside pyspark, a prefix test on the file name (``filename.startswith(dirname(pyspark.
__file__))``) that this package's files pass when installed from a wheel beside pyspark
(``.../site-packages/pyspark_theflash/...``): then the traceback is not simplified (a wheel install
showed the wrapper's frame with this file's path and the ``raise`` line under it). The wrappers'
code therefore names its file ``FRAME_FILE``, not this module's path: that frame reads ``File
"<theflash>", line N, in call``, with no source line, whatever the install
(tests/spark/test_wheel_install.py builds the wheel and checks what a Spark user sees).
"""
from __future__ import annotations

import functools
import inspect
import os
import sys
from typing import Callable, Iterator, TypeVar

from pyspark_theflash.errors import TheFlashError

F = TypeVar("F", bound=Callable[..., object])
W = TypeVar("W", bound=Callable[..., object])

# The file the wrappers' one frame names (above: never under pyspark's directory, however installed).
FRAME_FILE = "<theflash>"


def _framed_outside_pyspark(wrapper: W) -> W:
    wrapper.__code__ = wrapper.__code__.replace(co_filename=FRAME_FILE)
    return wrapper


def in_spark_worker() -> bool:
    """Whether this process is one of Spark's Python workers (its ``__main__`` is pyspark's
    daemon or worker module: ``pyspark.daemon``, ``pyspark.worker``, ``pyspark.sql.worker.*``,
    or this package's daemon, ``spark/worker_daemon.py``)."""
    from pyspark_theflash.spark.worker_daemon import MODULE as OUR_DAEMON

    main = sys.modules.get("__main__")
    name = str(getattr(getattr(main, "__spec__", None), "name", ""))
    return name.startswith("pyspark.") or name == OUR_DAEMON


def _without_traceback_in_this_worker() -> None:
    """A Spark Python worker formats the error that ends it with ``pyspark.util.
    handle_worker_exception``, which leaves the traceback out when ``SPARK_HIDE_TRACEBACK`` is in
    its environment (what the session's ``...hideTraceback.enabled`` sets for every worker).
    Every worker exits after the error it reports (``sys.exit(-1)``; the daemon reuses only
    workers that end well), so setting it here, in a worker, concerns this error alone: not the
    session's UDFs, nor any other process."""
    if in_spark_worker():
        os.environ["SPARK_HIDE_TRACEBACK"] = "1"


def said_plainly(method: F) -> F:
    """Wrap a data source method (a generator's too: ``read``) so a ``TheFlashError`` leaves it
    with no frames below this one, and in a Spark worker with none at all (its message alone)."""
    if inspect.isgeneratorfunction(method):
        @functools.wraps(method)
        def generator(*args: object, **kwargs: object) -> Iterator[object]:
            try:
                yield from method(*args, **kwargs)
            except TheFlashError as exc:
                _without_traceback_in_this_worker()
                raise exc.with_traceback(None) from None

        return _framed_outside_pyspark(generator)  # type: ignore[return-value]

    @functools.wraps(method)
    def call(*args: object, **kwargs: object) -> object:
        try:
            return method(*args, **kwargs)
        except TheFlashError as exc:
            _without_traceback_in_this_worker()
            raise exc.with_traceback(None) from None

    return _framed_outside_pyspark(call)  # type: ignore[return-value]
