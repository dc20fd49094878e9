"""scripts/compile_pyspark_zips.py: the PySpark and py4j zips Spark puts first on its Python
processes' path carry bytecode that ``zipimport`` uses, only while it matches the source beside
it; and the set-up command compiled this checkout's."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

from conftest import ROOT


def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("compile_pyspark_zips", ROOT / "scripts" / "compile_pyspark_zips.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# A child importing ``pkg.mod`` from the zip with compile() refused: it imports only from bytecode.
IMPORT_WITHOUT_COMPILING = """
import builtins, sys
def refused(*args, **kwargs):
    raise AssertionError(f"compiled from source: {args[1]}")
builtins.compile = refused
import pkg.mod
assert ".zip" in pkg.mod.__file__, pkg.mod.__file__
# the code's file is the source's, as when zipimport compiles it (its __file__ names the .pyc)
assert pkg.mod.where.__code__.co_filename == sys.path[0] + "/pkg/mod.py", pkg.mod.where.__code__.co_filename
print(pkg.mod.VALUE)
"""


MOD = "VALUE = 6 * 7\n\n\ndef where() -> None:\n    pass\n"


def import_from(zip_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(zip_path)!r})\n"
                           + IMPORT_WITHOUT_COMPILING], capture_output=True, text=True, timeout=60)


def write_zip(path: Path, files: dict[str, str]) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in files.items():
            archive.writestr(name, text)


def test_a_compiled_zip_is_imported_from_its_bytecode_and_a_module_that_does_not_compile_is_left(
        tmp_path: Path) -> None:
    compile_pyspark_zips = script()
    lib = tmp_path / "spark" / "python" / "lib"
    lib.mkdir(parents=True)
    zipped = lib / "pyspark.zip"
    write_zip(zipped, {"pkg/__init__.py": "", "pkg/mod.py": MOD, "pkg/broken.py": "def (:\n",
                       "pkg/data.txt": "kept"})
    assert "compiled from source" in import_from(zipped).stderr  # as installed: compiled at each import

    assert compile_pyspark_zips.main(["compile_pyspark_zips", str(tmp_path / "spark")]) == 0

    with zipfile.ZipFile(zipped) as archive:
        names = set(archive.namelist())
        assert archive.read("pkg/data.txt") == b"kept" and archive.read("pkg/mod.py") == MOD.encode()
    assert {"pkg/__init__.pyc", "pkg/mod.pyc"} <= names and "pkg/broken.pyc" not in names
    got = import_from(zipped)
    assert got.returncode == 0 and got.stdout.strip() == "42", got.stderr
    # compiled already: left as it is (no temporary file left beside it either)
    before = zipped.stat().st_mtime_ns
    assert compile_pyspark_zips.main(["compile_pyspark_zips", str(tmp_path / "spark")]) == 0
    assert zipped.stat().st_mtime_ns == before and sorted(p.name for p in lib.iterdir()) == ["pyspark.zip"]


def test_bytecode_that_no_longer_matches_its_source_is_not_used(tmp_path: Path) -> None:
    compile_pyspark_zips = script()
    zipped = tmp_path / "pyspark.zip"
    write_zip(zipped, {"pkg/__init__.py": "", "pkg/mod.py": MOD})
    compile_pyspark_zips.compile_zip(zipped)
    changed = tmp_path / "changed.zip"
    with zipfile.ZipFile(zipped) as zin, zipfile.ZipFile(changed, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info, MOD.replace("6 * 7", "2").encode() if info.filename == "pkg/mod.py" else zin.read(info))

    got = import_from(changed)

    assert "compiled from source: " in got.stderr and got.stderr.rstrip().endswith("changed.zip/pkg/mod.py"), got.stderr


def test_the_set_up_command_compiled_the_zips_spark_puts_on_its_python_processes_path() -> None:
    import pyspark

    compile_pyspark_zips = script()
    zips = compile_pyspark_zips.spark_python_zips(Path(pyspark.__file__).parent)
    assert {p.name.split("-")[0] for p in zips} == {"pyspark.zip", "py4j"}, zips
    assert all(compile_pyspark_zips.has_bytecode(p) for p in zips), "run scripts/bootstrap.sh"
