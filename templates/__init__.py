"""Jinja2 templates of every snippet porter inserts (package data, not code)."""
