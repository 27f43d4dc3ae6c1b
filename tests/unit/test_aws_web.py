"""The web side on AWS (issues 13 and 14), read from the templates: the ingest API's CORS origins (the storefront's,
never "*"; locally also the loopback's), the storefront on the OLTP/web instance behind CloudFront, installed from
its bundle, and the warehouse instance's dashboard and roles."""

from __future__ import annotations

import re
import tarfile
from contextlib import contextmanager
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from clickstream.infra import checks, package
from clickstream.infra.templates import Stack, TemplateSet, load_stacks
from clickstream.local.http_api import create_app
from clickstream.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "cloudformation"


def aws_stacks(overrides: dict | None = None) -> dict[str, Stack]:
    """The templates as `clickstream deploy --target aws` resolves them (defaults, then `overrides` per stem)."""
    return {s.stem: s for s in TemplateSet(TEMPLATES).stacks("aws", "eu-west-1", overrides or {})}


@pytest.fixture(scope="module")
def local() -> dict[str, Stack]:
    settings = Settings.from_env({}, project=ROOT, home=ROOT / ".clickstream-unused")
    return {stack.stem: stack for stack in load_stacks(settings)}


def user_data(stack: Stack, instance: str) -> str:
    return stack.resolve(stack.props(instance)["UserData"]["Fn::Base64"])


# --- CORS ---------------------------------------------------------------------------------------------
def test_the_api_admits_the_storefronts_origin_by_default_never_star():
    stacks = aws_stacks()
    ingestion, frontend = stacks["ingestion"], stacks["frontend"]
    assert ingestion.template.parameters["CorsAllowOrigins"]["Default"] != "*"
    (api,) = ingestion.http_apis()
    assert api.cors["AllowOrigins"] == [frontend.outputs()["StorefrontOrigin"]]
    assert frontend.outputs()["StorefrontOrigin"] == frontend.outputs()["StorefrontUrl"]
    assert frontend.outputs()["StorefrontOrigin"].startswith("https://")
    assert {"authorization", "content-type"} <= {h.lower() for h in api.cors["AllowHeaders"]}


def test_configured_origins_replace_the_default():
    (api,) = aws_stacks({"ingestion": {"CorsAllowOrigins": "https://shop.example.com,https://www.example.com"}}
                        )["ingestion"].http_apis()
    assert api.cors["AllowOrigins"] == ["https://shop.example.com", "https://www.example.com"]


class Echo:
    function = type("Definition", (), {"name": "echo"})

    def invoke(self, event, request_id=None):
        return {"statusCode": 200, "body": "{}"}


def preflight(client: TestClient, origin: str):
    return client.options("/clickstream/user", headers={
        "origin": origin, "access-control-request-method": "POST",
        "access-control-request-headers": "content-type, authorization"})


def test_the_local_api_admits_loopback_origins_and_the_templates_and_refuses_others(local):
    (api,) = local["ingestion"].http_apis()
    verifiers = {route.authorizer.logical_id: None for route in api.routes if route.authorizer}
    client = TestClient(create_app(api, {"IngestFunction": Echo()}, verifiers))
    for origin in ("http://127.0.0.1:5173", "http://localhost:3000", "http://localhost", *api.cors["AllowOrigins"]):
        response = preflight(client, origin)
        assert response.status_code == 200 and response.headers["access-control-allow-origin"] == origin, origin
        assert "authorization" in response.headers["access-control-allow-headers"].lower()
    for origin in ("https://evil.example", "http://127.0.0.1.evil.example", "https://localhost:3000",
                   "http://localhost:3000.evil.example", "null"):
        response = preflight(client, origin)
        assert response.status_code == 400 and "access-control-allow-origin" not in response.headers, origin
    simple = client.post("/clickstream", json={}, headers={"origin": "http://localhost:8080"})
    assert simple.headers["access-control-allow-origin"] == "http://localhost:8080"
    assert "access-control-allow-origin" not in client.post(
        "/clickstream", json={}, headers={"origin": "https://evil.example"}).headers


