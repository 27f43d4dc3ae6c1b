"""The local AWS endpoint: a moto server whose S3 objects and Cognito user pools survive a crash of the server.

moto keeps state in memory only. This process persists every S3 request that changes an object or a
bucket before moto's answer is sent: one file per object (a JSON header line, then the bytes) written
to a temporary file, fsynced, renamed over the old one, then its folder fsynced; files 0600, folders
0700. At start it restores them (migrating, once, the index.json + objects/ layout older versions saved
at stop). Cognito (pools, app clients, users and their subs and tokens, whose ids moto makes up) is kept
as a snapshot plus an append-only journal: each Cognito request that may change it appends, before the
answer, one fsynced record of what it touched (the users and tokens it set, read or deleted, the pool it
named), so a change costs what the change is, not the size of the pool; a record cut short by a crash is
never acknowledged and is dropped at restore, which then compacts the journal into a new snapshot (files
0600). Nothing is left to save at stop, so a SIGKILL loses nothing acknowledged.

    python -m clickstream.local.moto_runner --port 4566 --state-dir .clickstream/s3
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import os
import pickle
import re
import shutil
import signal
import struct
import tempfile
import threading
import zlib
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

from joserfc import jwk
from moto import backends
from moto.cognitoidp.models import CognitoIdpUserPool, cognitoidp_backends
from moto.cognitoidp.responses import CognitoIdpResponse
from moto.s3.models import FakeKey, s3_backends
from moto.s3.responses import S3Response
from moto.server import ThreadedMotoServer
from moto.utilities.utils import load_resource

from clickstream.settings import LOCAL_ACCOUNT_ID

log = logging.getLogger("clickstream.moto")
BUCKET_FILE = "bucket.json"
KEYS = "keys"
SUFFIX = ".obj"
OLD_INDEX = "index.json"  # the layout saved at stop by earlier versions: index.json + objects/<quoted key>
CHANGING = {"PUT", "POST", "DELETE"}
_FSYNC_POOL = ThreadPoolExecutor(4, thread_name_prefix="fsync-folder")
COGNITO_FILE = "cognito-idp.pickle"
COGNITO_JOURNAL = "cognito-idp.journal"
JOURNAL_HEADER = struct.Struct(">II")  # a record: its length and crc32, then the pickled changes
ENTRY_DICTS = ("users", "refresh_tokens", "access_tokens", "id_tokens")  # what grows with shoppers and sign-ins
DELETED = ("clickstream", "deleted")
COGNITO_READ_ONLY = re.compile(r"^AWSCognitoIdentityProviderService\.(Admin)?(Describe|List|Get)")
SIGNING_KEY = "moto-cognito-signing-key"  # moto's one fixed key: not pickled, loaded again at restore


def _backend():
    return s3_backends[LOCAL_ACCOUNT_ID]["aws"]


def object_file_name(key: str) -> str:
    """The quoted key (a hash when that is too long for a file name), with SUFFIX."""
    name = quote(key, safe="")
    if len(name) > 200:
        name = "~" + hashlib.sha256(key.encode()).hexdigest()
    return name + SUFFIX


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _private_dir(folder: Path) -> None:
    """Create `folder` 0700 (durably: its parent is fsynced) or make an existing one 0700."""
    try:
        folder.mkdir(mode=0o700)
        _fsync_dir(folder.parent)
    except FileExistsError:
        pass
    folder.chmod(0o700)


def write_atomic(folder: Path, name: str, *parts: bytes) -> None:
    """Write `folder/name` whole or not at all, durable on return: temp file (0600), fsync, rename, fsync folder."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                out.write(part)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, folder / name)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(folder)


def write_new(folder: Path, name: str, *parts: bytes) -> bool:
    """Create `folder/name`, durable on return; False if it exists. The file and its folder are fsynced at
    once (one journal commit instead of two); a file cut short by a crash is never acknowledged, and
    `Store.restore` drops it (its header's size and crc32 do not match)."""
    try:
        fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                out.write(part)
            out.flush()
            folder_synced = _FSYNC_POOL.submit(_fsync_dir, folder)
            os.fsync(out.fileno())
            folder_synced.result()
    except BaseException:
        (folder / name).unlink(missing_ok=True)
        raise
    return True


