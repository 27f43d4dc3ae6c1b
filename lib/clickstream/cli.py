"""`clickstream`: run the platform's local stack and its jobs."""

from __future__ import annotations

import json
import os
import shutil
import sys

import click
from tqdm import tqdm

from clickstream import aws
from clickstream.ingestion import raw
from clickstream.local import stack
from clickstream.infra.templates import TemplateError, find_function, load_stacks
from clickstream.infra.deploy import DeployError
from clickstream.local.lambda_runtime import LambdaTimeoutError, LocalLambda, invoke_function
from clickstream.local.postgres import ClusterError
from clickstream.local.scheduler import ScheduleError
from clickstream.analytics.secrets import SecretError
from clickstream.settings import Settings, SettingsError

ETL_FUNCTION = "EtlFunction"  # logical id of SBW_Lamda_ETL in cloudformation/analytics.yaml

PORT_OPTIONS = [
    click.option("--aws-port", type=int, help="Port of the local AWS endpoint (moto). [env CLICKSTREAM_AWS_PORT; 4566]"),
    click.option("--api-port", type=int, help="Port of the local HTTP API. [env CLICKSTREAM_API_PORT; 3100]"),
    click.option("--dw-port", type=int, help="Port of the DW PostgreSQL. [env CLICKSTREAM_DW_PORT; 15432]"),
    click.option("--oltp-port", type=int, help="Port of the shop's OLTP PostgreSQL. [env CLICKSTREAM_OLTP_PORT; 15433]"),
    click.option("--storefront-port", type=int,
                 help="Port of the shop's storefront. [env CLICKSTREAM_STOREFRONT_PORT; 3200]"),
    click.option("--dashboard-port", type=int,
                 help="Port of the dashboard (shiny/app.py). [env CLICKSTREAM_DASHBOARD_PORT; 3300]"),
]


def port_options(command):
    for option in reversed(PORT_OPTIONS):
        command = option(command)
    return command


def echo_json(value) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


EXPECTED_ERRORS = (ClusterError, stack.StackError, TemplateError, SettingsError, ConnectionError, SecretError,
                   ScheduleError, LambdaTimeoutError, DeployError)


class FriendlyGroup(click.Group):
    """Expected failures (a port in use, a service down, a template problem) print one clear line, no traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except EXPECTED_ERRORS as error:
            raise click.ClickException(str(error)) from error


@click.group(cls=FriendlyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--target", type=click.Choice(["local", "aws"]), help="Where the platform runs. [env CLICKSTREAM_TARGET; local]")
@click.option("--home", type=click.Path(file_okay=False), help="State folder of the local stack. [env CLICKSTREAM_HOME; ./.clickstream]")
@click.pass_context
def main(ctx: click.Context, target: str | None, home: str | None) -> None:
    """Batch clickstream analytics for a laptop, monitor and accessory shop.

    The local stack runs on this machine with no cloud account: a moto AWS endpoint, the DW and the
    shop's OLTP PostgreSQL clusters, the HTTP API `clickstream-http-api` in front of the ingest
    Lambda, the shop's storefront and the dashboard. Start with `clickstream up`, check with
    `clickstream status`, stop with `clickstream down`.
    """
    env = dict(os.environ)
    if home:
        env["CLICKSTREAM_HOME"] = home
    ctx.obj = Settings.from_env(env, target=target)


def settings_with_ports(ctx: click.Context, ports: dict) -> Settings:
    return ctx.obj.with_(**ports)


@main.command()
@port_options
@click.option("--schedule", is_flag=True,
              help="Also run the templates' EventBridge schedules (the hourly ETL) in a background process, "
                   "until `clickstream down`.")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.pass_context
def up(ctx, schedule: bool, as_json: bool, **ports) -> None:
    """Start the local stack (idempotent: what already runs is left alone).

    It also applies the warehouse migrations and writes the ETL's DW secret into the local endpoint.
    """
    settings = settings_with_ports(ctx, ports)
    result = stack.up(settings, progress=lambda line: click.echo(line, err=True), schedule=schedule)
    echo_json(result) if as_json else print_status(result)


@main.command()
@click.pass_context
def down(ctx) -> None:
    """Stop the local stack by pid. The databases and the raw bucket's objects are kept."""
    stopped = stack.down(ctx.obj, progress=click.echo)
    if not stopped:
        click.echo("nothing was running")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_context
