"""Declarations: the aggregate, its validation, routing and the application."""

from .alert import Alert, agency_alert_id, subject_key, subjects_of
from .application import (
    AlertInvalid,
    AlertNotFound,
    Conflict,
    DeclarationNotFound,
    Declarations,
    DuplicateReference,
    NotDeclarant,
    Submission,
    VersionConflict,
)
from .documents import FieldError, InvalidDeclaration, content_hash, validate_document
from .domainmodel import AGENCIES, Declaration, DeclarationError, declaration_id
from .routing import RoutingError, RoutingRules

__all__ = [
    "AGENCIES", "Alert", "AlertInvalid", "AlertNotFound", "agency_alert_id", "subject_key", "subjects_of", "Conflict", "Declaration", "DeclarationError", "DeclarationNotFound",
    "Declarations", "DuplicateReference", "FieldError", "NotDeclarant", "InvalidDeclaration", "RoutingError",
    "RoutingRules", "Submission", "VersionConflict", "content_hash", "declaration_id",
    "validate_document",
]
