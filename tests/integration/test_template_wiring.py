"""The local API's routes, handler and environment follow the template: edit a copy, serve it, see the change."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from clickstream import aws
from clickstream.ingestion import raw
from clickstream.shop import samples
from clickstream.local import stack
from clickstream.local.stack import free_port

ROOT = Path(__file__).resolve().parents[2]


def edit_once(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} must appear exactly once in {path.name}"
    path.write_text(text.replace(old, new))


def wait_for_http(url: str, process: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the API server exited ({process.returncode}):\n{log.read_text()[-2000:]}"
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"the API server did not answer on {url} within {timeout} s:\n{log.read_text()[-2000:]}")


def stop(process: subprocess.Popen) -> None:
    """SIGTERM by pid, SIGKILL if it does not exit."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def test_routes_handler_and_environment_come_from_the_template(tmp_path, local_stack):
    # Given a copy of the project's templates and Lambda code, with another route, another raw prefix and
    # another CORS origin
    shutil.copytree(ROOT / "cloudformation", tmp_path / "cloudformation")
    shutil.copytree(ROOT / "lambdas", tmp_path / "lambdas")
    template = tmp_path / "cloudformation" / "ingestion.yaml"
    edit_once(template, "RouteKey: POST /clickstream\n", "RouteKey: POST /v2/track\n")
    edit_once(template, "RAW_PREFIX: events/", "RAW_PREFIX: custom/")
    edit_once(template, 'Type: CommaDelimitedList\n    Default: ""\n', 'Type: CommaDelimitedList\n    Default: https://shop.example.com\n')

    # When the local API server is started on that copy, next to the session stack's moto
    port = free_port()
    env = {
        **os.environ,
        "CLICKSTREAM_PROJECT_ROOT": str(tmp_path),
        "CLICKSTREAM_HOME": str(local_stack.home),
        "CLICKSTREAM_TARGET": "local",
        **{var: str(getattr(local_stack, field)) for field, var in local_stack.PORT_ENV.items()},
        "CLICKSTREAM_API_PORT": str(port),
    }
    log = tmp_path / "api.log"
    s3 = aws.client("s3", local_stack)
    bucket = stack.status(local_stack)["raw_bucket"]
    written: list[str] = []
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "clickstream.local.api_server", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_http(base + "/", process, log)
        event = samples.canonical_event("page_view", random.Random())
        events_before = {item["Key"] for item in raw.list_objects(s3, bucket)}

        # Then the edited route serves the ingest function, which writes under the edited prefix
        response = httpx.post(base + "/v2/track", json=event, timeout=30)
        assert response.status_code == 200, response.text
        key = response.json()["object_key"]
        written.append(key)
        assert key.startswith("custom/"), key
        assert [item["Key"] for item in raw.list_objects(s3, bucket, prefix="custom/")] == [key]
        (item,) = raw.read_object(s3, bucket, key)["events"]
        assert item["event"]["event_id"] == event["event_id"]
        assert item["server"]["stage"] == "$default"

        # and the route that the copy no longer declares is API Gateway's 404
        old = httpx.post(base + "/clickstream", json=event, timeout=30)
        assert old.status_code == 404 and old.json() == {"message": "Not Found"}
        assert {item["Key"] for item in raw.list_objects(s3, bucket)} == events_before

        # and CORS admits the copy's origin and, locally, the loopback's, and no other
        def allowed(origin: str) -> str | None:
            return httpx.options(base + "/v2/track", headers={"origin": origin, "access-control-request-method": "POST"},
                                 timeout=30).headers.get("access-control-allow-origin")

        assert allowed("https://shop.example.com") == "https://shop.example.com"
        assert allowed("http://127.0.0.1:5500") == "http://127.0.0.1:5500"
        assert allowed("https://StorefrontDistribution.DomainName") is None  # the default, replaced in the copy
        assert allowed("https://other.example") is None
    finally:
        stop(process)
        for key in written:
            s3.delete_object(Bucket=bucket, Key=key)
