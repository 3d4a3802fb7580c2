"""Policies: pure decisions around every connector call (imports nothing of umiq's)."""

from policies._access import AccessRule, allowed_tools, check_access
from policies._approval import (
    ApprovalPolicy,
    ApprovalRule,
    Condition,
    approval_rules,
    check_approval,
)
from policies._decision import Decision
from policies._minimize import Minimized, minimize, resolve_arguments
from policies._pii import Detector, PiiKind, Span
from policies._project import MinimizationPolicy, MinimizationRule, project
from policies._pseudonymize import Pseudonymizer
from policies._redact import RedactingProcessor

__all__ = [
    "AccessRule",
    "ApprovalPolicy",
    "ApprovalRule",
    "Condition",
    "Decision",
    "Detector",
    "MinimizationPolicy",
    "MinimizationRule",
    "Minimized",
    "PiiKind",
    "Pseudonymizer",
    "RedactingProcessor",
    "Span",
    "allowed_tools",
    "approval_rules",
    "check_access",
    "check_approval",
    "minimize",
    "project",
    "resolve_arguments",
]