def status(ctx, as_json: bool) -> None:
    """Endpoints, DSNs and the health of each local service (exit 1 if one is down).

    With --target aws: the endpoints the deployed stacks' outputs give, and the port-forward commands to run."""
    if ctx.obj.target == "aws":
        from clickstream.target import WorkshopError, open_workshop

        try:
            workshop = open_workshop(ctx.obj, forward=False)
        except WorkshopError as error:
            raise click.ClickException(str(error)) from error
        click.echo(json.dumps(workshop.as_dict(), indent=2) if as_json else workshop.description())
        return
    result = stack.status(ctx.obj)
    echo_json(result) if as_json else print_status(result)
    if not result["healthy"]:
        click.echo("some services are down: start them with `clickstream up`", err=True)
        sys.exit(1)


def print_status(result: dict) -> None:
    width = max(5, *(len(name) for name in result["services"]))
    for name, svc in result["services"].items():
        mark = click.style("up  ", fg="green") if svc["healthy"] else click.style("down", fg="red")
        where = f"port {svc['port']}" if svc["port"] else "(no port)"
        click.echo(f"  {mark} {name:<{width}} {where}" + (f"  pid {svc['pid']}" if svc["pid"] else ""))
        for job in svc.get("jobs", []):
            click.echo(f"       {job['rule']}: {job['expression']} -> {job['function']}, next run {job['next_run']}")
    click.echo(f"  storefront   {result['storefront_url']}")
    click.echo(f"  dashboard    {result['dashboard_url']}")
    click.echo(f"  ingest API   {result['ingest_url']}")
    click.echo(f"  AWS endpoint {result['aws_endpoint_url']}  (raw bucket s3://{result['raw_bucket']})")
    click.echo(f"  DW (psql)    clickstream psql")


@main.command("dashboard")
@click.option("--r", "use_r", is_flag=True,
              help="Run the R Shiny app shiny/app.R (Rscript, with Debian's r-cran-* packages) instead of shiny/app.py.")
@click.option("--port", type=click.IntRange(1, 65535),
              help="Port on 127.0.0.1. [the dashboard port (env CLICKSTREAM_DASHBOARD_PORT; 3300); with --r that port "
                   "+ 1, as `clickstream up` serves the Python app on it]")
@click.pass_context
def dashboard_command(ctx, use_r: bool, port: int | None) -> None:
    """Run the dashboard in the foreground and print its URL (Ctrl-C stops it).

    The Python app (shiny/app.py: KPIs, funnel, products, trends, heatmap) is the one `clickstream up` already
    serves on the dashboard port: when it runs there, this only says where. Both apps read the warehouse as
    dashboard_reader, from the libpq URI in CLICKSTREAM_DASHBOARD_DSN, so the local stack must run
    (`clickstream up`). Without data they say how to load some (`make demo`, or `clickstream simulate` then
    `clickstream etl`).
    """
    from clickstream.local import dashboard
    from clickstream.local.postgres import PortInUseError, port_is_free

    settings = ctx.obj
    if settings.target != "local":
        raise click.ClickException("on aws the dashboard runs on the private warehouse instance; open it through SSM "
                                   "port forwarding with the command in the stack outputs (cloudformation/DEPLOY.md)")
    current = stack.status(settings)
    served = current["services"]["dashboard"]
    if not use_r and served["healthy"] and port in (None, served["port"]):
        click.echo(f"the dashboard runs at {current['dashboard_url']} (started by `clickstream up`; "
                   "`clickstream down` stops it)")
        return
    if not current["services"]["dw"]["healthy"]:
        raise click.ClickException("dw not running: start the local stack with `clickstream up`")
    port = port or settings.dashboard_port + (1 if use_r else 0)
    try:
        argv = (dashboard.r_argv(settings.project, settings.host, port) if use_r
                else stack.service_argv(settings, "dashboard", port))
    except dashboard.DashboardError as error:
        raise click.ClickException(str(error)) from error
    if not port_is_free(settings.host, port):
        raise PortInUseError(port, "--port")
    env = dashboard.app_env(os.environ, stack.warehouse_dsn(settings, "dashboard_reader"))
    click.echo(f"{'R' if use_r else 'Python'} dashboard: http://{settings.host}:{port}  (Ctrl-C stops it)")
    sys.stdout.flush()
    os.execve(argv[0], argv, env)


