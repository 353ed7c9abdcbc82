"""API keys, for admins: create (the secret is shown once), list, revoke."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.auth import allow
from api.errors import ErrorOut
from journeys.storage.api_keys import ApiKey, KeyExistsError, KeyNotFoundError, KeyStore, LastAdminError, Role

router = APIRouter(prefix="/keys", tags=["keys"], dependencies=[allow()])


NAME = r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$"
KeyName = Annotated[str, Path(min_length=1, max_length=100, pattern=NAME, description="the key's name")]


class KeyIn(BaseModel):
    name: str = Field(min_length=1, max_length=100, pattern=NAME)
    role: Role


class KeyOut(BaseModel):
    name: str
    role: Role
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, key: ApiKey) -> KeyOut:
        return cls(**key.__dict__)


class NewKeyOut(KeyOut):
    key: str = Field(description="the secret: shown only in this answer, stored only as a hash")


def _keys(request: Request) -> KeyStore:
    return request.app.state.keys


@router.post("", status_code=201, response_model=NewKeyOut, responses={409: {"model": ErrorOut}})
def create_key(body: KeyIn, request: Request):
    """Create a key for a role; the answer holds the secret, which is never shown again."""
    store = _keys(request)
    try:
        secret = store.create(body.name, body.role)
    except KeyExistsError as error:
        return JSONResponse(status_code=409, content={"detail": str(error)})
    created = next(k for k in store.list() if k.name == body.name)
    return NewKeyOut(**KeyOut.of(created).model_dump(), key=secret)


@router.get("", response_model=list[KeyOut])
def list_keys(request: Request) -> list[KeyOut]:
    """Every key's name, role, creation, last use and revocation; never the secret."""
    return [KeyOut.of(k) for k in _keys(request).list()]


@router.delete("/{name}", response_model=KeyOut, responses={404: {"model": ErrorOut}, 409: {"model": ErrorOut}})
def revoke_key(name: KeyName, request: Request):
    """Revoke a key: it stops working in every process within a second (never the last admin key)."""
    try:
        return KeyOut.of(_keys(request).revoke(name, keep_an_admin=True))
    except KeyNotFoundError as error:
        return JSONResponse(status_code=404, content={"detail": str(error)})
    except LastAdminError as error:
        return JSONResponse(status_code=409, content={"detail": str(error)})
