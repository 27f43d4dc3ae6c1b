"""Settings of the platform, read once from the environment into a frozen dataclass."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping

import clickstream

TARGETS = ("local", "aws")
LOCAL_ACCOUNT_ID = "123456789012"  # moto's account
LOCAL_NAME_SUFFIX = "local"


class SettingsError(ValueError):
    """A setting (usually an environment variable) has a value the platform cannot use."""


def project_root() -> Path:
    """The repository the package was installed from (editable install), else the working directory."""
    if env := os.environ.get("CLICKSTREAM_PROJECT_ROOT"):
        return Path(env).resolve()
    candidate = Path(clickstream.__file__).resolve().parents[2]
    return candidate if (candidate / "cloudformation").is_dir() else Path.cwd()


@dataclass(frozen=True)
class Settings:
    """Where the platform runs and, for the local target, on which ports.

    Environment: CLICKSTREAM_TARGET (local|aws), CLICKSTREAM_HOME (state folder, default
    <project>/.clickstream), CLICKSTREAM_{AWS,API,DW,OLTP,STOREFRONT,DASHBOARD}_PORT, AWS_REGION.
    """

    target: str = "local"
    home: Path = Path(".clickstream")
    project: Path = Path(".")
    region: str = "us-east-1"
    host: str = "127.0.0.1"
    aws_port: int = 4566
    api_port: int = 3100
    dw_port: int = 15432
    oltp_port: int = 15433
    storefront_port: int = 3200
    dashboard_port: int = 3300

    PORT_ENV = {
        "aws_port": "CLICKSTREAM_AWS_PORT",
        "api_port": "CLICKSTREAM_API_PORT",
        "dw_port": "CLICKSTREAM_DW_PORT",
        "oltp_port": "CLICKSTREAM_OLTP_PORT",
        "storefront_port": "CLICKSTREAM_STOREFRONT_PORT",
        "dashboard_port": "CLICKSTREAM_DASHBOARD_PORT",
    }

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> "Settings":
        env = os.environ if env is None else env
        root = project_root()
        values: dict = {
            "target": env.get("CLICKSTREAM_TARGET", "local"),
            "project": root,
            "home": Path(env.get("CLICKSTREAM_HOME", root / ".clickstream")).resolve(),
            "region": env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
        }
        values.update(_ports_of_running_stack(values["home"]))
        for field, var in cls.PORT_ENV.items():
            if var in env:
                if not env[var].isdigit():
                    raise SettingsError(f"{var} must be a port number, not {env[var]!r}")
                values[field] = int(env[var])
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        if settings.target not in TARGETS:
            raise SettingsError(f"target must be one of {TARGETS}, not {settings.target!r} (CLICKSTREAM_TARGET)")
        return settings

    def with_(self, **changes) -> "Settings":
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @property
    def aws_endpoint_url(self) -> str:
        return f"http://{self.host}:{self.aws_port}"

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    @property
    def storefront_url(self) -> str:
        return f"http://{self.host}:{self.storefront_port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://{self.host}:{self.dashboard_port}"

    @property
    def state_file(self) -> Path:
        return self.home / "state.json"

    @property
    def templates(self) -> Path:
        return self.project / "cloudformation"


def _ports_of_running_stack(home: Path) -> dict:
    """Ports recorded by `clickstream up`, so later commands find a stack started with other ports."""
    try:
        services = json.loads((home / "state.json").read_text())["services"]
    except (OSError, ValueError, KeyError):
        return {}
    return {f"{name}_port": svc["port"] for name, svc in services.items() if "port" in svc}
