"""The one factory that chooses the target: `open_workshop(settings)` gives the notebooks their endpoints.

    with open_workshop(Settings.from_env()) as workshop:
        tracker.send_events(workshop.ingest_url, events)
        workshop.invoke_etl({"date": "2026-12-07"})
        psycopg.connect(workshop.dw_dsn)

Three modes, chosen by `choose_mode` from the settings' target and boto3's own AWS_ENDPOINT_URL:

- local (CLICKSTREAM_TARGET=local, the default): the local stack (`clickstream up`), as `clickstream status`
  reports it; the ETL runs in the local Lambda runtime.
- aws (CLICKSTREAM_TARGET=aws): everything from the outputs of the stacks `clickstream deploy --target aws`
  created (describe_stacks; stack names as deploy names them). The warehouse and the dashboard are reached through
  SSM port forwards to DwInstanceId, started here and stopped by `close()`; the warehouse credential is the
  DwSecretArn secret's (etl_writer: on AWS no superuser is reachable, so `dw_admin_dsn` is None); the ETL is
  invoked with Lambda Invoke. Needs AWS credentials, a region (AWS_REGION) and, for the port forwards, the AWS CLI
  with its session-manager-plugin: each is checked first, with what to do when it is missing.
- rehearsal (CLICKSTREAM_TARGET=aws and AWS_ENDPOINT_URL = the running local stack's moto, what CI runs): the
  same aws code against the stacks `clickstream deploy --target local` put into moto, with only what moto cannot
  serve stood in by the local stack (STAND_INS, also in `Workshop.stand_ins`). The port-forward commands are
  still built from the moto stacks' instance ids (`Workshop.ssm_commands`), not run. moto accepts any
  credentials, but they must be set (AWS_ACCESS_KEY_ID=testing ...), as on AWS.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from clickstream import aws
from clickstream.analytics import secrets
from clickstream.infra import ssm
from clickstream.infra.deploy import DeployConfig
from clickstream.infra.templates import TemplateSet, load_stacks
from clickstream.ingestion.ingest import IngestSettings
from clickstream.settings import Settings
from clickstream.shop import shoppers, traffic

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
# What the notebooks read from the stacks' outputs (the templates declare them).
OUTPUTS = ("ApiUrl", "RawBucketName", "IngestFunctionName", "EtlFunctionName", "DwSecretArn", "DwInstanceId",
           "DashboardPort", "StorefrontUrl", "UserPoolId", "UserPoolClientId")
# Rehearsal: what moto cannot serve, and the local part that stands in for it.
STAND_INS = {
    "ApiUrl": "moto does not route HTTP requests to API Gateway: the local HTTP API",
    "StorefrontUrl": "moto's CloudFormation skips CloudFront: the local storefront",
    "UserPoolId": "moto's CloudFormation skips Cognito: the local stack's user pool",
    "UserPoolClientId": "moto's CloudFormation skips Cognito: the local stack's user pool client",
    "lambda:Invoke": "moto runs no handler code without Docker: the local Lambda runtime runs it in-process",
    "ssm:StartSession": "moto has no Session Manager: the local warehouse and dashboard ports (the port-forward "
                        "commands are built with the moto stacks' instance ids, not run)",
}
ETL_READ_TIMEOUT = 910  # seconds: longer than any Lambda Timeout (900 s), so a long run is not retried


class WorkshopError(RuntimeError):
    """The chosen target cannot be opened; the message says what is missing and what to do."""


@dataclass
class Workshop:
    """The endpoints the notebooks use (the names of `clickstream status --json` where they exist), how to invoke
    the ETL function, and the port forwards to stop (`close()`, or use it as a context manager)."""

    target: str
    mode: str
    region: str
    api_url: str
    ingest_url: str
    raw_bucket: str
    storefront_url: str | None
    dashboard_url: str
    dw_dsn: str
    dw_admin_dsn: str | None
    dw_secret_id: str
    aws_endpoint_url: str | None
    cognito_user_pool_id: str | None
    cognito_client_id: str | None
    ingest_function: str
    etl_function: str
    ssm_commands: dict[str, str] = field(default_factory=dict)
    stand_ins: dict[str, str] = field(default_factory=dict)
    _invoke: Callable[[str, Any], Any] = field(default=None, repr=False)
    _exit: ExitStack = field(default_factory=ExitStack, repr=False)

    def invoke_etl(self, event: Mapping[str, Any] | None = None) -> Any:
        """Run the ETL function once with `event` ({} = the lookback window, {"date": "YYYY-MM-DD"}, ...)."""
        return self._invoke(self.etl_function, dict(event or {}))

    def description(self) -> str:
        lines = [where_it_runs(self.target, self.mode, self.region, self.aws_endpoint_url),
                 f"  ingest URL {self.ingest_url}  (raw bucket s3://{self.raw_bucket})",
                 f"  storefront {self.storefront_url}",
                 f"  dashboard  {self.dashboard_url}",
                 f"  functions  {self.ingest_function}, {self.etl_function}"]
        lines += [f"  stand-in for {what}: {how}" for what, how in self.stand_ins.items()]
        lines += [f"  {name} port forward: {command}" for name, command in self.ssm_commands.items()]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """The endpoints as JSON-ready values (the DSNs hold passwords: do not log them)."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__ if not name.startswith("_")}

    def close(self) -> None:
        """Stop what opening started (the SSM port forwards)."""
        self._exit.close()

    def __enter__(self) -> Workshop:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def choose_mode(settings: Settings, env: Mapping[str, str] | None = None) -> str:
    """local, aws, or rehearsal (target aws with AWS_ENDPOINT_URL on this machine: the local stack's moto)."""
    env = os.environ if env is None else env
    if settings.target == "local":
        return "local"
    endpoint = env.get("AWS_ENDPOINT_URL")
    return "rehearsal" if endpoint and urlsplit(endpoint).hostname in LOOPBACK else "aws"


