"""Load and create account keys (eth-account keystores); keys never leave this machine."""

from __future__ import annotations

import getpass
import json
import os
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

PASSWORD_ENV = "FEDLEDGER_KEY_PASSWORD"


class KeyFileError(ValueError):
    """A key file is missing, malformed, or its password is wrong."""


def read_password(prompt: str = "keystore password: ", env: str = PASSWORD_ENV) -> str:
    """The password from ``$FEDLEDGER_KEY_PASSWORD``, else asked on the terminal."""
    value = os.environ.get(env)
    if value is not None:
        return value
    return getpass.getpass(prompt)


def load_key(path: Path, password: str | None = None) -> LocalAccount:
    """Load an account from an encrypted eth-account keystore or a file holding a hex private key.

    Raises:
        KeyFileError: the file is missing, unreadable, or the password does not decrypt it.
    """
    if not path.is_file():
        raise KeyFileError(f"key file not found: {path}")
    text = path.read_text(encoding="utf-8").strip()
    try:
        if text.startswith("{"):
            keystore = json.loads(text)
            secret = password if password is not None else read_password(f"password for {path}: ")
            return Account.from_key(Account.decrypt(keystore, secret))
        return Account.from_key(text)
    except ValueError as exc:
        raise KeyFileError(f"cannot load key from {path}: {exc}") from exc


def address_of(text: str) -> str:
    """The checksummed address ``text`` names: an address, or a keystore file holding one (no password needed).

    Raises:
        KeyFileError: ``text`` is neither an address nor a readable keystore with an address.
    """
    from eth_utils import is_address, to_checksum_address

    if is_address(text):
        return str(to_checksum_address(text))
    path = Path(text).expanduser()
    if not path.is_file():
        raise KeyFileError(f"not an address or a keystore file: {text}")
    try:
        return str(to_checksum_address(json.loads(path.read_text(encoding="utf-8"))["address"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise KeyFileError(f"{path} is not a keystore with an address") from exc


def create_keystore(path: Path, password: str) -> LocalAccount:
    """Create a new key and write it as an encrypted keystore (mode 0600); refuse to overwrite."""
    if path.exists():
        raise KeyFileError(f"refusing to overwrite existing key file {path}")
    account = Account.create()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(Account.encrypt(account.key, password), handle)
    return account
