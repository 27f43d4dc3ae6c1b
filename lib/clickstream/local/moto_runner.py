"""The local AWS endpoint: a moto server whose S3 objects and Cognito user pools survive a crash of the server.

moto keeps state in memory only. This process persists every S3 request that changes an object or a
bucket before moto's answer is sent: one file per object (a JSON header line, then the bytes) written
to a temporary file, fsynced, renamed over the old one, then its folder fsynced; files 0600, folders
0700. At start it restores them (migrating, once, the index.json + objects/ layout older versions saved
at stop). Cognito (pools, app clients, users and their subs, whose ids moto makes up) is saved whole in
one file after every Cognito request that may change it, before the answer. Nothing is left to save at
stop, so a SIGKILL loses nothing acknowledged.

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
import tempfile
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

from joserfc import jwk
from moto import backends
from moto.cognitoidp.models import cognitoidp_backends
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
COGNITO_READ_ONLY = re.compile(r"^AWSCognitoIdentityProviderService\.(Describe|List|Get)")
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


class CognitoStore:
    """moto's Cognito user pools (by region) in one file, rewritten whole and atomically (write_atomic)."""

    def __init__(self, state_dir: Path) -> None:
        self.file = state_dir / COGNITO_FILE
        self._lock = threading.Lock()

    def save(self) -> None:
        buffer = io.BytesIO()
        _CognitoPickler(buffer).dump({backend.region_name: backend.user_pools for backend in _cognito_backends()})
        write_atomic(self.file.parent, self.file.name, buffer.getvalue())

    def restore(self) -> int:
        """Put the saved pools back into moto's backends; returns how many."""
        if not self.file.exists():
            return 0
        with open(self.file, "rb") as stream:
            saved = _CognitoUnpickler(stream).load()  # written by this module, in a 0700 folder
        for region, pools in saved.items():
            cognitoidp_backends[LOCAL_ACCOUNT_ID][region].user_pools.update(pools)
        return sum(len(pools) for pools in saved.values())

    def persist_before_answering(self) -> None:
        """Wrap moto's Cognito dispatcher: changing requests one at a time, the pools saved before the answer."""
        call_action, store = CognitoIdpResponse.call_action, self

        def persisted_call_action(response):
            if COGNITO_READ_ONLY.match(response.headers.get("X-Amz-Target", "")):
                return call_action(response)
            with store._lock:
                try:
                    return call_action(response)
                finally:
                    store.save()

        CognitoIdpResponse.call_action = persisted_call_action


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
