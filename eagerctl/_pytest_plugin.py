"""pytest plugin (being built, issue 4)."""
