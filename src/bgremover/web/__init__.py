"""The web layer: REST API, SSE stream and the browser UI, over the job system."""

from .app import InsecureBinding, create_app

__all__ = ["InsecureBinding", "create_app"]
