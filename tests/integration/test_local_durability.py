"""The local stack keeps what it acknowledged: S3 objects survive a SIGKILL of moto, and `down` signals only
the processes `up` started. Real moto server over HTTP, started by pid and stopped by pid."""

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import boto3
import pytest

from clickstream.local import stack
from clickstream.local.stack import free_port
from clickstream.settings import Settings

BUCKET = "durability-test"


@pytest.fixture
def settings(tmp_path) -> Settings:
    tmp_path.chmod(0o755)
    return Settings.from_env({"CLICKSTREAM_HOME": str(tmp_path / "home")}, aws_port=free_port(),
                             api_port=free_port(), dw_port=free_port(), oltp_port=free_port())


@pytest.fixture
def moto(settings):
    """Start moto as `up` does (recorded in the state file); yields a starter; stops what it started by pid."""
    started = []

    def start() -> dict:
        settings.home.mkdir(parents=True, exist_ok=True)
        state = stack.read_state(settings)
        svc = stack._ensure_process(settings, "aws", dict(os.environ), None, lambda _: None)
        started.append(svc)
        state.setdefault("services", {})["aws"] = svc
        stack.write_state(settings, state)
        return svc

    yield start
    for svc in started:
        stack.stop_process(svc["pid"], timeout=10, started=svc["started"])


def s3_client(settings):
    return boto3.client("s3", endpoint_url=settings.aws_endpoint_url, region_name="us-east-1",
                        aws_access_key_id="local", aws_secret_access_key="local")


def kill9(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    stack.stop_process(pid, timeout=10)  # reaps it


def test_acknowledged_objects_survive_a_sigkill_of_moto(settings, moto):
    svc = moto()
    s3 = s3_client(settings)
    s3.create_bucket(Bucket=BUCKET)
    bodies = {f"raw/2026/12/06/{i:03d}.json": os.urandom(1000 + i) for i in range(40)}
    etags = {key: s3.put_object(Bucket=BUCKET, Key=key, Body=body, Metadata={"n": str(len(body))})["ETag"]
             for key, body in bodies.items()}
    s3.put_object(Bucket=BUCKET, Key="overwritten", Body=b"first")
    bodies["overwritten"] = b"second"
    etags["overwritten"] = s3.put_object(Bucket=BUCKET, Key="overwritten", Body=b"second")["ETag"]
    s3.put_object(Bucket=BUCKET, Key="deleted", Body=b"x")
    s3.delete_object(Bucket=BUCKET, Key="deleted")
    s3.put_object(Bucket=BUCKET, Key="gone/1", Body=b"y")
    s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": "gone/1"}]})
    s3.copy_object(Bucket=BUCKET, Key="copy", CopySource={"Bucket": BUCKET, "Key": "raw/2026/12/06/000.json"})
    bodies["copy"], etags["copy"] = bodies["raw/2026/12/06/000.json"], etags["raw/2026/12/06/000.json"]
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key="multi")["UploadId"]
    parts = [s3.upload_part(Bucket=BUCKET, Key="multi", UploadId=upload, PartNumber=n, Body=part)["ETag"]
             for n, part in ((1, b"a" * 5 * 1024 * 1024), (2, b"b" * 10))]
    etags["multi"] = s3.complete_multipart_upload(
        Bucket=BUCKET, Key="multi", UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etag} for n, etag in enumerate(parts, 1)]})["ETag"]
    bodies["multi"] = b"a" * 5 * 1024 * 1024 + b"b" * 10

    kill9(svc["pid"])
    keys = settings.home / "s3" / BUCKET / "keys"
    torn = keys / "torn.obj"  # a write the crash cut short, never acknowledged
    torn.write_bytes(json.dumps({"key": "torn", "size": 100, "crc32": 0}).encode() + b"\n" + b"0" * 10)
    (keys / ".tmp-cut").write_bytes(b"{")
    moto()

    assert not torn.exists() and not (keys / ".tmp-cut").exists()
    listed = {o["Key"]: o["ETag"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert listed == etags, "every acknowledged object back, the deleted ones not"
    for key, body in bodies.items():
        got = s3.get_object(Bucket=BUCKET, Key=key)
        assert (got["Body"].read(), got["ETag"]) == (body, etags[key]), key
    assert s3.head_object(Bucket=BUCKET, Key="raw/2026/12/06/007.json")["Metadata"] == {"n": "1007"}


def test_persisted_files_and_folders_are_private(settings, moto):
    moto()
    s3 = s3_client(settings)
    s3.create_bucket(Bucket=BUCKET)
    for i in range(3):
        s3.put_object(Bucket=BUCKET, Key=f"k/{i}", Body=b"secret")
    state_dir = settings.home / "s3"
    files = [p for p in state_dir.rglob("*") if p.is_file()]
    folders = [state_dir, *(p for p in state_dir.rglob("*") if p.is_dir())]
    assert len(files) >= 3, "the objects are on disk before `down`"
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {"0o600"}
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in folders} == {"0o700"}


def test_state_saved_by_the_old_layout_is_restored_and_made_private(settings, moto):
    old = settings.home / "s3" / BUCKET
    (old / "objects").mkdir(parents=True)
    body = b'{"event": 1}\n'
    (old / "objects" / quote("raw/a b.json", safe="")).write_bytes(body)
    index = {"region": "us-east-1", "encryption": None, "objects": {"raw/a b.json": {
        "etag": '"0123456789abcdef0123456789abcdef-2"', "last_modified": "2026-12-01T10:00:00+00:00",
        "encryption": None, "metadata": {"Content-Type": "application/json"}}}}
    (old / "index.json").write_text(json.dumps(index))

    svc = moto()
    s3 = s3_client(settings)
    got = s3.get_object(Bucket=BUCKET, Key="raw/a b.json")
    assert (got["Body"].read(), got["ETag"], got["ContentType"]) == (
        body, '"0123456789abcdef0123456789abcdef-2"', "application/json")
    assert not (old / "index.json").exists() and not (old / "objects").exists(), "migrated once"
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in old.rglob("*") if p.is_file()} == {"0o600"}

    kill9(svc["pid"])
    moto()
    assert s3.get_object(Bucket=BUCKET, Key="raw/a b.json")["Body"].read() == body


