"""The local AWS endpoint: a moto server whose S3 objects outlive a restart.

moto keeps state in memory only. This process restores the saved buckets into moto's S3 backend at
start and saves them again (only what changed) on SIGTERM/SIGINT, which is how `clickstream down` stops it.

    python -m clickstream.local.moto_runner --port 4566 --state-dir .clickstream/s3
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import threading
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

from moto import backends
from moto.s3.models import FakeKey, s3_backends
from moto.server import ThreadedMotoServer

from clickstream.settings import LOCAL_ACCOUNT_ID

log = logging.getLogger("clickstream.moto")
INDEX = "index.json"


def _backend():
    return s3_backends[LOCAL_ACCOUNT_ID]["aws"]


def _object_path(bucket_dir: Path, key: str) -> Path:
    return bucket_dir / "objects" / quote(key, safe="")


def save(state_dir: Path) -> int:
    """Write every bucket's objects that changed since the last save; returns how many were written."""
    written = 0
    backend = _backend()
    for bucket in list(backend.buckets.values()):
        bucket_dir = state_dir / bucket.name
        (bucket_dir / "objects").mkdir(parents=True, exist_ok=True)
        index_file = bucket_dir / INDEX
        old = json.loads(index_file.read_text()).get("objects", {}) if index_file.exists() else {}
        new = {}
        for key, fake in list(bucket.keys.items()):
            if not isinstance(fake, FakeKey):
                continue
            new[key] = {
                "etag": fake.etag,
                "last_modified": fake.last_modified.isoformat(),
                "encryption": fake.encryption,
                "metadata": dict(fake.metadata),
            }
            if old.get(key, {}).get("etag") != fake.etag or not _object_path(bucket_dir, key).exists():
                _object_path(bucket_dir, key).write_bytes(fake.value)
                written += 1
        for gone in old.keys() - new.keys():
            _object_path(bucket_dir, gone).unlink(missing_ok=True)
        tmp = index_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"region": bucket.region_name, "encryption": bucket.encryption, "objects": new}))
        os.replace(tmp, index_file)
    return written


def restore(state_dir: Path) -> int:
    """Put the saved buckets and objects back into moto's backend; returns the object count."""
    restored = 0
    backend = _backend()
    for index_file in sorted(state_dir.glob(f"*/{INDEX}")):
        bucket_dir = index_file.parent
        saved = json.loads(index_file.read_text())
        backend.create_bucket(bucket_dir.name, saved.get("region") or "us-east-1")
        if saved.get("encryption"):
            backend.put_bucket_encryption(bucket_dir.name, saved["encryption"])
        for key, meta in saved["objects"].items():
            fake = backend.put_object(
                bucket_dir.name, key, _object_path(bucket_dir, key).read_bytes(), encryption=meta.get("encryption")
            )
            fake.set_metadata(meta.get("metadata") or {})
            fake.last_modified = datetime.fromisoformat(meta["last_modified"])
            restored += 1
    return restored


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

    log.info("restored %d objects from %s", restore(args.state_dir), args.state_dir)
    _list_moto_modules_once()
    server = ThreadedMotoServer(ip_address=args.host, port=args.port, verbose=False)
    server.start()
    log.info("moto listening on http://%s:%d", args.host, args.port)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    log.info("saved %d changed objects to %s", save(args.state_dir), args.state_dir)
    server.stop()


if __name__ == "__main__":
    main()
