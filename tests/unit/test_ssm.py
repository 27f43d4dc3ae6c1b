"""clickstream.infra.ssm: the Session Manager port-forwarding command, and its process run with a fake `aws` on PATH."""

from __future__ import annotations

import json
import os
import socket
import stat
import sys
from pathlib import Path

import pytest

from clickstream.infra import ssm
from clickstream.infra.templates import load_stacks
from clickstream.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
INSTANCE = "i-0123456789abcdef0"

# Stands in for `aws ssm start-session`: writes down its argv, then listens on the local port of --parameters
# (what the real CLI does once the session is open), or exits or hangs as FAKE_AWS_MODE says.
FAKE_AWS = """#!{python}
import json, os, socket, sys, time
args = sys.argv[1:]
with open(os.environ["FAKE_AWS_ARGV"], "w") as f:
    json.dump(args, f)
mode = os.environ.get("FAKE_AWS_MODE", "listen")
if mode == "fail":
    print("An error occurred (TargetNotConnected) when calling the StartSession operation: {{}} is not connected."
          .format(args[args.index("--target") + 1]), flush=True)
    sys.exit(254)
if mode == "hang":
    time.sleep(60)
port = int(json.loads(args[args.index("--parameters") + 1])["localPortNumber"][0])
server = socket.create_server(("127.0.0.1", port))
print("Port {{}} opened for sessionId fake.".format(port), flush=True)
while True:
    server.accept()[0].close()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def fake_path(tmp_path: Path) -> Path:
    """A PATH folder with the fake `aws` and a `session-manager-plugin` (never run: the fake CLI does not call it)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    executable(folder / "aws", FAKE_AWS.format(python=sys.executable))
    executable(folder / "session-manager-plugin", "#!/bin/sh\nexit 0\n")
    return folder


def fake_env(fake_path: Path, mode: str = "listen") -> dict[str, str]:
    return {"PATH": f"{fake_path}:/usr/bin:/bin", "FAKE_AWS_ARGV": str(fake_path / "argv.json"), "FAKE_AWS_MODE": mode}


def test_the_port_forwarding_command_to_the_instance():
    assert ssm.port_forward_command(INSTANCE, 8787, 9000, "ap-southeast-1") == [
        "aws", "ssm", "start-session", "--target", INSTANCE, "--document-name", "AWS-StartPortForwardingSession",
        "--parameters", '{"portNumber":["8787"],"localPortNumber":["9000"]}', "--region", "ap-southeast-1"]


def test_the_port_forwarding_command_to_a_remote_host_through_the_instance():
    assert ssm.port_forward_command("i-0abc1234", "5432", 15432, "us-east-1", remote_host="10.0.3.17") == [
        "aws", "ssm", "start-session", "--target", "i-0abc1234",
        "--document-name", "AWS-StartPortForwardingSessionToRemoteHost",
        "--parameters", '{"host":["10.0.3.17"],"portNumber":["5432"],"localPortNumber":["15432"]}',
        "--region", "us-east-1"]


def test_the_dashboard_command_is_the_analytics_stack_output_with_the_real_instance_id():
    settings = Settings.from_env({}, project=ROOT, home=ROOT / ".clickstream-unused")
    outputs = {s.path.stem: s for s in load_stacks(settings)}["analytics"].outputs()
    as_printed = outputs["DashboardSessionCommand"].replace(f"--target {outputs['DwInstanceId']} ",
                                                            f"--target {INSTANCE} ")
    built = ssm.dashboard_command({**outputs, "DwInstanceId": INSTANCE}, settings.region)
    assert ssm.shell_command(built) == as_printed
    assert built[built.index("--parameters") + 1] == '{"portNumber":["8787"],"localPortNumber":["8787"]}'
    assert ssm.dashboard_command({"DwInstanceId": INSTANCE, "DashboardPort": "8787"}, "us-east-1", 3400)[-3] == (
        '{"portNumber":["8787"],"localPortNumber":["3400"]}')


@pytest.mark.parametrize("instance_id", ["i-0123456789abcdef0", "i-0abc1234"])
def test_real_instance_ids_are_accepted(instance_id):
    assert ssm.check_instance_id(instance_id) == instance_id


@pytest.mark.parametrize("instance_id", ["i-0123456789ABCDEF0", "i-0abc123", "i-0123456789abcdef01", "i-xyz12345",
                                         "i-", "", None, 123, " i-0abc1234"])
def test_anything_else_is_refused_as_not_an_instance_id(instance_id):
    with pytest.raises(ssm.SessionManagerError, match="not an EC2 instance id"):
        ssm.port_forward_command(instance_id, 8787, 8787, "us-east-1")


