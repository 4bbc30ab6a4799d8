"""Built-in SMTP AUTH: SASL mechanisms, the users file, failed-login throttling."""

from outrider.auth.passwords import PasswordError, ScramCredentials
from outrider.auth.sasl import SaslMechanism, SaslStep, Verifier, mechanisms_for, new_mechanism
from outrider.auth.store import UserRecord, UserStore, UserStoreError
from outrider.auth.throttle import AuthThrottle

__all__ = [
    "AuthThrottle",
    "PasswordError",
    "SaslMechanism",
    "SaslStep",
    "ScramCredentials",
    "UserRecord",
    "UserStore",
    "UserStoreError",
    "Verifier",
    "mechanisms_for",
    "new_mechanism",
]
