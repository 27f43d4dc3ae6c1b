"""moto_runner's Cognito persistence: a snapshot plus an append-only journal, so a change costs what it changes,
a SIGKILL (even in the middle of a write) loses or corrupts nothing acknowledged, and the files are 0600."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from clickstream.local.moto_runner import COGNITO_FILE, COGNITO_JOURNAL, JOURNAL_HEADER, Journal
from clickstream.local.stack import free_port, http_ok, stop_process, wait_until

PASSWORD = "Journal-Shopper-1"


class Runner:
    """`python -m clickstream.local.moto_runner` on a free port over `state_dir`, killed by pid."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir, self.port = state_dir, free_port()
        self.log = state_dir.parent / "moto.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "clickstream.local.moto_runner", "--port", str(self.port),
                 "--state-dir", str(self.state_dir)], stdout=log, stderr=subprocess.STDOUT)
        wait_until(lambda: http_ok(f"http://127.0.0.1:{self.port}/moto-api/"), "moto", self.log, self.process)

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def cognito(self):
        return boto3.client("cognito-idp", endpoint_url=f"http://127.0.0.1:{self.port}", region_name="us-east-1",
                            aws_access_key_id="local", aws_secret_access_key="local")


@pytest.fixture
def runner(tmp_path) -> Iterator[Runner]:
    (tmp_path / "state").mkdir(mode=0o700)
    runner = Runner(tmp_path / "state")
    runner.start()
    try:
        yield runner
    finally:
        if runner.process.poll() is None:
            stop_process(runner.process.pid, timeout=10)


def make_pool(cognito) -> tuple[str, str]:
    pool = cognito.create_user_pool(PoolName="shop", UsernameAttributes=["email"])["UserPool"]["Id"]
    client = cognito.create_user_pool_client(UserPoolId=pool, ClientName="web", ExplicitAuthFlows=[
        "ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"])["UserPoolClient"]["ClientId"]
    return pool, client


def create_user(cognito, pool: str, email: str) -> str:
    user = cognito.admin_create_user(UserPoolId=pool, Username=email, MessageAction="SUPPRESS",
                                     UserAttributes=[{"Name": "email", "Value": email}])["User"]
    cognito.admin_set_user_password(UserPoolId=pool, Username=email, Password=PASSWORD, Permanent=True)
    return attributes(user)["sub"]


def attributes(user: dict) -> dict[str, str]:
    return {a["Name"]: a["Value"] for a in user.get("Attributes", user.get("UserAttributes", []))}


def sign_in(cognito, client: str, flow: str, **parameters) -> dict:
    return cognito.initiate_auth(ClientId=client, AuthFlow=flow, AuthParameters=parameters)["AuthenticationResult"]


def test_pools_users_and_tokens_survive_sigkill_and_the_journal_is_compacted_at_start(runner):
    cognito = runner.cognito()
    pool, client = make_pool(cognito)
    subs = {f"s{n}@example.com": create_user(cognito, pool, f"s{n}@example.com") for n in range(3)}
    signed_in = sign_in(cognito, client, "USER_PASSWORD_AUTH", USERNAME="s1@example.com", PASSWORD=PASSWORD)
    cognito.admin_delete_user(UserPoolId=pool, Username="s2@example.com")
    journal = runner.state_dir / COGNITO_JOURNAL
    assert journal.stat().st_size > 0

    runner.kill()
    runner.start()

    assert journal.stat().st_size == 0  # compacted into the snapshot at start
    cognito = runner.cognito()
    users = {attributes(u)["email"]: attributes(u)["sub"] for u in cognito.list_users(UserPoolId=pool)["Users"]}
    assert users == {email: sub for email, sub in subs.items() if email != "s2@example.com"}
    described = cognito.describe_user_pool_client(UserPoolId=pool, ClientId=client)["UserPoolClient"]
    assert described["ClientName"] == "web"
    assert sign_in(cognito, client, "REFRESH_TOKEN_AUTH", REFRESH_TOKEN=signed_in["RefreshToken"])["IdToken"]
    assert sign_in(cognito, client, "USER_PASSWORD_AUTH", USERNAME="s0@example.com", PASSWORD=PASSWORD)["IdToken"]
    for name in (COGNITO_FILE, COGNITO_JOURNAL):
        assert stat.S_IMODE((runner.state_dir / name).stat().st_mode) == 0o600, name


def test_a_change_costs_the_same_with_few_or_many_shoppers(runner):
    cognito = runner.cognito()
    pool, _ = make_pool(cognito)
    journal = runner.state_dir / COGNITO_JOURNAL

    def appended_by_one_new_shopper(number: int) -> int:
        before = journal.stat().st_size
        create_user(cognito, pool, f"shopper-{number:04d}@example.com")
        return journal.stat().st_size - before

    few = appended_by_one_new_shopper(0)
    for number in range(1, 80):
        create_user(cognito, pool, f"shopper-{number:04d}@example.com")
    many = appended_by_one_new_shopper(80)
    assert few > 0 and abs(many - few) <= few // 10, (few, many)  # the whole state would grow 80-fold


def test_a_record_cut_short_is_dropped_and_the_complete_ones_are_restored(runner):
    cognito = runner.cognito()
    pool, _ = make_pool(cognito)
    sub = create_user(cognito, pool, "kept@example.com")
    runner.kill()
    journal = runner.state_dir / COGNITO_JOURNAL
    record = b"the pickled changes of a request"
    with open(journal, "ab") as out:  # a SIGKILL in the middle of appending a record
        out.write(JOURNAL_HEADER.pack(len(record), zlib.crc32(record)) + record[:10])

    runner.start()

    (user,) = runner.cognito().list_users(UserPoolId=pool)["Users"]
    assert attributes(user)["sub"] == sub


WRITER = """
import sys
from pathlib import Path
from clickstream.local.moto_runner import Journal
journal = Journal(Path(sys.argv[1]))
for n in range(100000):
    journal.append(bytes([n % 256]) * 300000)
    print(n, flush=True)
"""


def test_sigkill_while_appending_never_corrupts_the_journal(tmp_path):
    path = tmp_path / "journal"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        acknowledged = [writer.stdout.readline() for _ in range(25)]
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=10)

    records = Journal(path).records()
    assert len(records) >= len(acknowledged) and all(acknowledged)
    assert all(record == bytes([n % 256]) * 300000 for n, record in enumerate(records))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
