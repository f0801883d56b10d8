"""A module-level counter for tests/bisect/test_bisect_state.py (a counter kept in another module)."""

traced = 0
