"""Widgets of the cockpit: one RunPane per run, built from small view widgets."""
