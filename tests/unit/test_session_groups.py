"""The modules tests/support/session_groups.py names for the scheduler exist: a module renamed or
removed there would otherwise leave its group quietly short (check_session_groups fails a run only
for a module that takes a grouped session from outside its group, not for a name that matches
nothing)."""
from __future__ import annotations

from conftest import ROOT
from session_groups import GROUP_OF_MODULE, GROUPS


def test_every_module_the_groups_name_is_a_test_module_of_this_checkout() -> None:
    missing = [m for m in GROUP_OF_MODULE if not (ROOT / m).is_file()]
    assert not missing, f"session_groups.py names modules that do not exist: {missing}"
    assert set(GROUP_OF_MODULE.values()) == set(GROUPS)
