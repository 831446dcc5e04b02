"""Declarations: the aggregate, its validation, routing and the application."""

from .access import PersonalDataRead, record_personal_data_read
from .alert import Alert, agency_alert_id, subject_key, subjects_of
from .application import (
    AlertInvalid,
    AlertNotFound,
    Conflict,
    DeclarationNotFound,
    Declarations,
    DuplicateReference,
    Issuance,
    LicenceAmbiguous,
    LicenceNotFound,
    LicenceRefused,
    NotDeclarant,
    PartyNotFound,
    PartyRegistration,
    Submission,
    VersionConflict,
)
from .documents import FieldError, InvalidDeclaration, InvalidLicence, content_hash, validate_document
from .domainmodel import (
    AGENCIES,
    ERASED,
    Declaration,
    DeclarationError,
    NothingToErase,
    PersonalDataGone,
    declaration_id,
    scrub,
)
from .licence import ISSUERS, LICENCE_TYPES, Licence, LicenceSignatureInvalid, licence_id
from .party import REGISTER_MODES, Party, PartyInvalid, party_id
from .personal_data import MasterKeyError, new_master_key
from .routing import RoutingError, RoutingRules

__all__ = [
    "AGENCIES", "Alert", "AlertInvalid", "AlertNotFound", "agency_alert_id", "subject_key", "subjects_of", "Conflict", "Declaration", "DeclarationError", "DeclarationNotFound",
    "Declarations", "DuplicateReference", "FieldError", "NotDeclarant", "InvalidDeclaration", "RoutingError",
    "RoutingRules", "Submission", "VersionConflict", "content_hash", "declaration_id",
    "validate_document", "Issuance", "LicenceAmbiguous", "LicenceNotFound", "LicenceRefused", "InvalidLicence",
    "ISSUERS", "LICENCE_TYPES", "Licence", "LicenceSignatureInvalid", "licence_id",
    "Party", "PartyInvalid", "PartyNotFound", "PartyRegistration", "REGISTER_MODES", "party_id",
    "PersonalDataRead", "record_personal_data_read",
    "ERASED", "NothingToErase", "PersonalDataGone", "scrub", "MasterKeyError", "new_master_key",
]
