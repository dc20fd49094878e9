"""notebooks/quickstart.ipynb runs top to bottom, headless, so it never rots: its own cells
assert the bank total at every snapshot, that two tables read at one ts are consistent, and
that the change stream's Parquet sink, replayed, equals the snapshot at the stream's offset."""
from __future__ import annotations

import pytest

from conftest import ROOT

pytestmark = pytest.mark.spark


def test_quickstart_notebook_executes_and_its_checks_hold(tmp_path) -> None:
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(ROOT / "notebooks" / "quickstart.ipynb", as_version=4)
    client = NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()

    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "items without their order 0" in text
    plots = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(plots) == 2, "the freshness/throughput plot and the stream's lag plot were not both drawn"
    assert "differences from the snapshot at the offset 0" in text
    assert "_change_type" in text  # the SQL CHANGES query's table
