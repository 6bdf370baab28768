"""Tokens: created here, stored as sha256 hashes only, compared in constant time.

A token is ``fw_`` and 43 URL-safe characters (256 random bits); so much entropy makes a plain
sha256 a safe verifier. Neither the token nor its hash ever reaches a log or an error message.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from flywheel.errors import AuthenticationError, PermissionDeniedError
from flywheel.server.models import Token

TOKEN_PREFIX = "fw_"


@dataclass(frozen=True)
class Caller:
    """Who a request comes from: a team, or the admin."""

    team: str | None
    admin: bool

    @property
    def name(self) -> str:
        return "admin" if self.admin else str(self.team)

    def require_team(self, team: str, what: str) -> None:
        """Raise PermissionDeniedError unless the caller may act on ``team``'s ``what``."""
        if not self.admin and team != self.team:
            raise PermissionDeniedError(f"{what} belongs to team {team!r}, not to {self.name!r}")

    def require_admin(self, what: str) -> None:
        if not self.admin:
            raise PermissionDeniedError(f"{what} needs the admin token")


def new_token() -> str:
    """A fresh random token."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(session: Session, team: str | None, admin: bool = False) -> str:
    """Store a new token's hash for ``team`` (or the admin) and return the token, once."""
    token = new_token()
    session.add(
        Token(token_sha256=token_sha256(token), team=team, admin=admin, created_at_s=time.time())
    )
    session.flush()
    return token


def register_token(session: Session, token: str, admin: bool) -> None:
    """Store the hash of an existing token (the admin token file) unless it is stored."""
    digest = token_sha256(token)
    if session.scalar(select(Token).where(Token.token_sha256 == digest)) is None:
        session.add(Token(token_sha256=digest, team=None, admin=admin, created_at_s=time.time()))
        session.flush()


def authenticate(session: Session, authorization: str | None) -> Caller:
    """The caller an ``Authorization: Bearer TOKEN`` header names; AuthenticationError if none."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError(
            "missing token: send `Authorization: Bearer TOKEN` (set FLYWHEEL_TOKEN)"
        )
    digest = token_sha256(token.strip())
    row = session.scalar(select(Token).where(Token.token_sha256 == digest))
    if row is None or not hmac.compare_digest(row.token_sha256, digest):
        raise AuthenticationError("unknown token: ask your admin for `flywheel token create TEAM`")
    return Caller(team=row.team, admin=row.admin)