@main.group()
def shopper() -> None:
    """The shop's shoppers in its Cognito user pool (locally moto's; on aws the deployed frontend stack's)."""


@shopper.command("create")
@click.option("--email", required=True, help="The shopper's email, which is also the sign-in name.")
@click.option("--password", required=True, help="A permanent password meeting the pool's policy.")
@click.pass_context
def shopper_create(ctx, email: str, password: str) -> None:
    """Create a confirmed shopper with a verified email and print its sub (the user_id of its events)."""
    from clickstream.shop import shoppers

    try:
        click.echo(shoppers.create_shopper(ctx.obj, email, password))
    except shoppers.CognitoError as error:
        raise click.ClickException(str(error)) from error


TARGET_OPTION = click.option("--target", "deploy_target", type=click.Choice(["local", "aws"]),
                             help="Deploy into moto (local) or a real account (aws). [the global --target]")
STACK_OPTION = click.option("--stack", "stack_name", metavar="NAME",
                            help="One stack: its template's stem (network) or stack name (clickstream-network).")
PARAMETERS_OPTION = click.option("--parameters", "parameters_file", type=click.Path(dir_okay=False, exists=True),
                                 help="Parameters file. [cloudformation/parameters/<target>.json]")


def _aws_errors(call):
    """botocore's own errors (no credentials, no region, an API refusal) as one readable line."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return call()
    except ClientError as error:
        raise click.ClickException(f"AWS refused: {error.response.get('Error', {}).get('Message', error)}") from error
    except BotoCoreError as error:
        raise click.ClickException(f"AWS client error: {error} (credentials: `aws configure` or AWS_PROFILE; "
                                   "see cloudformation/DEPLOY.md)") from error


def _deployer(settings: Settings):
    """The target's deployer (the one place that chooses): clickstream.local.moto_deploy for local,
    clickstream.infra.deploy (change sets) for aws; both have deploy() and destroy()."""
    if settings.target == "local":
        from clickstream.local import moto_deploy

        return moto_deploy
    from clickstream.infra import deploy

    return deploy


@main.command("deploy")
@TARGET_OPTION
@STACK_OPTION
@PARAMETERS_OPTION
@click.option("--no-build", "no_build", is_flag=True,
              help="Do not build and upload the code: use the code keys the parameters give (they must exist in "
                   "CodeBucket).")
@click.option("--new-images", "new_images", is_flag=True,
              help="Move the instances to the images the public SSM parameters name now (replaces them; "
                   "cloudformation/DEPLOY.md). Without it an update keeps the deployed images.")
@click.option("--json", "as_json", is_flag=True, help="Print the result per stack as JSON.")
@click.pass_context
def deploy_command(ctx, deploy_target: str | None, stack_name: str | None, parameters_file: str | None,
                   no_build: bool, new_images: bool, as_json: bool) -> None:
    """Deploy the CloudFormation templates as stacks, in dependency order (exporters first).

    aws: change sets, waiters and outputs in your account (it costs money by the hour: read
    cloudformation/DEPLOY.md first). local: the same templates into moto (`clickstream up` must run).
    A local deploy proves the templates' structure and cross-stack wiring, not AWS behaviour: what moto's
    CloudFormation cannot hold (HTTP API, Cognito, CloudFront, bucket policies) is left out and listed,
    with what the project runs instead; buckets and the DW secret are the ones `clickstream up` created;
    IAM is not enforced, instances run nothing and schedules never fire. Running it again with no change
    in the templates, parameters or code changes nothing.

    The code is built and uploaded first: a zip per Lambda function (handler, the clickstream package and,
    for aws, its pinned dependencies for arm64/Python 3.12, downloaded once into .clickstream/wheelhouse) and
    the warehouse bundle, at content-addressed keys in CodeBucket (an existing key is not uploaded again).
    """
    from pathlib import Path

    settings = ctx.obj.with_(target=deploy_target)
    deployer = _deployer(settings)
    progress = (lambda line: None) if as_json else (lambda line: click.echo(line, err=True))
    results = _aws_errors(lambda: deployer.deploy(settings, stack_name, progress=progress, build=not no_build,
                                                  parameters_file=Path(parameters_file) if parameters_file else None,
                                                  new_images=new_images))
    if as_json:
        echo_json({"target": settings.target, "note": deployer.LOCAL_HONESTY if settings.target == "local" else None,
                   "stacks": [result.as_dict() for result in results]})
        return
    for result in results:
        click.secho(f"{result.stack}  {result.status}  ({result.template})", bold=True)
        click.echo(f"  resources ({len(result.resources)}): "
                   + ", ".join(f"{r['logical_id']}" for r in result.resources))
        if result.skipped:
            click.echo("  left out locally (the project wires these instead):")
            for item in result.skipped:
                click.echo(f"    {item['logical_id']} ({item['type']}): {item['reason']}")
        for item in result.skipped_outputs:
            click.echo(f"  output {item['name']} left out: {item['reason']}")
        for item in result.code:
            click.echo(f"  code: {item['parameter']} = s3://{item['bucket']}/{item['key']} "
                       f"({'uploaded' if item['uploaded'] else 'already there'})")
        for name, value in result.outputs.items():
            click.echo(f"  {name} = {value}")
        for item in result.notes:
            click.echo(f"  note: {item['logical_id']}: {item['note']}")
    if settings.target == "local":
        click.echo(f"({deployer.LOCAL_HONESTY})")


@main.command("destroy")
@TARGET_OPTION
@STACK_OPTION
@PARAMETERS_OPTION
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def destroy_command(ctx, deploy_target: str | None, stack_name: str | None, parameters_file: str | None,
                    yes: bool) -> None:
    """Delete the deployed stacks in reverse dependency order (importers first) and wait until they are gone.

    Resources with DeletionPolicy Retain (the raw bucket) stay: empty and delete them yourself.
    """
    from pathlib import Path

    settings = ctx.obj.with_(target=deploy_target)
    what = f"stack {stack_name}" if stack_name else "every deployed clickstream stack"
    if not yes:
        click.confirm(f"Delete {what} on the {settings.target} target?", abort=True)
    results = _aws_errors(lambda: _deployer(settings).destroy(
        settings, stack_name, progress=lambda line: click.echo(line, err=True),
        parameters_file=Path(parameters_file) if parameters_file else None))
    for result in results:
        retained = f" (retained: {', '.join(result['retained'])})" if result.get("retained") else ""
        click.echo(f"{result['stack']}  {result['status']}{retained}")


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("psql_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def psql(ctx, psql_args) -> None:
    """Open psql on the warehouse clickstream_dw (as the local superuser, over the unix socket)."""
    binary = shutil.which("psql")
    if not binary:
        raise click.ClickException("psql is not installed (Debian: apt-get install postgresql-client)")
    dsn = stack.status(ctx.obj)["dw_admin_dsn"]
    os.execv(binary, [binary, dsn, *psql_args])


@main.command()
@click.option("--events", "count", default=20, show_default=True, help="How many sample events to send.")
@click.option("--batch-size", default=10, show_default=True, help="Events per request (1 sends them one by one).")
@click.option("--seed", default=7, show_default=True, help="Seed of the sample events.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def send(ctx, count: int, batch_size: int, seed: int, as_json: bool) -> None:
    """Send sample events through the local HTTP API, as the browser tracker would."""
    from clickstream.shop import samples, tracker

    url = stack.status(ctx.obj)["ingest_url"]
    with tqdm(total=count, unit="event", desc="sending", disable=as_json) as bar:
        report = tracker.send_events(url, samples.canonical_batch(count, seed), batch_size=batch_size,
                                     on_batch=bar.update)
    result = {"requests": report.requests, "accepted": report.accepted, "rejected": report.rejected,
              "object_keys": report.object_keys}
    if as_json:
        echo_json(result)
    else:
        click.echo(f"sent {count} events in {report.requests} requests: {report.accepted} accepted, "
                   f"{len(report.rejected)} rejected, {len(report.object_keys)} raw objects written")


@main.command("simulate")
@click.option("--days", default=7, show_default=True, type=click.IntRange(1, 366), help="How many UTC days to simulate.")
@click.option("--visitors", default=2000, show_default=True, type=click.IntRange(1),
              help="Human visitors (browsers); bots come on top (2%).")
@click.option("--seed", default=42, show_default=True, help="Same seed and options: the same traffic, byte for byte.")
@click.option("--start", "start_day", type=click.DateTime(["%Y-%m-%d"]), metavar="YYYY-MM-DD",
              help="First simulated day (UTC). [default: the DAYS days ending yesterday]")
@click.option("--live", is_flag=True,
              help="Send through the local HTTP API as browser trackers would (real clock; slower). Without it, "
                   "history mode writes raw objects as the ingest Lambda would have at the simulated times.")
@click.option("--truth", "truth_path", type=click.Path(dir_okay=False, writable=True),
              help="Write the ground truth (what the warehouse must answer) as JSON to this file.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
def simulate_traffic(ctx, days: int, visitors: int, seed: int, start_day, live: bool, truth_path: str | None,
                     as_json: bool) -> None:
    """Simulate the shop's traffic: sessions, funnel, bots, retries, late and malformed events.

    Deterministic for a seed. Visitors come back, some sign in, arrive from google/cpc, newsletter/email,
    facebook/social or directly, with daily and weekly peaks and a few popular products. History mode
    (default) calls the ingest code with the simulated send times, so raw partitions and received_at fall
    on the simulated days: load them with `clickstream etl`. --live is for watching the real path; its
    timestamps are shifted so the newest send is now, so its days differ from the truth file's.
    """
    from datetime import timedelta

    from clickstream.shop import simulate, traffic

    settings = ctx.obj
    start = start_day.date() if start_day else simulate.default_start(days)
    config = simulate.SimulationConfig(start=start, days=days, visitors=visitors, seed=seed)
    needed = ("aws", "api") if live else ("aws",)
    running = stack.status(settings)
    down = [name for name in needed if not running["services"][name]["healthy"]]
    if down:
        raise click.ClickException(f"{' and '.join(down)} not running: start the local stack with `clickstream up`")
    target = (traffic.HttpTarget.signed_in(settings, running["ingest_url"]) if live
              else traffic.IngestTarget.from_templates(settings, aws.client("s3", settings)))
    if not as_json:
        end = start + timedelta(days=days - 1)
        click.echo(f"simulating {visitors} visitors and {config.bots} bots from {start} to {end} (UTC), seed {seed}, "
                   f"{'live through the HTTP API' if live else 'history mode'}", err=True)
    with tqdm(total=visitors + config.bots, unit="visitor", desc="simulating", disable=as_json) as bar:
        summary = traffic.send(config, target, truth_path=truth_path, progress=bar.update)
    if as_json:
        echo_json({**summary.as_dict(), "truth": truth_path})
        return
    click.echo(f"{summary.events_stored} events stored in {summary.objects} raw objects ({summary.requests} requests) "
               f"in {summary.seconds:.1f} s: {summary.events_per_second:,.0f} events/s")
    click.echo(f"  {summary.human_events} human events, {summary.bot_events} bot events, {summary.duplicates} "
               f"resent duplicates, {summary.malformed} malformed events rejected")
    if truth_path:
        click.echo(f"  ground truth written to {truth_path}")
    click.echo("Next: `clickstream etl` loads them into the warehouse.")


@main.command("raw")
@click.option("--prefix", default=raw.RAW_PREFIX, show_default=True, help="Key prefix, e.g. events/2026/11/25/.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_raw(ctx, prefix: str, as_json: bool) -> None:
    """List the raw objects in the raw bucket (paginated: every key, not only the first 1,000)."""
    bucket = stack.status(ctx.obj)["raw_bucket"]
    objects = list(raw.list_objects(aws.client("s3", ctx.obj), bucket, prefix))
    if as_json:
        echo_json([{"key": o["Key"], "size": o["Size"], "last_modified": o["LastModified"]} for o in objects])
        return
    for obj in objects:
        click.echo(f"  s3://{bucket}/{obj['Key']}  {obj['Size']:>7} B")
    click.echo(f"{len(objects)} objects under s3://{bucket}/{prefix}")


SUMMARY_LABELS = {
    "objects_listed": "objects listed", "loaded": "objects loaded", "skipped": "already loaded",
    "rows_inserted": "rows inserted", "duplicates": "duplicates", "rejected": "rejected", "seconds": "seconds",
    "remaining": "objects left", "rollup_days_refreshed": "rollup days",
}


@main.command()
@click.option("--date", "day", metavar="YYYY-MM-DD", help="Load one UTC day of raw objects.")
@click.option("--prefix", metavar="KEY_PREFIX", help="Load the raw objects under one key prefix, e.g. events/2026/11/24/.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
def etl(ctx, day: str | None, prefix: str | None, as_json: bool) -> None:
    """Run the ETL Lambda SBW_Lamda_ETL once: raw objects not loaded yet -> clickstream_dw.

    Invokes the handler through the local Lambda runtime with the function's environment and Timeout from
    cloudformation/analytics.yaml. Without --date or --prefix it loads what the last LOOKBACK_DAYS days
    hold and is not loaded yet. Objects already loaded are skipped, so running it again is safe.
    """
    import gc
    from concurrent.futures.process import BrokenProcessPool

    import psycopg
    from botocore.exceptions import BotoCoreError, ClientError

    from clickstream.analytics import etl as etl_module
    from clickstream.analytics.warehouse import WarehouseError

    if day and prefix:
        raise click.UsageError("give --date or --prefix, not both")
    settings = ctx.obj
    function = find_function(load_stacks(settings), ETL_FUNCTION)
    try:
        etl_module.parse_workers(function.environment.get("ETL_WORKERS", "1"))
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    health = stack.service_health(settings, ("aws", "dw"))
    down = [name for name, service in health.items() if not service["healthy"]]
    if down:
        raise click.ClickException(f"{' and '.join(down)} not running: start the local stack with `clickstream up`")
    event = {"date": day} if day else {"prefix": prefix} if prefix else {}
    tqdm.monitor_interval = 0  # no monitor thread: a process without threads forks the ETL's workers (fast start)
    with tqdm(unit="object", desc="loading", disable=as_json, leave=False) as bar:

        def on_chunk(progress) -> None:
            bar.total = progress.objects_to_load
            bar.update(progress.objects_done - bar.n)
            bar.set_postfix(rows=progress.rows_inserted, rejected=progress.rejected)

        try:
            summary = LocalLambda(function, settings).invoke(event, progress=on_chunk)
        except (etl_module.EtlRequestError, WarehouseError) as error:
            raise click.ClickException(str(error)) from error
        except (psycopg.Error, BotoCoreError, ClientError, BrokenProcessPool) as error:
            raise click.ClickException(
                f"the ETL stopped: {infrastructure_fault(error)}. Chunks committed before stay loaded; the rest is "
                "not marked loaded and the next run loads it") from error
    gc.freeze()  # what this process holds lives until it exits: its last collection skips it (~0.25 CPU-s)
    if as_json:
        echo_json(summary)
        return
    click.echo(f"{function.name} {json.dumps(event)}")
    for key, label in SUMMARY_LABELS.items():
        click.echo(f"  {label:<16}{summary.get(key)!s:>10}")
    if summary.get("remaining"):
        click.echo(f"time ran short: {summary['remaining']} objects left; run `clickstream etl` again to continue")


def infrastructure_fault(error: BaseException) -> str:
    """One line naming the service that failed and its own words (no traceback, no password)."""
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(error, ClientError):
        info = error.response.get("Error", {})
        return f"S3 answered {info.get('Code', 'an error')}: {info.get('Message', '')}".rstrip(": ")
    if isinstance(error, BotoCoreError):
        return f"S3 cannot be reached: {error}"
    if type(error).__module__.startswith("psycopg"):
        return f"the warehouse failed: {' '.join(str(error).split()) or type(error).__name__}"
    return f"a worker process died ({error})"


@main.group("rollups")
def rollups_group() -> None:
    """The warehouse's rollup tables (kept up to date by each ETL run)."""


