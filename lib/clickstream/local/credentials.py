"""Passwords of the local database roles, generated once and kept in a git-ignored 0600 JSON file.

    passwords = load_or_create(home / "credentials" / "dw.json", ["etl_writer", "dashboard_reader"])

Each database side gets its own file (the analytics side never reads the OLTP file). Passwords are
never logged; error messages name the file and the roles, not the values.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from pathlib import Path
from typing import Iterable

from clickstream.local.locks import folder_lock

FILE_MODE = 0o600
DIR_MODE = 0o700
TOKEN_BYTES = 24  # secrets.token_urlsafe(24): 32 URL-safe characters


class CredentialsError(RuntimeError):
    pass


def load_or_create(path: Path, roles: Iterable[str]) -> dict[str, str]:
    """Return {role: password} for `roles`, generating (and saving) a password for each role not in the file.

    The file is JSON {"role": "password", ...}, mode 0600, written atomically; roles already in the file
    keep their password (edit the file to change one). Roles in the file but not asked for are kept.
    """
    path = Path(path)
    roles = list(roles)
    _make_dir(path.parent)
    with folder_lock(path.parent):  # two first runs must not generate different passwords
        stored = _read(path)
        missing = [role for role in roles if role not in stored]
        if missing or not path.exists():
            stored.update({role: secrets.token_urlsafe(TOKEN_BYTES) for role in missing})
            _write_atomic(path, stored)
        else:
            _tighten_mode(path)
    return {role: stored[role] for role in roles}


def _read(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise CredentialsError(f"{path} is not valid JSON (line {getattr(exc, 'lineno', '?')}); fix or delete it") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) and v for k, v in data.items()):
        raise CredentialsError(f'{path} must be a JSON object of {{"role": "password"}} strings; fix or delete it')
    return data


def _write_atomic(path: Path, data: dict[str, str]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), FILE_MODE)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), FILE_MODE)  # in case the umask was stricter than usual, or a filesystem ignored mode
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _tighten_mode(path: Path) -> None:
    """A file someone made readable by others is narrowed back to 0600."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        os.chmod(path, FILE_MODE)


def _make_dir(directory: Path) -> None:
    if not directory.is_dir():
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, DIR_MODE)