def test_down_leaves_alone_a_process_that_took_over_the_recorded_pid(settings, moto):
    real = moto()
    decoy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", stack.PROCESS_MODULES["aws"],
                              "--port", str(settings.aws_port)], start_new_session=True)
    try:
        for record in ({"port": settings.aws_port, "pid": decoy.pid},  # as an older version wrote it
                       {**real, "pid": decoy.pid}):  # start time and command line of the real one
            stack.write_state(settings, {"services": {"aws": record}})
            assert "aws" not in stack.down(settings)
            time.sleep(0.2)
            assert decoy.poll() is None, f"down killed a process it did not start ({record})"
        assert stack.process_alive(real["pid"], stack.PROCESS_MODULES["aws"]), "nor the unrecorded real one"
    finally:
        decoy.kill()
        decoy.wait()


def test_down_stops_the_recorded_moto_quickly_and_only_by_its_identity(settings, moto):
    svc = moto()
    assert {"started", "cmdline"} <= svc.keys()
    assert svc["cmdline"] == stack.service_argv(settings, "aws", settings.aws_port)
    assert stack.owns(settings, "aws", svc)
    assert not stack.owns(settings, "aws", {**svc, "started": svc["started"] - 1})
    assert not stack.owns(settings, "aws", {**svc, "cmdline": [*svc["cmdline"][:-1], "/elsewhere"]})
    s3 = s3_client(settings)
    s3.create_bucket(Bucket=BUCKET)
    for i in range(200):
        s3.put_object(Bucket=BUCKET, Key=f"k/{i}", Body=b"x" * 1024)
    files = {p: p.stat().st_mtime_ns for p in (settings.home / "s3").rglob("*") if p.is_file()}

    began = time.monotonic()
    assert stack.down(settings) == ["aws"]
    assert time.monotonic() - began < 5
    assert not Path(f"/proc/{svc['pid']}").exists()
    assert {p: p.stat().st_mtime_ns for p in (settings.home / "s3").rglob("*") if p.is_file()} == files, \
        "nothing left to write at stop"


def test_user_pool_app_client_shoppers_and_subs_survive_a_sigkill_of_moto(settings, moto):
    from clickstream.local import cognito
    from clickstream.shop import shoppers

    svc = moto()
    ids = cognito.ensure_user_pools(settings)
    sub = shoppers.create_shopper(settings, "ada@example.com", "Correct-Horse-42")
    token = shoppers.sign_in(settings, "ada@example.com", "Correct-Horse-42")["IdToken"]

    kill9(svc["pid"])
    moto()

    assert cognito.ensure_user_pools(settings) == ids, "the same pool and client, nothing created again"
    assert shoppers.shop_pool(settings) == shoppers.ShopPool(ids["UserPool"], ids["UserPoolClient"])
    again = shoppers.sign_in(settings, "ada@example.com", "Correct-Horse-42")["IdToken"]
    issuer = f"https://cognito-idp.{settings.region}.amazonaws.com/{ids['UserPool']}"
    verifier = cognito.JwtVerifier(issuer, (ids["UserPoolClient"],), cognito.jwks_source(issuer, settings))
    assert verifier.claims(token)["sub"] == verifier.claims(f"Bearer {again}")["sub"] == sub
    assert stat.S_IMODE((settings.home / "s3" / "cognito-idp.pickle").stat().st_mode) == 0o600
