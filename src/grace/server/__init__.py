"""The Grace HTTP server: app factory, API routers."""

from grace.server.app import create_app

__all__ = ["create_app"]