@rollups_group.command("rebuild")
@click.option("--from", "start_day", type=click.DateTime(["%Y-%m-%d"]), metavar="YYYY-MM-DD",
              help="First UTC day to recompute. [the first day with events]")
@click.option("--to", "end_day", type=click.DateTime(["%Y-%m-%d"]), metavar="YYYY-MM-DD",
              help="Last UTC day to recompute, included. [the last day with events]")
@click.pass_context
def rollups_rebuild(ctx, start_day, end_day) -> None:
    """Recompute the rollups from clickstream_events, as etl_writer.

    Without --from and --to every rollup row is deleted and computed again (pending days and deltas
    included). With either, only those UTC days are recomputed, with the sessions of their clients around
    them. Loads wait while it runs. Not needed in normal use: each ETL run folds in what it loaded.
    """
    from clickstream.analytics import rollups, warehouse

    current = stack.status(ctx.obj)
    if not current["services"]["dw"]["healthy"]:
        raise click.ClickException("dw not running: start the local stack with `clickstream up`")
    first, last = start_day and start_day.date(), end_day and end_day.date()
    if first and last and first > last:
        raise click.UsageError("--from is after --to")
    try:
        with warehouse.connect(stack.warehouse_dsn(ctx.obj, "etl_writer")) as conn:
            days = rollups.rebuild(conn, first, last)
    except warehouse.WarehouseError as error:
        raise click.ClickException(str(error)) from error
    if days:
        click.echo(f"rollups recomputed for {len(days)} UTC days, {days[0]} to {days[-1]}")
    else:
        click.echo("no events in that range: nothing to recompute")


