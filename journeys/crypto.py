"""Personal data at rest: a data key per customer, wrapped by a master key; keyed pseudonyms.

Every customer's personal data (the customer key, actors, properties) is stored
only as AES-256-GCM ciphertext under a data key of its own. Data keys are stored
only wrapped (encrypted) by the master key. Erasing a customer destroys its data
key, which makes every copy of its personal data unreadable: in the append-only
event log, the read models and the backups taken while the master key that
wrapped it was in force (crypto-shredding).

Lookups by customer key use a keyed pseudonym (HMAC-SHA256 under a secret of
ours), which nobody without that secret can recompute from an e-mail address.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ERASED = "erased"  # what stands in place of personal data whose key was destroyed
NONCE_BYTES = 12


class SecretsError(Exception):
    """The keys in the settings or the key file are missing or malformed."""


class UnreadableError(Exception):
    """Ciphertext that this key did not make, or that was altered."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


def _unb64(text: str, what: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(text.encode())
    except (ValueError, TypeError):
        raise SecretsError(f"{what} is not base64") from None
    if len(raw) != 32:
        raise SecretsError(f"{what} must be 32 bytes (44 base64 characters), not {len(raw)}")
    return raw


def new_secret() -> str:
    return _b64(secrets.token_bytes(32))


def _canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str).encode()


class DataKey:
    """One customer's data key: seals and opens its personal data, fingerprints its content."""

    def __init__(self, raw: bytes):
        self._aead = AESGCM(raw)
        self._mac = hmac.new(raw, b"journeys fingerprint", hashlib.sha256).digest()

    @classmethod
    def generate(cls) -> tuple[DataKey, bytes]:
        raw = AESGCM.generate_key(bit_length=256)
        return cls(raw), raw

    def seal(self, data: Any, context: str) -> str:
        """Encrypt JSON-ready data; `context` (which record, which field) is bound to it."""
        nonce = secrets.token_bytes(NONCE_BYTES)
        return _b64(nonce + self._aead.encrypt(nonce, _canonical(data), context.encode()))

    def open(self, token: str, context: str) -> Any:
        try:
            raw = base64.urlsafe_b64decode(token.encode())
            return json.loads(self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode()))
        except (InvalidTag, ValueError):
            raise UnreadableError(f"sealed data for {context} does not open with this key") from None

    def fingerprint(self, content: Any) -> str:
        """What makes two deliveries equal, without a plain hash anyone could test guesses against."""
        return hmac.new(self._mac, _canonical(content), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Secrets:
    """The master key (wraps data keys), earlier master keys (rotation), the pseudonym key."""

    master_key: bytes = field(repr=False)
    pseudonym_key: bytes = field(repr=False)
    previous_master_keys: tuple[bytes, ...] = field(default=(), repr=False)

    @staticmethod
    def key_id(key: bytes) -> str:
        return hashlib.sha256(b"journeys master key id" + key).hexdigest()[:12]

    @property
    def master_key_id(self) -> str:
        return self.key_id(self.master_key)

    def pseudonym(self, customer_key: str) -> str:
        return hmac.new(self.pseudonym_key, customer_key.encode(), hashlib.sha256).hexdigest()

    def wrap(self, raw: bytes, record_id: str) -> str:
        """A data key wrapped by the current master key: 'key id:ciphertext'."""
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = AESGCM(self.master_key).encrypt(nonce, raw, f"data key {record_id}".encode())
        return f"{self.master_key_id}:{_b64(nonce + sealed)}"

    def unwrap(self, wrapped: str, record_id: str) -> DataKey:
        return DataKey(self.unwrap_raw(wrapped, record_id))

    def unwrap_raw(self, wrapped: str, record_id: str) -> bytes:
        key_id, _, token = wrapped.partition(":")
        master = next((k for k in (self.master_key, *self.previous_master_keys) if self.key_id(k) == key_id), None)
        if master is None:
            raise SecretsError(
                f"a data key is wrapped by master key {key_id}, which is neither JOURNEYS_MASTER_KEY "
                "nor one of JOURNEYS_PREVIOUS_MASTER_KEYS"
            )
        raw = base64.urlsafe_b64decode(token.encode())
        try:
            return AESGCM(master).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], f"data key {record_id}".encode())
        except InvalidTag:
            raise UnreadableError(f"the data key of record {record_id} does not unwrap") from None

    @classmethod
    def load(
        cls,
        master_key: str | None,
        pseudonym_key: str | None,
        previous_master_keys: str | None,
        key_file: str,
    ) -> Secrets:
        """From the settings if given there, else from the key file (created on first use, mode 0600)."""
        previous = tuple(
            _unb64(k.strip(), "a key of JOURNEYS_PREVIOUS_MASTER_KEYS")
            for k in (previous_master_keys or "").split(",") if k.strip()
        )
        if master_key or pseudonym_key:
            if not (master_key and pseudonym_key):
                raise SecretsError("set both JOURNEYS_MASTER_KEY and JOURNEYS_PSEUDONYM_KEY, or neither (a key file)")
            return cls(_unb64(master_key, "JOURNEYS_MASTER_KEY"), _unb64(pseudonym_key, "JOURNEYS_PSEUDONYM_KEY"), previous)
        stored = _key_file(Path(key_file))
        return cls(
            _unb64(stored.get("master_key", ""), f"master_key in {key_file}"),
            _unb64(stored.get("pseudonym_key", ""), f"pseudonym_key in {key_file}"),
            previous,
        )


def _key_file(path: Path) -> dict[str, str]:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        content = json.dumps({"master_key": new_secret(), "pseudonym_key": new_secret()}).encode()
        draft = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(draft, path)  # whole, or not at all; another process may have made it first
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise SecretsError(f"cannot read the key file {path}: {type(error).__name__}") from None
    if not isinstance(found, dict):
        raise SecretsError(f"the key file {path} is not a JSON object")
    return found
