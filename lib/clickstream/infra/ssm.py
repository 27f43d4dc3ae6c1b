"""Session Manager port forwarding to an instance of the stacks: the `aws ssm start-session` command, built and run.

    argv = ssm.port_forward_command("i-0abc...", 8787, 8787, "us-east-1")
    with ssm.start_port_forward("i-0abc...", 8787, 8787, "us-east-1") as forward:
        httpx.get(forward.url)      # the instance's port 8787, on http://127.0.0.1:8787/

The command is the one the analytics stack's `DashboardSessionCommand` output prints (`shell_command(argv)` gives
it back character for character). Running it needs the AWS CLI and its session-manager-plugin, which the learner
installs; the session lasts until `stop()`, which ends the process group started for it (the CLI and the plugin
it starts), by its pid.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

DOCUMENT = "AWS-StartPortForwardingSession"
DOCUMENT_TO_REMOTE_HOST = "AWS-StartPortForwardingSessionToRemoteHost"
INSTANCE_ID = re.compile(r"^i-(?:[0-9a-f]{8}|[0-9a-f]{17})$")
LOCAL_HOST = "127.0.0.1"
INSTALL = {
    "aws": "the AWS CLI v2: https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html",
    "session-manager-plugin": "the Session Manager plugin for the AWS CLI: https://docs.aws.amazon.com/"
                              "systems-manager/latest/userguide/session-manager-working-with-install-plugin.html",
}


class SessionManagerError(RuntimeError):
    """A port-forwarding session that cannot be built or started, with what to do about it."""


def check_instance_id(instance_id: Any) -> str:
    """`instance_id` if it is an EC2 instance id (i- and 8 or 17 hex digits), else a SessionManagerError."""
    if isinstance(instance_id, str) and INSTANCE_ID.match(instance_id):
        return instance_id
    logical = isinstance(instance_id, str) and not instance_id.startswith("i-")
    hint = (" (that looks like a template's logical id: take the instance id from the stack outputs, "
            "e.g. the analytics stack's DwInstanceId)") if logical else ""
    raise SessionManagerError(f"not an EC2 instance id: {instance_id!r}; expected i- and 8 or 17 hex digits{hint}")


def _port(value: Any, what: str) -> int:
    number = str(value) if isinstance(value, (int, str)) and not isinstance(value, bool) else ""
    if not number.isdigit() or not 0 < int(number) < 65536:
        raise SessionManagerError(f"{what} must be a port number from 1 to 65535, not {value!r}")
    return int(value)


def port_forward_command(instance_id: str, remote_port: int, local_port: int, region: str,
                         remote_host: str | None = None) -> list[str]:
    """The argv of `aws ssm start-session` forwarding `local_port` here to `remote_port` on the instance, or,
    with `remote_host`, to that host's port as the instance reaches it (e.g. a database in its subnet)."""
    target = check_instance_id(instance_id)
    parameters = {"portNumber": [str(_port(remote_port, "remote_port"))],
                  "localPortNumber": [str(_port(local_port, "local_port"))]}
    if remote_host is not None:
        if not isinstance(remote_host, str) or not remote_host or any(c.isspace() for c in remote_host):
            raise SessionManagerError(f"remote_host must be a host name or address, not {remote_host!r}")
        parameters = {"host": [remote_host], **parameters}
    if not isinstance(region, str) or not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", region):
        raise SessionManagerError(f"region must be an AWS region such as us-east-1, not {region!r}")
    return ["aws", "ssm", "start-session", "--target", target,
            "--document-name", DOCUMENT_TO_REMOTE_HOST if remote_host is not None else DOCUMENT,
            "--parameters", json.dumps(parameters, separators=(",", ":")), "--region", region]


def dashboard_command(outputs: Mapping[str, Any], region: str, local_port: int | None = None) -> list[str]:
    """The command that forwards the dashboard of the analytics stack's `outputs` (DwInstanceId, DashboardPort)."""
    port = _port(outputs["DashboardPort"], "DashboardPort")
    return port_forward_command(outputs["DwInstanceId"], port, port if local_port is None else local_port, region)


def shell_command(argv: list[str]) -> str:
    """`argv` as one line to paste into a shell."""
    return shlex.join(argv)


def missing_tools(which: Callable[[str], str | None] = shutil.which) -> list[str]:
    """The tools of INSTALL that are not on PATH."""
    return [tool for tool in INSTALL if which(tool) is None]


def require_tools(which: Callable[[str], str | None] = shutil.which) -> None:
    """A SessionManagerError saying how to install each missing tool, if any."""
    missing = missing_tools(which)
    if missing:
        raise SessionManagerError("port forwarding needs " + " and ".join(missing) + " on PATH; install "
                                  + "; ".join(INSTALL[tool] for tool in missing))


@dataclass
class PortForward:
    """A running port-forwarding session: `url` reaches the remote port; `stop()` ends it."""

    argv: list[str]
    local_port: int
    process: subprocess.Popen
    log: IO[bytes] = field(repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"http://{LOCAL_HOST}:{self.local_port}/"

    def output(self) -> str:
        """What the CLI has printed so far."""
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        """End the session's process group (started with the CLI, its pid is the CLI's): TERM, then KILL."""
        if self.running():
            _signal_group(self.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(self.pid, signal.SIGKILL)
                self.process.wait(timeout)
        self.log.close()

    def __enter__(self) -> PortForward:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        pass


def accepts_connections(port: int, host: str = LOCAL_HOST, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def start_port_forward(instance_id: str, remote_port: int, local_port: int, region: str,
                       remote_host: str | None = None, timeout: float = 30.0,
                       env: Mapping[str, str] | None = None) -> PortForward:
    """Start the session of `port_forward_command` and return it once `local_port` accepts connections.

    A SessionManagerError, with the process stopped, if a tool is missing, the port is already taken, the CLI
    exits (its output is in the message: no credentials, the instance not connected to SSM, ...) or the port
    does not open within `timeout` seconds.
    """
    argv = port_forward_command(instance_id, remote_port, local_port, region, remote_host)
    environ = dict(os.environ if env is None else env)
    require_tools(lambda tool: shutil.which(tool, path=environ.get("PATH")))
    if accepts_connections(local_port):
        raise SessionManagerError(f"local port {local_port} is already in use: choose another local_port")
    log = tempfile.TemporaryFile()
    executable = shutil.which("aws", path=environ.get("PATH"))
    process = subprocess.Popen([executable, *argv[1:]], stdin=subprocess.DEVNULL, stdout=log,
                               stderr=subprocess.STDOUT, env=environ, start_new_session=True)
    forward = PortForward(argv=argv, local_port=local_port, process=process, log=log)
    deadline = time.monotonic() + timeout
    while not accepts_connections(local_port, timeout=0.2):
        if not forward.running() or time.monotonic() > deadline:
            reason = (f"exited with code {process.returncode}" if not forward.running()
                      else f"did not open local port {local_port} within {timeout:g} s")
            printed = forward.output().strip()
            forward.stop()
            raise SessionManagerError(f"{shell_command(argv)} {reason}" + (f":\n{printed}" if printed else ""))
        time.sleep(0.1)
    return forward
