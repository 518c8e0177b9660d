"""Maintenance scripts (not shipped: pyproject packages app* and trainer* only)."""
