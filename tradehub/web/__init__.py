"""The officer web pages: server-rendered HTML beside the API, on the same app."""

from .pages import install_pages

__all__ = ["install_pages"]