def where_it_runs(target: str, mode: str, region: str, aws_endpoint_url: str | None) -> str:
    """The first line of `Workshop.description()`: the target and what it reaches in its mode."""
    where = {"local": "the local stack (clickstream up)",
             "aws": f"the deployed stacks in {region}",
             "rehearsal": f"the stacks deployed into moto at {aws_endpoint_url}, read as on AWS"}[mode]
    return f"target {target}: {where}"


def target_line(settings: Settings, env: Mapping[str, str] | None = None) -> str:
    """`where_it_runs` before any stack is read (a notebook that runs before the stacks are deployed)."""
    env = os.environ if env is None else env
    endpoint = (env.get("AWS_ENDPOINT_URL") or "").rstrip("/") or None
    return where_it_runs(settings.target, choose_mode(settings, env), settings.region, endpoint)


def choose_deployer(settings: Settings, env: Mapping[str, str] | None = None) -> tuple[Any, Settings]:
    """The deployer of the settings' mode and the settings to call it with: clickstream.infra.deploy (change
    sets) on aws; clickstream.local.moto_deploy locally and in a rehearsal, whose stacks go into the local
    stack's moto as `clickstream deploy --target local` puts them there."""
    if choose_mode(settings, env) == "aws":
        from clickstream.infra import deploy

        return deploy, settings
    from clickstream.local import moto_deploy

    return moto_deploy, settings.with_(target="local")


def open_workshop(settings: Settings, env: Mapping[str, str] | None = None,
                  which: Callable[[str], str | None] | None = None, forward: bool = True) -> Workshop:
    """The workshop on the settings' target (see the module docstring); local starts the local stack.

    `env`: the environment to read (AWS_ENDPOINT_URL, AWS_REGION, PATH for the tools), default os.environ.
    `forward=False` (aws): start no port forward; the DSN and the dashboard URL are those the `ssm_commands`
    give once run (what `clickstream --target aws status` prints)."""
    env = os.environ if env is None else env
    which = which or (lambda tool: shutil.which(tool, path=env.get("PATH")))
    mode = choose_mode(settings, env)
    if mode == "local":
        return _local_workshop(settings)
    require_prerequisites(settings, env, which=which, tools=mode == "aws" and forward)
    if mode == "rehearsal":
        return _rehearsal_workshop(settings, env)
    return _aws_workshop(settings, env, forward)


