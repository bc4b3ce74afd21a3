"""Access tokens (JWT, HS256 with a key derived from HUB_SECRET_KEY) and client assertions
(RS384/ES384 JWTs signed with a client's registered key: SMART Backend Services)."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from hub.security import revocation
from hub.security.errors import TokenError

ISSUER = "therapy-hub"
AUDIENCE = "therapy-hub-api"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGORITHMS = ["RS384", "ES384"]
MAX_ASSERTION_LIFETIME = timedelta(minutes=5)


def _key(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"therapy-hub/access-token/v1", hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class Claims:
    client_id: str
    tenant: str
    role: str
    scope: str
    fhir_user: str | None
    expires_at: datetime


def issue(*, secret: str, client_id: str, tenant: str, role: str, scope: str, fhir_user: str | None,
          now: datetime, lifetime: timedelta) -> tuple[str, int]:
    payload = {
        "iss": ISSUER, "aud": AUDIENCE, "sub": client_id, "iat": int(now.replace(tzinfo=UTC).timestamp()),
        "exp": int((now + lifetime).replace(tzinfo=UTC).timestamp()), "jti": uuid.uuid4().hex, "tenant": tenant,
        "role": role,
        "scope": scope,
    }
    if fhir_user:
        payload["fhirUser"] = fhir_user
    return jwt.encode(payload, _key(secret), algorithm="HS256"), int(lifetime.total_seconds())


def _timestamp(now: datetime) -> float:
    return now.replace(tzinfo=UTC).timestamp() if now.tzinfo is None else now.timestamp()


def _check_times(claims: dict[str, Any], now: datetime, leeway: float, what: str) -> None:
    """exp (and nbf) against the hub's clock ``now``, not PyJWT's wall clock: time is injectable."""
    current = _timestamp(now)
    for name in ("exp", "nbf"):
        value = claims.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 2**40:
            raise TokenError(f"{what} has a malformed {name} claim")
    if claims["exp"] <= current - leeway:
        raise TokenError(f"{what} has expired")
    if claims.get("nbf", 0) > current + leeway:
        raise TokenError(f"{what} is not valid yet (nbf)")


_CLOCK_FREE = {"verify_exp": False, "verify_nbf": False, "verify_iat": False}


def verify(token: str, *, secrets: list[str], now: datetime) -> Claims:
    last_error = "invalid token"
    for secret in secrets:
        try:
            payload = jwt.decode(
                token, _key(secret), algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "aud", "iss"], **_CLOCK_FREE}, leeway=0,
            )
            _check_times(payload, now, 0, "the access token")
            if not all(isinstance(payload.get(k), str) for k in ("sub", "tenant", "role")):
                raise TokenError("the access token is malformed")
        except jwt.ExpiredSignatureError:
            raise TokenError("the access token has expired") from None
        except jwt.InvalidAudienceError:
            raise TokenError("the access token is for another audience") from None
        except jwt.InvalidSignatureError:
            last_error = "the access token signature is not valid"
            continue
        except jwt.PyJWTError:
            raise TokenError("the access token is malformed") from None
        return Claims(payload["sub"], payload["tenant"], payload["role"], payload.get("scope", ""),
                      payload.get("fhirUser"), datetime.fromtimestamp(payload["exp"], UTC).replace(tzinfo=None))
    raise TokenError(last_error)


def refuse_revoked(database_url: str, client_id: str) -> None:
    """Raise :class:`TokenError` if the client of a verified access token has been revoked (or is not
    registered): see :mod:`hub.security.revocation` (per-process cache with a short TTL)."""
    revocation.refuse_revoked(database_url, client_id)


def assertion_subject(assertion: str) -> str:
    """The client id an assertion claims to be from (unverified: only to find its key)."""
    try:
        claims = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise TokenError("client_assertion is not a JWT") from None
    sub = claims.get("sub") or claims.get("iss")
    if not isinstance(sub, str):
        raise TokenError("client_assertion has no sub")
    return sub


def verify_assertion(assertion: str, *, public_key_pem: str, client_id: str, audiences: list[str],
                     now: datetime) -> tuple[str, datetime]:
    """Check a SMART Backend Services client assertion; returns (jti, expiry) for replay checks.

    ``audiences``: the token endpoint URLs its ``aud`` may name (configured, never taken from a request)."""
    if not audiences:
        raise TokenError("client assertions are not accepted: no token endpoint URL is configured")
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.PyJWTError:
        raise TokenError("client_assertion is not a JWT") from None
    if header.get("alg") not in ASSERTION_ALGORITHMS:
        raise TokenError("client_assertion must be signed with RS384 or ES384")
    try:
        claims = jwt.decode(
            assertion, public_key_pem, algorithms=ASSERTION_ALGORITHMS, audience=audiences,
            options={"require": ["iss", "sub", "aud", "exp", "jti"], **_CLOCK_FREE}, leeway=5,
        )
    except jwt.ExpiredSignatureError:
        raise TokenError("client_assertion has expired") from None
    except jwt.InvalidAudienceError:
        raise TokenError("client_assertion aud must be the token endpoint URL") from None
    except jwt.InvalidSignatureError:
        raise TokenError("client_assertion signature does not match the registered key") from None
    except jwt.InvalidKeyError:
        raise TokenError(f"client_assertion alg {header['alg']} does not fit the registered key") from None
    except jwt.MissingRequiredClaimError as exc:
        raise TokenError(f"client_assertion lacks the required claim {exc.claim}") from None
    except jwt.PyJWTError as exc:
        raise TokenError(f"client_assertion is not valid ({type(exc).__name__})") from None
    _check_times(claims, now, 5, "client_assertion")
    if not isinstance(claims["jti"], str) or not 0 < len(claims["jti"]) <= 255:
        raise TokenError("client_assertion jti must be a string of at most 255 characters")
    if claims["iss"] != client_id or claims["sub"] != client_id:
        raise TokenError("client_assertion iss and sub must be the client_id")
    if claims["exp"] - _timestamp(now) > (MAX_ASSERTION_LIFETIME + timedelta(seconds=5)).total_seconds():
        raise TokenError("client_assertion exp is more than five minutes ahead")
    expires = datetime.fromtimestamp(claims["exp"], UTC).replace(tzinfo=None)
    return claims["jti"], expires
