"""The review web page for compliance officers (``umiq review serve``).

Tasks and their traces, the audit chain's status, and the calls waiting for a human,
with Approve and Reject. See ``worker.review.app`` for the pages and
``worker.review._auth`` for logins and password hashes.
"""

from worker.review._auth import Principal, hash_password, verify_password
from worker.review.app import create_app

__all__ = ["Principal", "create_app", "hash_password", "verify_password"]
