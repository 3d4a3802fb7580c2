"""umiq worker: the Celery app, the agent loop, role models, audit log and CLI."""

__version__ = "0.1.0"
