"""Policies: pure decisions around every connector call (imports nothing of umiq's)."""

from policies._access import AccessRule, allowed_tools, check_access
from policies._approval import (
    ApprovalPolicy,
    ApprovalRule,
    CallContext,
    Condition,
    approval_rules,
    check_approval,
    domain_of,
)
from policies._claims import CHANGE_WORDS, Claim, change_claims, check_claims, check_form
from policies._crypto import (
    SEALED,
    KeyRing,
    SealedKey,
    SealError,
    envelope_ref,
    is_sealed,
    new_key,
    open_sealed,
    rewrap,
    seal,
)
from policies._decision import Decision
from policies._minimize import Minimized, minimize, resolve_arguments
from policies._pii import Detector, PiiKind, Span
from policies._project import MinimizationPolicy, MinimizationRule, project
from policies._pseudonymize import Pseudonymizer
from policies._redact import RedactingProcessor
from policies._scope import ScopePolicy, ScopeRule, Seen, check_scope, key_arguments

__all__ = [
    "CHANGE_WORDS",
    "SEALED",
    "AccessRule",
    "ApprovalPolicy",
    "ApprovalRule",
    "CallContext",
    "Claim",
    "Condition",
    "Decision",
    "Detector",
    "KeyRing",
    "MinimizationPolicy",
    "MinimizationRule",
    "Minimized",
    "PiiKind",
    "Pseudonymizer",
    "RedactingProcessor",
    "ScopePolicy",
    "ScopeRule",
    "SealError",
    "SealedKey",
    "Seen",
    "Span",
    "allowed_tools",
    "approval_rules",
    "change_claims",
    "check_access",
    "check_approval",
    "check_claims",
    "check_form",
    "check_scope",
    "domain_of",
    "envelope_ref",
    "is_sealed",
    "key_arguments",
    "minimize",
    "new_key",
    "open_sealed",
    "project",
    "resolve_arguments",
    "rewrap",
    "seal",
]
