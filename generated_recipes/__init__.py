"""Recipes written by `porter convert`: build output, not tracked by git."""