# --- the storefront on the OLTP/web instance behind CloudFront ----------------------------------------
def test_cloudfront_sends_pages_to_the_instance_on_port_80_and_static_files_to_the_bucket():
    frontend = aws_stacks()["frontend"]
    config = frontend.props("StorefrontDistribution")["DistributionConfig"]
    origins = {origin["Id"]: origin for origin in config["Origins"]}
    default = config["DefaultCacheBehavior"]
    pages = origins[default["TargetOriginId"]]
    assert pages["DomainName"] == {"Fn::GetAtt": ["OltpInstance", "PublicDnsName"]}
    assert pages["CustomOriginConfig"]["HTTPPort"] == 80
    assert pages["CustomOriginConfig"]["OriginProtocolPolicy"] == "http-only"
    assert default["ViewerProtocolPolicy"] == "redirect-to-https"
    assert {"GET", "POST"} <= set(default["AllowedMethods"])  # forms: cart, checkout, sign in
    assert default["CachePolicyId"] == "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"  # CachingDisabled: pages per visitor
    (static,) = config["CacheBehaviors"]
    assert static["PathPattern"] == "/static/*"
    assert "OriginAccessControlId" in origins[static["TargetOriginId"]]
    assert frontend.outputs()["StorefrontUrl"] == "https://StorefrontDistribution.DomainName"


def test_the_cookie_secret_is_generated_and_only_the_instance_reads_it():
    frontend = aws_stacks()["frontend"]
    secret = frontend.props("StorefrontCookieSecret")
    assert "GenerateSecretString" in secret and "SecretString" not in secret
    statements = {s["Sid"]: s for s in
                  frontend.props("OltpInstanceRole")["Policies"][0]["PolicyDocument"]["Statement"]}
    secret_policy = frontend.props("OltpCookieSecretPolicy")
    assert secret_policy["Roles"] == [{"Ref": "OltpInstanceRole"}]
    assert secret_policy["PolicyDocument"]["Statement"] == [{"Sid": "ReadCookieSecret", "Effect": "Allow",
                                                             "Action": "secretsmanager:GetSecretValue",
                                                             "Resource": {"Ref": "StorefrontCookieSecret"}}]
    assert frontend.resources["OltpInstance"]["DependsOn"] == "OltpCookieSecretPolicy"
    assert not [s for s in statements.values() if "secretsmanager" in str(s["Action"])]
    assert frontend.resolve(statements["ReadStorefrontBundle"]["Resource"]) == \
        "arn:aws:s3:::clickstream-artifacts/storefront/clickstream-storefront-bundle.tar.gz"
    assert frontend.resolve(statements["ReadIngestUrl"]["Resource"]).endswith(
        ":parameter/clickstream-ingestion/ApiUrl")
    assert statements["ReadOwnOutputs"]["Resource"] == {"Ref": "AWS::StackId"}