@main.command()
@click.option("--from", "start_day", type=click.DateTime(["%Y-%m-%d"]), metavar="YYYY-MM-DD",
              help="First day, in the business time zone. [the last 7 days with data]")
@click.option("--to", "end_day", type=click.DateTime(["%Y-%m-%d"]), metavar="YYYY-MM-DD",
              help="Last day, included. [the last day with data; 6 days after --from]")
@click.option("--tz", default="UTC", show_default=True, help="Business time zone (IANA name) of the days and hours.")
@click.option("--include-bots", is_flag=True, help="Count bot traffic too (excluded by default).")
@click.option("--source", type=click.Choice(["auto", "raw", "rollup"]), default="auto", show_default=True,
              help="Read the rollups, the raw events table, or the rollups where they give the exact answer.")
@click.option("--top", default=10, show_default=True, type=click.IntRange(1), help="Rows of the top-N tables.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole report as one JSON object.")
@click.option("--charts", "charts_dir", type=click.Path(file_okay=False), help="Also write PNG charts into this folder.")
@click.pass_context
def report(ctx, start_day, end_day, tz: str, include_bots: bool, source: str, top: int, as_json: bool,
           charts_dir: str | None) -> None:
    """Answer the business questions from the warehouse, as dashboard_reader.

    Events by name and day, page views, top products and categories, the product view -> add to cart ->
    checkout -> purchase funnel (per session, steps in order), peak hours and sessions. Days are in --tz;
    bots are excluded unless --include-bots. SQL: sql/analytics/ (see sql/README.md).
    """
    from clickstream.analytics import questions
    from clickstream.analytics.warehouse import WarehouseError

    current = stack.status(ctx.obj)
    if not current["services"]["dw"]["healthy"]:
        raise click.ClickException("dw not running: start the local stack with `clickstream up`")
    dsn = current["dw_dsn"]
    try:
        start, end = questions.resolve_range(dsn, start_day and start_day.date(), end_day and end_day.date(), tz)
        click.echo(f"report from {start} to {end} ({tz})", err=True)
        result = questions.report(dsn, start, end, tz=tz, include_bots=include_bots, source=source)
    except questions.AnalyticsError as error:
        raise click.UsageError(str(error)) from error
    except WarehouseError as error:
        raise click.ClickException(str(error)) from error
    if as_json:
        echo_json(result)
    else:
        click.echo(questions.format_report(result, top=top))
    if charts_dir:
        from clickstream.analytics import charts

        for path in charts.write_charts(result, charts_dir):
            click.echo(f"chart: {path}", err=as_json)