def rehearsal_environment(local: Settings) -> dict[str, str]:
    """The environment variables that make the aws target a rehearsal against the local stack `local`'s moto."""
    return {"CLICKSTREAM_TARGET": "aws", "AWS_ENDPOINT_URL": local.aws_endpoint_url, "AWS_REGION": local.region,
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def history_target(workshop: Workshop, settings: Settings, s3: Any) -> traffic.IngestTarget:
    """The simulator's history mode (`traffic.send(config, target)`) into the workshop's raw bucket with `s3`:
    locally the ingest as the templates configure it; on aws as the deployed ingest function is configured (its
    environment), under the deployed API's id (from the ingest URL) and the templates' stage, the simulated
    shoppers in the workshop's user pool (in a rehearsal the local stack's pool, which stands in for Cognito)."""
    if workshop.mode == "local":
        return traffic.IngestTarget.from_templates(settings, s3)
    function = aws.client("lambda", settings).get_function_configuration(FunctionName=workshop.ingest_function)
    pool_of = settings.with_(target="local") if workshop.mode == "rehearsal" else settings
    return traffic.IngestTarget(s3, IngestSettings.from_env(function.get("Environment", {}).get("Variables", {})),
                                *ingest_api(workshop.ingest_url, settings),
                                subs=shoppers.ensure_shoppers(pool_of, traffic.SHOPPERS))


def ingest_api(ingest_url: str, settings: Settings) -> tuple[str, str]:
    """(API id, stage) of the HTTP API behind `ingest_url`: a deployed API's id is the first label of its
    execute-api host name; a stand-in (the local API, in a rehearsal) has the templates' id. The stage is the
    templates'."""
    (api,) = [api for stack in load_stacks(settings) for api in stack.http_apis()]
    host = urlsplit(ingest_url).hostname or ""
    return (host.split(".")[0] if ".execute-api." in host else str(api.api_id)), str(api.stage)


# --- prerequisites -------------------------------------------------------------------------------
def require_prerequisites(settings: Settings, env: Mapping[str, str], which: Callable[[str], str | None],
                          tools: bool = True) -> None:
    """A WorkshopError naming each missing prerequisite of the aws path: a region, credentials, the tools."""
    problems = []
    if not (env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or boto3.Session().region_name):
        problems.append("no AWS region: set AWS_REGION (e.g. export AWS_REGION=us-east-1) or a region in "
                        "your AWS profile")
    if boto3.Session(region_name=settings.region).get_credentials() is None:
        problems.append("no AWS credentials: run `aws configure` (or `aws sso login` with AWS_PROFILE set)")
    if tools and (missing := ssm.missing_tools(which)):
        problems.append("the SSM port forwards need " + " and ".join(missing) + " on PATH; install "
                        + "; ".join(ssm.INSTALL[tool] for tool in missing))
    if problems:
        raise WorkshopError("the aws target needs:\n- " + "\n- ".join(problems)
                            + "\n(cloudformation/DEPLOY.md: the requirements, then `clickstream deploy --target aws`)")


# --- reading the stacks -------------------------------------------------------------------------
def deployed_outputs(settings: Settings, prefix: str) -> dict[str, str]:
    """The outputs of every deployed stack of the templates, merged (an output name is declared once)."""
    cf = aws.client("cloudformation", settings)
    outputs: dict[str, str] = {}
    for stem, name in TemplateSet(settings.templates, prefix).stack_names.items():
        try:
            stack = cf.describe_stacks(StackName=name)["Stacks"][0]
        except ClientError as error:
            if "does not exist" in str(error):
                continue
            raise WorkshopError(f"cannot read stack {name}: {_aws_message(error)}") from None
        except BotoCoreError as error:
            raise WorkshopError(f"cannot read stack {name}: {error}") from None
        outputs.update({o["OutputKey"]: o.get("OutputValue") for o in stack.get("Outputs", [])})
    return outputs


def require_outputs(settings: Settings, outputs: Mapping[str, str], prefix: str,
                    names: tuple[str, ...]) -> None:
    """A WorkshopError naming each output of `names` that no deployed stack has, and its template."""
    declared = {name: template for template in TemplateSet(settings.templates, prefix) for name in template.outputs}
    missing = [name for name in names if not outputs.get(name)]
    if missing:
        where = ", ".join(f"{name} ({declared[name].name})" if name in declared else f"{name} (no template declares it)"
                          for name in missing)
        raise WorkshopError(f"no deployed stack has the outputs {where}: deploy them first with "
                            f"`clickstream deploy` (stack prefix {prefix}, cloudformation/DEPLOY.md)")


def _aws_message(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Message") or str(error)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((ssm.LOCAL_HOST, 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class Connections:
    """How this machine reaches the warehouse and the dashboard: local ports, given or forwarded."""

    dw_port: int
    dashboard_port: int


def read_dw_secret(settings: Settings, secret_id: str) -> dict[str, Any]:
    """The warehouse secret's value (DwSecretArn), with every key a connection needs (TLS's too)."""
    try:
        secret = secrets.read_secret(aws.client("secretsmanager", settings), secret_id)
        secrets.check_value(secret, secret_id)
    except secrets.SecretError as error:
        raise WorkshopError(str(error)) from None
    return secret


def _aws_fields(settings: Settings, outputs: Mapping[str, str], secret: Mapping[str, Any],
                connections: Connections) -> dict[str, Any]:
    """The Workshop fields that come from the stacks' outputs and the DW secret (aws and rehearsal alike)."""
    api = urlsplit(outputs["ApiUrl"])
    return {
        "region": settings.region,
        "api_url": f"{api.scheme}://{api.netloc}",
        "ingest_url": outputs["ApiUrl"],
        "raw_bucket": outputs["RawBucketName"],
        "storefront_url": outputs.get("StorefrontUrl"),
        "dashboard_url": f"http://{ssm.LOCAL_HOST}:{connections.dashboard_port}",
        "dw_dsn": secrets.dsn_from_value(secret, outputs["DwSecretArn"], host=ssm.LOCAL_HOST, port=connections.dw_port),
        "dw_admin_dsn": None,
        "dw_secret_id": outputs["DwSecretArn"],
        "cognito_user_pool_id": outputs.get("UserPoolId"),
        "cognito_client_id": outputs.get("UserPoolClientId"),
        "ingest_function": outputs["IngestFunctionName"],
        "etl_function": outputs["EtlFunctionName"],
        "ssm_commands": port_forward_commands(outputs, int(secret["port"]), connections, settings.region),
    }


def port_forward_commands(outputs: Mapping[str, str], dw_port: int, connections: Connections,
                          region: str) -> dict[str, str]:
    """The `aws ssm start-session` commands to the warehouse instance (DwInstanceId): its PostgreSQL port
    `dw_port` and its DashboardPort, forwarded to `connections`' local ports."""
    try:
        return {"dw": ssm.shell_command(ssm.port_forward_command(outputs["DwInstanceId"], dw_port,
                                                                 connections.dw_port, region)),
                "dashboard": ssm.shell_command(ssm.dashboard_command(outputs, region, connections.dashboard_port))}
    except ssm.SessionManagerError as error:
        raise WorkshopError(str(error)) from None


def _lambda_invoke(settings: Settings) -> Callable[[str, Any], Any]:
    """Invoke a function with Lambda's Invoke API and return its result (a function error is a WorkshopError)."""
    no_retry = Config(read_timeout=ETL_READ_TIMEOUT, retries={"mode": "standard", "total_max_attempts": 1})
    client = aws.client("lambda", settings, config=no_retry)

    def invoke(function_name: str, event: Any) -> Any:
        response = client.invoke(FunctionName=function_name, Payload=json.dumps(event).encode())
        payload = json.loads(response["Payload"].read() or b"null")
        if response.get("FunctionError"):
            message = payload.get("errorMessage") if isinstance(payload, dict) else payload
            raise WorkshopError(f"{function_name} failed: {message}")
        return payload

    return invoke


def _aws_workshop(settings: Settings, env: Mapping[str, str], forward: bool) -> Workshop:
    prefix = DeployConfig.load(settings, env=env).prefix
    outputs = deployed_outputs(settings, prefix)
    require_outputs(settings, outputs, prefix, OUTPUTS)
    secret = read_dw_secret(settings, outputs["DwSecretArn"])
    dashboard = int(outputs["DashboardPort"])
    if forward:
        connections = Connections(dw_port=_free_port(),
                                  dashboard_port=_free_port() if ssm.accepts_connections(dashboard) else dashboard)
    else:
        connections = Connections(dw_port=settings.dw_port, dashboard_port=dashboard)
    workshop = Workshop(target="aws", mode="aws", aws_endpoint_url=None, _invoke=_lambda_invoke(settings),
                        **_aws_fields(settings, outputs, secret, connections))
    if not forward:
        return workshop
    try:
        for local, remote in ((connections.dw_port, int(secret["port"])), (connections.dashboard_port, dashboard)):
            workshop._exit.enter_context(ssm.start_port_forward(outputs["DwInstanceId"], remote, local,
                                                                settings.region, env=env))
    except ssm.SessionManagerError as error:
        workshop.close()
        raise WorkshopError(str(error)) from None
    return workshop


# --- local and rehearsal (the only code here that imports clickstream.local) ------------------------
def _local_invoke(settings: Settings) -> Callable[[str, Any], Any]:
    """Invoke a function of the templates, found by its name, in the local Lambda runtime."""
    from clickstream.infra.templates import load_stacks
    from clickstream.local.lambda_runtime import LocalLambda

    functions = {f.name: f for stack in load_stacks(settings) for f in stack.functions().values()}

    def invoke(function_name: str, event: Any) -> Any:
        if function_name not in functions:
            raise WorkshopError(f"no template declares a function named {function_name} "
                                f"(the templates' functions: {', '.join(sorted(functions))})")
        return LocalLambda(functions[function_name], settings).invoke(event)

    return invoke


def _local_outputs(settings: Settings) -> dict[str, Any]:
    from clickstream.infra.templates import load_stacks

    return {name: value for stack in load_stacks(settings) for name, value in stack.outputs().items()}


def _local_workshop(settings: Settings) -> Workshop:
    from clickstream.local import stack

    status = stack.up(settings)
    outputs = _local_outputs(settings)
    return Workshop(
        target="local", mode="local", region=status["region"], api_url=status["api_url"],
        ingest_url=status["ingest_url"], raw_bucket=status["raw_bucket"], storefront_url=status["storefront_url"],
        dashboard_url=status["dashboard_url"], dw_dsn=status["dw_dsn"], dw_admin_dsn=status["dw_admin_dsn"],
        dw_secret_id=status["dw_secret_id"], aws_endpoint_url=status["aws_endpoint_url"],
        cognito_user_pool_id=status["cognito_user_pool_id"], cognito_client_id=status["cognito_client_id"],
        ingest_function=str(outputs["IngestFunctionName"]), etl_function=str(outputs["EtlFunctionName"]),
        _invoke=_local_invoke(settings))


def _rehearsal_workshop(settings: Settings, env: Mapping[str, str]) -> Workshop:
    from clickstream.local import stack

    local = settings.with_(target="local")
    endpoint = env["AWS_ENDPOINT_URL"].rstrip("/")
    if endpoint != local.aws_endpoint_url:
        raise WorkshopError(f"AWS_ENDPOINT_URL is {endpoint}, but the local stack's moto is {local.aws_endpoint_url}: "
                            "point AWS_ENDPOINT_URL at it (a rehearsal needs the local stack, `clickstream up`)")
    health = stack.service_health(local, ("aws", "api", "storefront", "dashboard", "dw"))
    if down := [name for name, h in health.items() if not h["healthy"]]:
        raise WorkshopError(f"the rehearsal needs the local stack: {', '.join(down)} not running "
                            "(start it with `clickstream up`)")
    prefix = DeployConfig.load(local, env=env).prefix  # the stacks `clickstream deploy --target local` made
    outputs = deployed_outputs(settings, prefix)
    status = stack.status(local)
    stood_in = {"ApiUrl": status["ingest_url"], "StorefrontUrl": status["storefront_url"],
                "UserPoolId": status["cognito_user_pool_id"], "UserPoolClientId": status["cognito_client_id"]}
    require_outputs(settings, outputs, prefix, tuple(name for name in OUTPUTS if name not in stood_in))
    fields = _aws_fields(settings, {**outputs, **stood_in}, read_dw_secret(settings, outputs["DwSecretArn"]),
                         Connections(dw_port=local.dw_port, dashboard_port=local.dashboard_port))
    return Workshop(target="aws", mode="rehearsal", aws_endpoint_url=endpoint, stand_ins=dict(STAND_INS),
                    _invoke=_local_invoke(local), **fields)