def test_a_logical_id_is_refused_with_where_the_real_id_is():
    with pytest.raises(ssm.SessionManagerError, match="logical id.*stack outputs.*DwInstanceId"):
        ssm.port_forward_command("DwInstance", 8787, 8787, "us-east-1")
    with pytest.raises(ssm.SessionManagerError, match="not an EC2 instance id"):
        ssm.port_forward_command("DwInstance", 0, 8787, "nowhere")  # named before the port and the region


@pytest.mark.parametrize("arguments, message", [
    ((INSTANCE, 0, 8787, "us-east-1"), "remote_port must be a port number"),
    ((INSTANCE, 8787, 65536, "us-east-1"), "local_port must be a port number"),
    ((INSTANCE, True, 8787, "us-east-1"), "remote_port must be a port number"),
    ((INSTANCE, "80; rm", 8787, "us-east-1"), "remote_port must be a port number"),
    ((INSTANCE, 8787, 8787, "US East"), "region must be an AWS region"),
    ((INSTANCE, 8787, 8787, "us-east-1", "db host"), "remote_host must be a host name"),
])
def test_ports_region_and_host_are_checked(arguments, message):
    with pytest.raises(ssm.SessionManagerError, match=message):
        ssm.port_forward_command(*arguments)


def test_missing_tools_say_how_to_install_them():
    with pytest.raises(ssm.SessionManagerError) as nothing:
        ssm.require_tools(lambda tool: None)
    assert "needs aws and session-manager-plugin on PATH" in str(nothing.value)
    assert "getting-started-install.html" in str(nothing.value)
    assert "session-manager-working-with-install-plugin.html" in str(nothing.value)
    with pytest.raises(ssm.SessionManagerError) as no_plugin:
        ssm.require_tools(lambda tool: "/usr/bin/aws" if tool == "aws" else None)
    assert "needs session-manager-plugin on PATH" in str(no_plugin.value)
    assert "getting-started-install.html" not in str(no_plugin.value)
    assert ssm.require_tools(lambda tool: f"/usr/local/bin/{tool}") is None


def test_start_refuses_without_the_plugin_and_starts_nothing(fake_path):
    (fake_path / "session-manager-plugin").unlink()
    with pytest.raises(ssm.SessionManagerError, match="needs session-manager-plugin on PATH"):
        ssm.start_port_forward(INSTANCE, 8787, free_port(), "us-east-1", env=fake_env(fake_path))
    assert not (fake_path / "argv.json").exists()


def test_start_waits_for_the_local_port_and_stop_ends_the_process(fake_path):
    port = free_port()
    with ssm.start_port_forward(INSTANCE, 8787, port, "us-east-1", env=fake_env(fake_path)) as forward:
        assert forward.running() and ssm.accepts_connections(port)
        assert forward.url == f"http://127.0.0.1:{port}/"
        assert json.loads((fake_path / "argv.json").read_text()) == ssm.port_forward_command(
            INSTANCE, 8787, port, "us-east-1")[1:]
        assert f"Port {port} opened" in forward.output()
        pid = forward.pid
    assert not forward.running() and forward.process.returncode is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not ssm.accepts_connections(port)


def test_a_session_that_fails_reports_what_the_cli_printed(fake_path):
    with pytest.raises(ssm.SessionManagerError, match=r"exited with code 254:\n.*TargetNotConnected.*i-0abc1234"):
        ssm.start_port_forward("i-0abc1234", 8787, free_port(), "us-east-1", env=fake_env(fake_path, "fail"))


def test_a_port_that_never_opens_times_out_and_the_process_is_stopped(fake_path, monkeypatch):
    started = []
    real_popen = ssm.subprocess.Popen
    monkeypatch.setattr(ssm.subprocess, "Popen", lambda *a, **k: started.append(real_popen(*a, **k)) or started[-1])
    with pytest.raises(ssm.SessionManagerError, match="did not open local port .* within 0.5 s"):
        ssm.start_port_forward(INSTANCE, 8787, free_port(), "us-east-1", timeout=0.5, env=fake_env(fake_path, "hang"))
    (process,) = started
    assert process.returncode is not None


def test_a_taken_local_port_is_refused_before_starting(fake_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(ssm.SessionManagerError, match=f"local port {port} is already in use"):
            ssm.start_port_forward(INSTANCE, 8787, port, "us-east-1", env=fake_env(fake_path))
    assert not (fake_path / "argv.json").exists()