DEMO_START = "2026-11-16"  # a Monday: the demo shows the same week every time it runs


@main.command()
@port_options
@click.option("--days", default=7, show_default=True, type=click.IntRange(1, 31), help="Days of traffic to simulate.")
@click.option("--visitors", default=2000, show_default=True, type=click.IntRange(1), help="Human visitors.")
@click.option("--seed", default=42, show_default=True, help="Seed of the simulated traffic.")
@click.option("--start", "start_day", default=DEMO_START, show_default=True, type=click.DateTime(["%Y-%m-%d"]),
              metavar="YYYY-MM-DD", help="First simulated day (UTC).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Folder for the report, the charts and the ground truth. [<home>/demo]")
@click.pass_context
def demo(ctx, days: int, visitors: int, seed: int, start_day, out_dir: str | None, **ports) -> None:
    """The main job, end to end: start the stack, simulate a week of shop traffic, load it with the ETL,
    answer the business questions, draw the charts, and check every answer against the ground truth."""
    from datetime import timedelta
    from pathlib import Path

    from clickstream.analytics import charts, questions
    from clickstream.shop import simulate, traffic

    settings = settings_with_ports(ctx, ports)
    out = Path(out_dir) if out_dir else settings.home / "demo"
    out.mkdir(parents=True, exist_ok=True)
    config = simulate.SimulationConfig(start=start_day.date(), days=days, visitors=visitors, seed=seed)
    last_day = config.start + timedelta(days=days - 1)

    click.secho("1. Starting the local stack", bold=True)
    result = stack.up(settings, progress=lambda line: click.echo(f"   {line}"))
    print_status(result)

    click.secho(f"\n2. Simulating {days} days of traffic ({config.start} to {last_day}, {visitors} visitors, "
                f"seed {seed})", bold=True)
    truth_path = out / "truth.json"
    with tqdm(total=visitors + config.bots, unit="visitor", desc="   simulating", leave=False) as bar:
        target = traffic.IngestTarget.from_templates(settings, aws.client("s3", settings))
        simulated = traffic.send(config, target, truth_path=truth_path, progress=bar.update)
    click.echo(f"   {simulated.events_stored} events in {simulated.objects} raw objects, written as the ingest Lambda "
               f"would have at the simulated times ({simulated.events_per_second:,.0f} events/s)")
    click.echo(f"   among them {simulated.duplicates} resent duplicates and {simulated.bot_events} bot events; "
               f"{simulated.malformed} malformed events were rejected by the ingest")

    click.secho("\n3. ETL SBW_Lamda_ETL, one invocation per day: raw objects -> clickstream_dw", bold=True)
    for offset in range(days):
        day = (config.start + timedelta(days=offset)).isoformat()
        with tqdm(unit="object", desc=f"   {day}", leave=False) as bar:
            def on_chunk(progress, bar=bar) -> None:
                bar.total = progress.objects_to_load
                bar.update(progress.objects_done - bar.n)

            summary = invoke_function(settings, ETL_FUNCTION, {"date": day}, progress=on_chunk)
        click.echo(f"   {day}: {summary['loaded']:>5} objects loaded, {summary['skipped']:>5} already loaded, "
                   f"{summary['rows_inserted']:>6} rows inserted, {summary['duplicates']:>4} duplicates, "
                   f"{summary['rejected']} rejected")

    click.secho("\n4. The business questions (clickstream report)", bold=True)
    answers = questions.report(result["dw_dsn"], config.start, last_day)
    click.echo(questions.format_report(answers))
    (out / "report.json").write_text(json.dumps(answers, indent=2, default=str) + "\n", encoding="utf-8")

    click.secho("\n5. Charts", bold=True)
    for path in charts.write_charts(answers, out):
        click.echo(f"   {path}")

    click.secho("\n6. Check against the simulator's ground truth", bold=True)
    mismatches = simulate.report_mismatches(answers, json.loads(truth_path.read_text(encoding="utf-8")))
    if mismatches:
        for line in mismatches:
            click.echo(f"   MISMATCH {line}", err=True)
        raise click.ClickException(f"{len(mismatches)} answers differ from the ground truth in {truth_path}")
    click.echo("   every count, the funnel, each product's figures and revenue, and the sessions match exactly")

    click.secho(f"\nOutput folder: {out.resolve()}", bold=True)
    click.echo("   report.json, truth.json and the PNG charts; open the PNGs with any image viewer.")
    click.echo("Next: notebooks/04_query_the_warehouse.ipynb (jupyter lab) asks the same questions step by step; "
               "`clickstream report --help` for other ranges and time zones.")
    click.echo(f"The dashboard shows the same week: {result['dashboard_url']} (`clickstream dashboard --help`).")
    click.echo("The stack keeps running; stop it with `clickstream down` (data is kept).")


if __name__ == "__main__":
    main(prog_name="clickstream")
