"""The Acme HR database: employees, managers, departments and leave, in one SQLite file."""

from examples.acme.hr.db import HrDatabase
from examples.acme.hr.seed import bsn_is_valid, seed

__all__ = ["HrDatabase", "bsn_is_valid", "seed"]