def test_the_instance_installs_the_storefront_from_its_bundle_with_nothing_secret_in_user_data():
    stacks = aws_stacks()
    frontend, ingestion = stacks["frontend"], stacks["ingestion"]
    script = user_data(frontend, "OltpInstance")
    assert "aws s3 cp 's3://clickstream-artifacts/storefront/clickstream-storefront-bundle.tar.gz'" in script
    assert "pip install --no-index --find-links wheels clickstream uvicorn" in script
    assert "oltp.seed(" in script  # shop_oltp's tables and catalogue
    assert "APP_PW=$(openssl rand -hex 24)" in script  # shop_app's password is made on the instance
    secret_name = frontend.resolve(frontend.props("StorefrontCookieSecret")["Name"])
    assert f"--secret-id '{secret_name}'" in script and secret_name == "clickstream/storefront/cookie-secret-dev"
    assert "aws ssm get-parameter --name '/clickstream-ingestion/ApiUrl'" in script
    assert ingestion.resolve(ingestion.props("ApiUrlParameter")["Name"]) == "/clickstream-ingestion/ApiUrl"
    assert ingestion.resolve(ingestion.props("ApiUrlParameter")["Value"]) == ingestion.outputs()["ApiUrl"]
    assert "python -m clickstream.shop.storefront --host 0.0.0.0 --port 80" in script
    assert "CLICKSTREAM_STACK_PREFIX=$(basename 'clickstream-frontend' -frontend)" in script
    assert "CLICKSTREAM_TARGET=aws" in script and "CLICKSTREAM_PROJECT_ROOT=/opt/clickstream" in script
    # no literal credential: every password= is a shell variable generated or read on the instance
    assert re.findall(r"password=([^\s\"]+)", script, re.I) == ["$APP_PW"]
    assert "PASSWORD :'pw'" in script


def test_the_storefront_bundle_is_a_code_target_with_what_the_storefront_runs():
    targets = {t.parameter: t for t in package.code_targets(aws_stacks().values())}
    target = targets["StorefrontCodeKey"]
    assert (target.kind, target.templates, target.folders) == (
        "bundle", ("frontend",), ("frontend", "sql/oltp", "cloudformation/userdata"))
    assert target.key_prefix == "storefront/" and target.machine == "aarch64" and target.python == "3.11"
    assert set(target.modules) == {"clickstream.shop.storefront", "clickstream.shop.oltp", "clickstream.shop.shoppers"}
    listing, missing, requires = package.bundle_requirements(target, ROOT)
    names = {line.split("==")[0] for line in listing}
    assert {"starlette", "uvicorn", "jinja2", "itsdangerous", "pyjwt", "psycopg-binary"} <= names
    assert {"boto3", "pyyaml", "packaging"} <= names  # signing in: shoppers -> clickstream.aws, infra.deploy
    assert not {"shiny", "pandas", "moto", "pgserver"} & names and missing == []
    assert targets["DashboardCodeKey"].folders == ("sql", "shiny", "cloudformation/userdata")


def test_the_storefront_bundle_holds_frontend_and_the_oltp_migrations(tmp_path):
    targets = {t.parameter: t for t in package.code_targets(aws_stacks().values())}
    artifact = package.build_bundle(targets["StorefrontCodeKey"], tmp_path, home=tmp_path, project=ROOT,
                                    with_dependencies=False)
    with tarfile.open(artifact.path) as tar:
        names = set(tar.getnames())
    assert "frontend/static/clickstream.js" in names and "frontend/templates" in names
    assert "cloudformation/userdata/mount-data-volume.sh" in names  # the user data mounts shop_oltp's volume with it
    assert any(re.fullmatch(r"sql/oltp/\d{4}_.+\.sql", name) for name in names)
    assert not any(name.startswith(("shiny/", "sql/analytics")) for name in names)
    assert any(re.fullmatch(r"wheels/clickstream-.+-py3-none-any\.whl", name) for name in names)
    assert artifact.key.startswith("storefront/clickstream-storefront-bundle-")


# --- the warehouse instance SBW_EC2_ShinyDWH: roles as locally, the dashboard, SSM port forwarding ------------
class RecordingCluster:
    """What setup_warehouse asks of a cluster, recorded as SQL text (no database)."""

    def __init__(self):
        self.statements: list[str] = []

    def ensure_login_role(self, role, password):
        self.statements.append(f"CREATE ROLE {role} LOGIN")
        self.statements.append(f"ALTER ROLE {role} PASSWORD")

    def ensure_database(self, name, owner=None):
        self.statements.append(f"CREATE DATABASE {name}")

    @contextmanager
    def connect_admin(self, dbname="postgres"):
        yield self

    @contextmanager
    def transaction(self):
        yield

    def execute(self, statement, params=None):
        self.statements.append(statement if isinstance(statement, str) else statement.as_string(None))
        return self

    def fetchone(self):
        return (None,)  # to_regclass('public.schema_migrations'): not there yet, as before the first migrate


