"""The admin HTTP API (FastAPI) and the web page it serves: ``create_app``."""

from admin.api.app import create_app

__all__ = ["create_app"]
