"""TheFlash's own errors as a Spark user sees them from the Python data source: one message,
not a traceback through the package.

Spark runs the source's methods in Python workers and puts the worker's formatted traceback into
the ``AnalysisException`` (or task failure) it raises on the driver; PySpark's simplified
traceback drops its own frames but keeps every frame of ours, 10-23 lines for an unknown table
or a bad option. An error TheFlash raises on purpose (``TheFlashError``) already says what failed
and what to do, so it leaves the source with its traceback cut to the method Spark called and
its chain dropped; any other exception (a bug) keeps its whole traceback.

What is left is one frame above the message: PySpark's simplified traceback keeps the frames from
the first one outside pyspark, and a traceback of pyspark's frames only is printed whole. "Outside
pyspark" is a prefix test on the file name (``filename.startswith(dirname(pyspark.__file__))``), so
installed from a wheel beside pyspark (``.../site-packages/pyspark_theflash/...``) this package's
files pass for pyspark's own: every frame would be "pyspark's" and the traceback is not simplified
(a wheel install showed the wrapper's frame with this file's path and the ``raise`` line under it).
The wrappers' code therefore names its file ``FRAME_FILE``, not this module's path: the one frame
shown is ``File "<theflash>", line N, in call``, with no source line, whatever the install
(tests/spark/test_wheel_install.py builds the wheel and checks). Spark's
own setting ``spark.sql.execution.pyspark.udf.hideTraceback.enabled=true`` (which the data source
planner honours too) leaves the message alone; it is the session's choice, as it hides the
tracebacks of the session's UDFs as well, so TheFlash does not set it.
"""
from __future__ import annotations

import functools
import inspect
from typing import Callable, Iterator, TypeVar

from pyspark_theflash.errors import TheFlashError

F = TypeVar("F", bound=Callable[..., object])
W = TypeVar("W", bound=Callable[..., object])

# The file the wrappers' one frame names (above: never under pyspark's directory, however installed).
FRAME_FILE = "<theflash>"


def _framed_outside_pyspark(wrapper: W) -> W:
    wrapper.__code__ = wrapper.__code__.replace(co_filename=FRAME_FILE)
    return wrapper


def said_plainly(method: F) -> F:
    """Wrap a data source method (a generator's too: ``read``) so a ``TheFlashError`` leaves it
    with no frames below this one."""
    if inspect.isgeneratorfunction(method):
        @functools.wraps(method)
        def generator(*args: object, **kwargs: object) -> Iterator[object]:
            try:
                yield from method(*args, **kwargs)
            except TheFlashError as exc:
                raise exc.with_traceback(None) from None

        return _framed_outside_pyspark(generator)  # type: ignore[return-value]

    @functools.wraps(method)
    def call(*args: object, **kwargs: object) -> object:
        try:
            return method(*args, **kwargs)
        except TheFlashError as exc:
            raise exc.with_traceback(None) from None

    return _framed_outside_pyspark(call)  # type: ignore[return-value]