def normalized(sql_text: str) -> str:
    return re.sub(r"\s+", " ", sql_text.replace('"', "")).strip().rstrip(";").lower()


def test_the_warehouse_user_data_grants_what_setup_warehouse_grants_locally():
    from clickstream.local import postgres

    cluster = RecordingCluster()
    postgres.setup_warehouse(cluster, {role: "x" for role in postgres.WAREHOUSE_ROLES})
    local = [normalized(s) for s in cluster.statements if not s.startswith("SELECT")]
    script = user_data(aws_stacks()["analytics"], "DwInstance")
    sql_blocks = re.findall(r"<<'SQL'\n(.*?)\nSQL\n", script, re.S)
    statements = ["\n".join(line for line in block.splitlines() if not line.startswith("\\")) for block in sql_blocks]
    on_aws = {normalized(s) for block in statements for s in block.split(";") if s.strip()}
    missing = [s for s in local if not any(statement.startswith(s) for statement in on_aws)]
    # the roles are created on a new data volume; their passwords are set by every new instance
    assert len(sql_blocks) == 4 and missing == []
    assert {"create role sbw_reader login", "alter role sbw_reader password :'sbw'",
            "alter role sbw_reader set search_path to sbw, public"} <= on_aws
    # then the migration log is taken back, as protect_migration_log does after each migrate
    assert script.index("warehouse.migrate(") < script.index("REVOKE ALL ON schema_migrations FROM PUBLIC, etl_writer")


def test_the_dashboard_runs_shiny_app_as_dashboard_reader_on_the_loopback():
    stacks = aws_stacks()
    script = user_data(stacks["analytics"], "DwInstance")
    dsn = re.search(r"^CLICKSTREAM_DASHBOARD_DSN=(.+)$", script, re.M).group(1)
    assert dsn == "host=127.0.0.1 port=5432 dbname=clickstream_dw user=dashboard_reader password=$READER_PW"
    assert "ExecStart=/opt/clickstream/venv/bin/shiny run --host 127.0.0.1 --port 8787 /opt/clickstream/shiny/app.py" \
        in script
    assert "pip install --no-index --find-links wheels clickstream shiny" in script
    assert "CLICKSTREAM_PROJECT_ROOT=/opt/clickstream" in script  # sql/analytics of the bundle
    target = {t.parameter: t for t in package.code_targets(stacks.values())}["DashboardCodeKey"]
    names = {line.split("==")[0] for line in package.bundle_requirements(target, ROOT)[0]}
    assert "shiny" in names and target.folders == ("sql", "shiny", "cloudformation/userdata")


def test_the_dashboard_command_forwards_the_port_of_the_real_instance():
    analytics = aws_stacks()["analytics"]
    output = analytics.template.outputs["DashboardSessionCommand"]["Value"]["Fn::Sub"]
    assert "--target ${DwInstance} " in output  # Ref of the instance: its instance id, not a logical id or a name
    assert analytics.resources["DwInstance"]["Type"] == "AWS::EC2::Instance"
    assert analytics.outputs()["DashboardSessionCommand"] == (
        "aws ssm start-session --target DwInstance --document-name AWS-StartPortForwardingSession "
        "--parameters '{\"portNumber\":[\"8787\"],\"localPortNumber\":[\"8787\"]}' --region eu-west-1")


