"""The modules tests/support/session_groups.py names for the scheduler exist: a module renamed or
removed there would otherwise leave its group, or the long modules' order, quietly short."""
from __future__ import annotations

from conftest import ROOT
from session_groups import GROUP_OF_MODULE, GROUPS, LONG_MODULES


def test_every_module_the_scheduler_names_is_a_test_module_of_this_checkout() -> None:
    named = [*GROUP_OF_MODULE, *LONG_MODULES]
    missing = [m for m in named if not (ROOT / m).is_file()]
    assert not missing, f"session_groups.py names modules that do not exist: {missing}"
    assert set(GROUP_OF_MODULE.values()) == set(GROUPS)
    # a long module in a group would be handed out twice over: the group is its unit of work
    assert not set(LONG_MODULES) & set(GROUP_OF_MODULE), set(LONG_MODULES) & set(GROUP_OF_MODULE)
