"""The ``grace`` command line."""

from grace.cli.app import app, main

__all__ = ["app", "main"]
