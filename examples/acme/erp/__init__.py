"""The Acme ERP: a FastAPI service over its own SQLite database, seeded deterministically."""

from examples.acme.erp.app import create_app
from examples.acme.erp.db import ErpDatabase
from examples.acme.erp.seed import iban, iban_is_valid, seed

__all__ = ["ErpDatabase", "create_app", "iban", "iban_is_valid", "seed"]