def _remove_durably(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        return
    _fsync_dir(path.parent)


class Store:
    """The persisted copy of moto's S3 backend: `sync_*` make the files match moto's memory."""

    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir
        self._keys: dict[str, dict[str, tuple[FakeKey, dict]]] = {}  # what the files hold, per bucket
        self._buckets: dict[str, dict] = {}
        self._bucket_lock = threading.RLock()
        self._key_locks = [threading.Lock() for _ in range(64)]

    def sync_key(self, bucket_name: str, key: str) -> None:
        with self._key_locks[hash((bucket_name, key)) % len(self._key_locks)]:
            bucket = _backend().buckets.get(bucket_name)
            fake = bucket.keys.get(key) if bucket is not None else None
            fake = fake if isinstance(fake, FakeKey) else None
            saved = self._keys.setdefault(bucket_name, {})
            previous = saved.get(key)
            if fake is None:
                if previous is not None:
                    _remove_durably(self.root / bucket_name / KEYS / object_file_name(key))
                    saved.pop(key, None)
                return
            metadata = dict(fake.metadata)
            if previous is not None and previous[0] is fake and previous[1] == metadata:
                return
            if bucket_name not in self._buckets:
                self.sync_bucket(bucket_name)
            body = fake.value
            header = {"key": key, "etag": fake.etag, "last_modified": fake.last_modified.isoformat(),
                      "encryption": fake.encryption, "storage": fake.storage_class, "metadata": metadata,
                      "size": len(body), "crc32": zlib.crc32(body)}
            parts = (self.root / bucket_name / KEYS, object_file_name(key), json.dumps(header).encode() + b"\n", body)
            if previous is not None or not write_new(*parts):  # replacing a file: write aside, then rename
                write_atomic(*parts)
            saved[key] = (fake, metadata)

    def sync_bucket(self, name: str, keys: bool = False) -> None:
        with self._bucket_lock:
            bucket = _backend().buckets.get(name)
            folder = self.root / name
            if bucket is None:
                if name in self._buckets or folder.exists():
                    _remove_durably(folder / BUCKET_FILE)  # the bucket is gone once this file is
                    shutil.rmtree(folder, ignore_errors=True)
                    _fsync_dir(self.root)
                self._buckets.pop(name, None)
                self._keys.pop(name, None)
                return
            meta = {"region": bucket.region_name, "encryption": bucket.encryption}
            if self._buckets.get(name) != meta:
                _private_dir(folder)
                _private_dir(folder / KEYS)
                write_atomic(folder, BUCKET_FILE, json.dumps(meta).encode())
                self._buckets[name] = meta
        if keys:
            for key in set(self._keys.get(name, {})) | set(list(bucket.keys)):
                self.sync_key(name, key)

    def sync_all(self) -> None:
        for name in set(self._buckets) | set(list(_backend().buckets)):
            self.sync_bucket(name, keys=True)

    def restore(self) -> int:
        """Load the persisted buckets and objects into moto's backend; returns the object count."""
        _private_dir(self.root)
        for index_file in sorted(self.root.glob(f"*/{OLD_INDEX}")):
            self._migrate(index_file)
        backend = _backend()
        restored = 0
        for bucket_file in sorted(self.root.glob(f"*/{BUCKET_FILE}")):
            folder, meta = bucket_file.parent, json.loads(bucket_file.read_bytes())
            backend.create_bucket(folder.name, meta.get("region") or "us-east-1")
            if meta.get("encryption"):
                backend.put_bucket_encryption(folder.name, meta["encryption"])
            self._buckets[folder.name] = meta
            saved = self._keys.setdefault(folder.name, {})
            for path in (folder / KEYS).iterdir():
                if not path.name.endswith(SUFFIX):
                    path.unlink()  # a temporary file of a write cut short: never acknowledged
                    continue
                header, body = _read_object(path)
                if header is None:
                    log.warning("dropped %s: cut short by a crash before it was acknowledged", path)
                    path.unlink()
                    continue
                fake = _put(backend, folder.name, header, body)
                saved[header["key"]] = (fake, dict(fake.metadata))
                restored += 1
        return restored

    def _migrate(self, index_file: Path) -> None:
        """Rewrite one bucket saved in the old layout as per-object files, then remove the old files."""
        folder = index_file.parent
        saved = json.loads(index_file.read_text())
        _private_dir(folder)
        _private_dir(folder / KEYS)
        for key, meta in saved["objects"].items():
            body = (folder / "objects" / quote(key, safe="")).read_bytes()
            header = {"key": key, "etag": meta.get("etag"), "last_modified": meta["last_modified"],
                      "encryption": meta.get("encryption"), "storage": None,
                      "metadata": meta.get("metadata") or {}, "size": len(body), "crc32": zlib.crc32(body)}
            write_atomic(folder / KEYS, object_file_name(key), json.dumps(header).encode() + b"\n", body)
        bucket_meta = {"region": saved.get("region"), "encryption": saved.get("encryption")}
        write_atomic(folder, BUCKET_FILE, json.dumps(bucket_meta).encode())
        _remove_durably(index_file)
        shutil.rmtree(folder / "objects", ignore_errors=True)
        log.info("migrated %d objects of %s to one file per object", len(saved["objects"]), folder.name)


class _CognitoPickler(pickle.Pickler):
    def persistent_id(self, obj):
        return SIGNING_KEY if isinstance(obj, jwk.RSAKey) else None


class _CognitoUnpickler(pickle.Unpickler):
    def persistent_load(self, pid):
        if pid != SIGNING_KEY:
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        return jwk.RSAKey.import_key(load_resource("cognitoidp/resources/jwks-private.json"))


def _cognito_backends() -> list:
    return list(cognitoidp_backends[LOCAL_ACCOUNT_ID].values())


def _pickled(value) -> bytes:
    buffer = io.BytesIO()
    _CognitoPickler(buffer).dump(value)
    return buffer.getvalue()


def _unpickled(data: bytes):
    return _CognitoUnpickler(io.BytesIO(data)).load()  # written by this module, in a 0700 folder


class _Touched:
    """What the Cognito request being answered set, deleted or read in the pools' ENTRY_DICTS."""

    current: _Touched | None = None

    def __init__(self) -> None:
        self.entries: set[tuple[str, str, str, str]] = set()  # (region, pool id, dict name, key)


class _TrackedDict(OrderedDict):
    """A pool's users or tokens, noting the keys a request sets or deletes; pickled as a plain OrderedDict."""

    def __init__(self, where: tuple[str, str, str], items) -> None:
        self.where = where
        super().__init__(items)

    def note(self, key: str) -> None:
        if _Touched.current is not None:
            _Touched.current.entries.add((*self.where, key))

    def __setitem__(self, key, value) -> None:
        self.note(key)
        super().__setitem__(key, value)

    def __delitem__(self, key) -> None:
        self.note(key)
        super().__delitem__(key)

    def pop(self, key, *default):
        self.note(key)
        return super().pop(key, *default)

    def __reduce__(self):
        return OrderedDict, (list(self.items()),)


def _track(pool: CognitoIdpUserPool) -> CognitoIdpUserPool:
    for name in ENTRY_DICTS:
        setattr(pool, name, _TrackedDict((pool.region, pool.id, name), getattr(pool, name)))
    return pool


def _track_new_pools_and_user_reads() -> None:
    """Every pool tracks its ENTRY_DICTS from its creation; a user a request looks up is noted too (the request
    may change it in place: a password, a status, attributes)."""
    init, get_user = CognitoIdpUserPool.__init__, CognitoIdpUserPool._get_user

    def tracked_init(pool, *args, **kwargs):
        init(pool, *args, **kwargs)
        _track(pool)

    def noted_get_user(pool, username):
        user = get_user(pool, username)
        if user is not None and isinstance(pool.users, _TrackedDict):
            pool.users.note(user.username)
        return user

    CognitoIdpUserPool.__init__, CognitoIdpUserPool._get_user = tracked_init, noted_get_user


def _apply(pools: dict[str, dict], changes: list[tuple]) -> None:
    """Replay one journal record on {region: {pool id: pool}}."""
    for kind, region, pool_id, *rest in changes:
        regional = pools.setdefault(region, {})
        if kind == "pool":
            regional[pool_id] = rest[0]
        elif kind == "drop":
            regional.pop(pool_id, None)
        elif kind == "shell":
            cls, state = rest
            old = regional.get(pool_id)
            pool = regional[pool_id] = object.__new__(cls)
            pool.__dict__.update(state)
            for name in ENTRY_DICTS:
                setattr(pool, name, getattr(old, name) if old is not None else OrderedDict())
        elif kind == "entry" and pool_id in regional:
            name, key, value = rest
            entries = getattr(regional[pool_id], name)
            if value == DELETED:
                entries.pop(key, None)
            else:
                entries[key] = value


class Journal:
    """An append-only file of records, each durable when `append` returns; a record cut short by a crash
    (its length or crc32 does not match) ends the readable part."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, record: bytes) -> None:
        created = not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, JOURNAL_HEADER.pack(len(record), zlib.crc32(record)) + record)
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            _fsync_dir(self.path.parent)

    def records(self) -> list[bytes]:
        data = self.path.read_bytes() if self.path.exists() else b""
        records, at = [], 0
        while at + JOURNAL_HEADER.size <= len(data):
            size, crc = JOURNAL_HEADER.unpack_from(data, at)
            record = data[at + JOURNAL_HEADER.size: at + JOURNAL_HEADER.size + size]
            if len(record) < size or zlib.crc32(record) != crc:
                break
            records.append(record)
            at += JOURNAL_HEADER.size + size
        if at < len(data):
            log.warning("dropped %d bytes of an unacknowledged Cognito change cut short", len(data) - at)
        return records


class CognitoStore:
    """moto's Cognito user pools (by region): a snapshot (COGNITO_FILE, written atomically) and a journal of
    the changes since (COGNITO_JOURNAL), compacted into a new snapshot at each restore."""

    def __init__(self, state_dir: Path) -> None:
        self.file = state_dir / COGNITO_FILE
        self.journal = Journal(state_dir / COGNITO_JOURNAL)
        self._lock = threading.Lock()

    @staticmethod
    def _pools() -> dict[tuple[str, str], CognitoIdpUserPool]:
        return {(backend.region_name, pool_id): pool for backend in _cognito_backends()
                for pool_id, pool in backend.user_pools.items()}

    def restore(self) -> int:
        """Put the saved pools back into moto's backends, the journal replayed on the snapshot, then compact
        them into a new snapshot; returns how many pools."""
        pools: dict[str, dict] = _unpickled(self.file.read_bytes()) if self.file.exists() else {}
        for record in self.journal.records():
            _apply(pools, _unpickled(record))
        for region, regional in pools.items():
            cognitoidp_backends[LOCAL_ACCOUNT_ID][region].user_pools.update(
                {pool_id: _track(pool) for pool_id, pool in regional.items()})
        write_atomic(self.file.parent, self.file.name, _pickled(pools))
        write_atomic(self.file.parent, self.journal.path.name)
        return sum(len(regional) for regional in pools.values())

    def record(self, before: set[tuple[str, str]], touched: _Touched, named_pool: str | None) -> None:
        """Append what one request changed: pools created (whole) or deleted, the shell of the pool it named
        (its settings and clients; whole if it has groups, which hold users), and each touched entry."""
        pools = self._pools()
        whole = set(pools) - before
        changes: list[tuple] = [("drop", region, pool_id) for region, pool_id in before - set(pools)]
        for where in pools:
            if where[1] == named_pool and where not in whole:
                if pools[where].groups:
                    whole.add(where)
                else:
                    state = {k: v for k, v in pools[where].__dict__.items() if k not in ENTRY_DICTS}
                    changes.append(("shell", *where, type(pools[where]), state))
        changes += [("pool", *where, pools[where]) for where in whole]
        for region, pool_id, name, key in sorted(touched.entries):
            if (region, pool_id) in pools and (region, pool_id) not in whole:
                value = getattr(pools[region, pool_id], name).get(key, DELETED)
                changes.append(("entry", region, pool_id, name, key, value))
        if changes:
            self.journal.append(_pickled(changes))

    def persist_before_answering(self) -> None:
        """Wrap moto's Cognito dispatcher: changing requests one at a time, each one's changes appended to the
        journal before the answer."""
        _track_new_pools_and_user_reads()
        call_action, store = CognitoIdpResponse.call_action, self

        def persisted_call_action(response):
            if COGNITO_READ_ONLY.match(response.headers.get("X-Amz-Target", "")):
                return call_action(response)
            with store._lock:
                before, _Touched.current = set(store._pools()), _Touched()
                try:
                    return call_action(response)
                finally:
                    touched, _Touched.current = _Touched.current, None
                    store.record(before, touched, _named_pool(response))

        CognitoIdpResponse.call_action = persisted_call_action


def _named_pool(response) -> str | None:
    try:
        return json.loads(response.body or "{}").get("UserPoolId")
    except (ValueError, AttributeError):
        return None


def _read_object(path: Path) -> tuple[dict | None, bytes]:
    header_line, _, body = path.read_bytes().partition(b"\n")
    try:
        header = json.loads(header_line)
    except ValueError:
        return None, b""
    complete = len(body) == header.get("size") and zlib.crc32(body) == header.get("crc32")
    return (header if complete else None), body


def _put(backend, bucket_name: str, header: dict, body: bytes) -> FakeKey:
    fake = backend.put_object(bucket_name, header["key"], body, storage=header.get("storage"),
                              etag=(header.get("etag") or "").strip('"') or None,
                              encryption=header.get("encryption"), disable_notification=True)
    fake.set_metadata(dict(header.get("metadata") or {}))
    fake.last_modified = datetime.fromisoformat(header["last_modified"])
    return fake


def persist_before_answering(store: Store) -> None:
    """Wrap moto's S3 request handlers: after a changing request, sync what it touched, then answer."""
    key_response, bucket_response = S3Response._key_response, S3Response._bucket_response

    def _key_response(self, request, full_url):
        try:
            return key_response(self, request, full_url)
        finally:
            if request.method in CHANGING and self.bucket_name:
                store.sync_key(self.bucket_name, self.parse_key_name())

    def _bucket_response(self, request, full_url):
        try:
            return bucket_response(self, request, full_url)
        finally:
            if request.method in CHANGING and self.bucket_name:
                store.sync_bucket(self.bucket_name, keys=request.method == "POST")  # POST: DeleteObjects, form upload

    S3Response._key_response, S3Response._bucket_response = _key_response, _bucket_response


def restore(state_dir: Path) -> int:
    """Put the persisted buckets and objects back into moto's backend; returns the object count."""
    return Store(state_dir).restore()


def _list_moto_modules_once() -> None:
    """moto lists its package folder (a stat per service, ~180) twice per request to find the backend for
    the Host header; the folder does not change while the server runs: list it once (a third of the time
    moto spends on an S3 GET of 500 events, measured)."""
    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log line per request
    args.state_dir.mkdir(parents=True, exist_ok=True)

    store = Store(args.state_dir)
    log.info("restored %d objects from %s", store.restore(), args.state_dir)
    persist_before_answering(store)
    cognito = CognitoStore(args.state_dir)
    log.info("restored %d Cognito user pools", cognito.restore())
    cognito.persist_before_answering()
    _list_moto_modules_once()
    server = ThreadedMotoServer(ip_address=args.host, port=args.port, verbose=False)
    server.start()
    log.info("moto listening on http://%s:%d", args.host, args.port)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    store.sync_all()  # writes nothing unless a bucket changed outside S3's API (CloudFormation)
    server.stop()


if __name__ == "__main__":
    main()