def test_an_aws_deploy_of_the_frontend_ships_the_storefront_bundle_and_uploads_the_static_files(s3, tmp_path,
                                                                                                 monkeypatch):
    from clickstream.infra import deploy

    params = tmp_path / "aws.json"
    params.write_text('{"parameters": {"*": {"NameSuffix": "me", "CodeBucket": "my-code"}}}')
    s3.create_bucket(Bucket="my-code")
    s3.create_bucket(Bucket="clickstream-storefront-me")  # what CloudFormation would have created
    sent = {}
    monkeypatch.setattr(deploy, "deploy_with_change_set",
                        lambda cf, name, body, parameters, **_: sent.update({name: parameters}) or "CREATE_COMPLETE")
    monkeypatch.setattr(deploy, "require_deployed_dependencies", lambda *a: None)
    monkeypatch.setattr(deploy, "stack_resources", lambda cf, name: [
        {"logical_id": "StorefrontBucket", "type": "AWS::S3::Bucket", "physical_id": "clickstream-storefront-me"}])
    monkeypatch.setattr(deploy, "stack_outputs", lambda cf, name: {})
    deploy.deploy(Settings(target="aws", project=ROOT, home=tmp_path / "home"), "frontend", parameters_file=params,
                  with_dependencies=False, delay=0)
    given = {p["ParameterKey"]: p["ParameterValue"] for p in sent["clickstream-frontend"]}
    assert given["StorefrontCodeKey"].startswith("storefront/clickstream-storefront-bundle-")
    s3.head_object(Bucket="my-code", Key=given["StorefrontCodeKey"])
    tracker = s3.get_object(Bucket="clickstream-storefront-me", Key="static/clickstream.js")
    assert tracker["Body"].read() == (ROOT / "frontend" / "static" / "clickstream.js").read_bytes()
    assert tracker["ContentType"] in ("text/javascript", "application/javascript")
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="clickstream-storefront-me")["Contents"]}
    assert keys == {f"static/{p.relative_to(ROOT / 'frontend' / 'static').as_posix()}"
                    for p in (ROOT / "frontend" / "static").rglob("*") if p.is_file() and not p.name.startswith(".")}


@pytest.mark.parametrize("parameter, imports", [
    ("StorefrontCodeKey", "import clickstream.shop.storefront, clickstream.shop.oltp, clickstream.shop.shoppers"),
    ("DashboardCodeKey", f"import clickstream.analytics.warehouse, runpy; runpy.run_path({str(ROOT / 'shiny' / 'app.py')!r})"),
])
def test_what_an_instance_runs_imports_with_only_its_bundles_third_party_packages(parameter, imports, tmp_path):
    """What the instance runs imports in a Python whose only third-party packages are those its bundle carries
    (links to this venv's copies; `-S`: no site-packages), as on the instance after `pip install` of wheels/."""
    import importlib.metadata
    import subprocess
    import sys

    targets = {t.parameter: t for t in package.code_targets(aws_stacks().values())}
    for line in package.bundle_requirements(targets[parameter], ROOT)[0]:
        dist = importlib.metadata.distribution(line.split("==")[0])
        for top in {Path(str(f)).parts[0] for f in dist.files or []} - {"..", "bin"}:
            if not (tmp_path / top).exists():
                (tmp_path / top).symlink_to(Path(dist.locate_file(top)))
    done = subprocess.run([sys.executable, "-S", "-c", f"{imports}; print('ok')"], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env={"PYTHONPATH": f"{tmp_path}:{ROOT / 'lib'}",
                                                      "CLICKSTREAM_PROJECT_ROOT": str(ROOT)})
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]



@pytest.mark.parametrize("template, instance, variables", [("analytics", "DwInstance", ("ETL_PW", "READER_PW", "SBW_PW")),
                                                           ("frontend", "OltpInstance", ("APP_PW",))])
def test_no_password_is_on_a_command_line_in_user_data(template, instance, variables):
    """`ps` shows every command line to every user: psql reads each password from its environment."""
    script = user_data(aws_stacks()[template], instance)
    assert checks.passwords_on_command_lines(script) == []
    assert sorted(re.findall(r"^\\getenv \w+ (\w+)$", script, re.M)) == sorted(variables)
