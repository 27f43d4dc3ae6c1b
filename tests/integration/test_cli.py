"""The `clickstream` console script as a learner runs it, against the test stack."""

import json
import os
import re
import subprocess
import sys

from clickstream import aws, raw
from clickstream.local import stack


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clickstream.cli", *args], capture_output=True, text=True,
                          env=dict(os.environ), timeout=300)


def test_help_lists_every_command():
    result = cli("--help")
    assert result.returncode == 0
    for command in ("up", "down", "status", "psql", "send", "raw", "demo"):
        assert re.search(rf"^\s+{command}\s", result.stdout, re.M), command


def test_demo_sends_through_the_api_and_lists_what_it_wrote(local_stack):
    s3 = aws.client("s3", local_stack)
    bucket = stack.status(local_stack)["raw_bucket"]
    before = {o["Key"] for o in raw.list_objects(s3, bucket)}
    result = cli("demo")
    assert result.returncode == 0, result.stderr
    after = {o["Key"] for o in raw.list_objects(s3, bucket)}
    written = int(re.search(r"this run wrote (\d+) objects", result.stdout).group(1))
    assert written == len(after - before) == 14  # 2 batches + 10 singles + 1 legacy batch + 1 mixed batch
    assert "50 accepted in 2 requests" in result.stdout and "rejected #0" in result.stdout
    loaded = re.search(r"(\d+) objects loaded, \d+ already loaded; (\d+) rows inserted", result.stdout)
    assert loaded and int(loaded.group(1)) >= written, result.stdout
    again = cli("demo")
    assert re.search(r"\d+ objects loaded, \d+ already loaded; 0 rows inserted", again.stdout), again.stdout


def test_send_and_raw_json(local_stack):
    sent = json.loads(cli("send", "--events", "30", "--batch-size", "10", "--seed", "99", "--json").stdout)
    assert sent["accepted"] == 30 and sent["requests"] == 3 and len(sent["object_keys"]) == 3
    listed = {o["key"] for o in json.loads(cli("raw", "--json").stdout)}
    assert set(sent["object_keys"]) <= listed


def test_bad_settings_and_the_unbuilt_aws_target_give_one_clear_line():
    for env, expected in (({"CLICKSTREAM_API_PORT": "abc"}, "CLICKSTREAM_API_PORT must be a port number"),
                          ({"CLICKSTREAM_TARGET": "gcp"}, "target must be one of"),
                          ({"CLICKSTREAM_TARGET": "aws"}, "clickstream deploy")):
        result = subprocess.run([sys.executable, "-m", "clickstream.cli", "status"], capture_output=True, text=True,
                                env={**os.environ, **env}, timeout=60)
        assert result.returncode == 1 and expected in result.stderr and "Traceback" not in result.stderr, env
