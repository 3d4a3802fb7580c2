"""Policies: pure decisions around every connector call (imports nothing of umiq's)."""

from policies._access import AccessRule, allowed_tools, check_access
from policies._decision import Decision

__all__ = ["AccessRule", "Decision", "allowed_tools", "check_access"]
