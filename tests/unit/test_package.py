"""clickstream.infra.package: the code the templates deploy, built reproducibly, and the deploy's upload of it.

No test downloads anything: the real dependency build is tested on the pip command line it runs and by
installing a tiny wheel built here into a wheel cache in tmp_path (pip with --no-index); the AWS upload path
runs against moto's in-process S3 standing in for the real one, because AWS cannot be reached from here.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
import zipfile
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from clickstream import contract
from clickstream.infra import deploy, package
from clickstream.infra.deploy import DeployConfig, load_templates
from clickstream.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
BOTO_OWN = {"boto3", "botocore", "s3transfer", "jmespath"}


def settings(target: str = "local", home: Path | None = None) -> Settings:
    return Settings(target=target, project=ROOT, home=home or ROOT / ".clickstream")


def targets(folder: Path | None = None) -> dict[str, package.CodeTarget]:
    config = DeployConfig.load(settings(), env={})
    return {t.parameter: t for t in package.code_targets(load_templates(settings(), config, folder))}


def names(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as archive:
        return archive.namelist()


# --- what the templates deploy -----------------------------------------------------------------------
def test_each_function_and_the_warehouse_bundle_is_a_code_target_read_from_the_templates():
    found = targets()
    assert {"IngestCodeKey", "EtlCodeKey", "DashboardCodeKey"} <= set(found)
    ingest, etl, bundle = found["IngestCodeKey"], found["EtlCodeKey"], found["DashboardCodeKey"]
    assert (ingest.kind, ingest.source, ingest.python, ingest.machine) == ("lambda", ROOT / "lambdas" / "ingest", "3.12", "aarch64")
    assert etl.source == ROOT / "lambdas" / "etl" and etl.templates == ("analytics",)
    # the user data's own words: python3.11 -m venv, pip install ... clickstream shiny, an arm64 image
    assert (bundle.kind, bundle.python, bundle.machine, bundle.packages) == ("bundle", "3.11", "aarch64", ("clickstream", "shiny"))
    assert bundle.key_prefix == "dashboard/"


# --- which dependencies ------------------------------------------------------------------------------
def test_the_handlers_third_party_imports_follow_the_clickstream_modules_they_import():
    ingest, etl = targets()["IngestCodeKey"], targets()["EtlCodeKey"]
    modules, reached = package.third_party_modules(ingest.source)
    assert {"jsonschema_rs", "msgspec", "rfc3339_validator"} <= modules
    assert not {"jsonschema", "referencing"} & modules  # reasons come from jsonschema-rs's own errors
    assert "clickstream.contract" in reached and "clickstream.analytics.etl" not in reached
    assert "yaml" not in modules  # contract.py imports it inside a function, for the docs and tests only
    modules, reached = package.third_party_modules(etl.source)
    assert {"psycopg", "crawlerdetect", "user_agents"} <= modules and "clickstream.analytics.warehouse" in reached


def test_each_function_requirement_list_is_pinned_to_requirements_txt_and_leaves_out_boto3():
    pinned = package.pins(ROOT / "requirements.txt")
    lists = {p: package.lambda_requirements(t) for p, t in targets().items() if t.kind == "lambda"}
    for listing in lists.values():
        assert listing and [line.split("==")[0] for line in listing] == sorted(line.split("==")[0] for line in listing)
        for line in listing:
            name, version = line.split("==")
            assert pinned[name] == version, line
            assert name not in BOTO_OWN, line
        assert not {"moto", "pandas", "pyyaml", "urllib3", "python-dateutil", "psycopg2-binary"} & {
            line.split("==")[0] for line in listing}
    ingest = {line.split("==")[0] for line in lists["IngestCodeKey"]}
    etl = {line.split("==")[0] for line in lists["EtlCodeKey"]}
    assert {"jsonschema-rs", "msgspec", "rfc3339-validator"} <= ingest
    assert not {"jsonschema", "referencing", "rpds-py"} & ingest  # reasons come from jsonschema-rs's errors
    assert "psycopg" not in ingest and "crawlerdetect" not in ingest
    assert {"psycopg", "psycopg-binary", "crawlerdetect", "user-agents", "ua-parser", "ua-parser-builtins"} <= etl


def test_the_closure_follows_extras_and_markers_for_the_target_and_refuses_an_unpinned_package():
    requires = {"app": ["lib[fast]", "winonly; sys_platform == 'win32'", "old; python_version < '3.12'", "boto3"],
                "lib": ["fastdep; extra == 'fast'", "slowdep; extra == 'slow'"], "fastdep": [], "boto3": ["botocore"], "botocore": [], "old": []}
    pinned = {"app": "1", "lib": "2", "fastdep": "3", "slowdep": "4", "winonly": "5", "old": "6", "boto3": "7", "botocore": "8"}
    got = package.closure(["app"], pinned, "3.12", "aarch64", provided=["boto3"], requires=lambda n: requires[n])
    assert got == ["app==1", "fastdep==3", "lib==2"]
    assert "old==6" in package.closure(["app"], pinned, "3.11", "aarch64", requires=lambda n: requires[n])
    with pytest.raises(package.PackageError, match="fastdep is needed but requirements.txt pins no version"):
        package.closure(["app"], {k: v for k, v in pinned.items() if k != "fastdep"}, "3.12", "aarch64",
                        requires=lambda n: requires[n])


def test_the_bundle_wheels_are_what_the_instance_runs_pinned_and_an_unpinned_dashboard_package_is_named():
    target = targets()["DashboardCodeKey"]
    assert target.modules == ("clickstream.analytics.warehouse",)  # the user data runs warehouse.migrate
    listing, missing, requires = package.bundle_requirements(target, ROOT)
    pinned = package.pins(ROOT / "requirements.txt")
    assert all(pinned[line.split("==")[0]] == line.split("==")[1] for line in listing)
    names_ = {line.split("==")[0] for line in listing}
    assert {"psycopg", "psycopg-binary", "jsonschema-rs"} <= names_ and "psycopg[binary]" in requires
    assert not {"moto", "pgserver", "cfn-lint", "pytest"} & names_  # the local stack's, not the instance's
    assert {"shiny", "pandas"} <= names_ and not {"matplotlib", "plotly"} & names_  # what shiny/app.py imports
    assert missing == ([] if "shiny" in pinned else ["shiny"])


def test_the_pip_commands_install_for_the_functions_platform_from_the_cache_and_download_only_into_it(tmp_path):
    etl = targets()["EtlCodeKey"]
    install = package.pip_install_command(etl, tmp_path / "site", tmp_path / "r.txt", tmp_path / "cache")
    assert install[1:4] == ["-m", "pip", "install"]
    text = " ".join(install)
    for option in ("--target " + str(tmp_path / "site"), "--platform manylinux2014_aarch64",
                   "--platform manylinux_2_34_aarch64", "--python-version 3.12", "--implementation cp",
                   "--only-binary=:all:", "--no-deps", "--no-index", "--find-links " + str(tmp_path / "cache"),
                   "-r " + str(tmp_path / "r.txt"), "--no-compile"):
        assert option in text
    download = " ".join(package.pip_download_command(etl, tmp_path / "r.txt", tmp_path / "cache"))
    assert " download " in download and "--dest " + str(tmp_path / "cache") in download
    assert "--platform manylinux2014_aarch64" in download and "--only-binary=:all:" in download


# --- zips --------------------------------------------------------------------------------------------
def test_a_function_zip_has_the_handler_at_the_root_and_the_package_with_its_data(tmp_path):
    artifact = package.build_lambda(targets()["IngestCodeKey"], tmp_path, home=tmp_path, with_dependencies=False)
    listed = names(artifact.path)
    assert "handler.py" in listed
    assert {"clickstream/__init__.py", "clickstream/contract.py", "clickstream/schemas/clickstream-event-v1.json",
            "clickstream/data/catalogue.csv"} <= set(listed)
    assert not [n for n in listed if "__pycache__" in n or n.endswith(".pyc") or n.startswith("tests/")]
    assert listed == sorted(listed)
    with zipfile.ZipFile(artifact.path) as archive:
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert archive.read("handler.py") == (ROOT / "lambdas" / "ingest" / "handler.py").read_bytes()
    assert artifact.key == f"lambdas/ingest-{artifact.sha256[:12]}.zip"
    assert artifact.sha256 == hashlib.sha256(artifact.path.read_bytes()).hexdigest()


def copy_project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    shutil.copytree(ROOT / "cloudformation", project / "cloudformation")
    shutil.copytree(ROOT / "lambdas", project / "lambdas", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "lib" / "clickstream", project / "lib" / "clickstream",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return project


def test_the_same_sources_give_the_same_bytes_and_a_changed_source_a_new_key(tmp_path):
    project = copy_project(tmp_path)
    target = targets(project / "cloudformation")["EtlCodeKey"]
    package_dir = project / "lib" / "clickstream"
    first = package.build_lambda(target, tmp_path / "a", home=tmp_path, with_dependencies=False, package=package_dir)
    (project / "lambdas" / "etl" / "__pycache__").mkdir()
    (project / "lambdas" / "etl" / "__pycache__" / "handler.cpython-311.pyc").write_bytes(b"cache")
    for path in (project / "lambdas" / "etl").rglob("*"):  # timestamps do not matter
        path.touch()
    again = package.build_lambda(target, tmp_path / "b", home=tmp_path, with_dependencies=False, package=package_dir)
    assert again.path.read_bytes() == first.path.read_bytes() and again.key == first.key
    (package_dir / "analytics" / "etl.py").write_text((package_dir / "analytics" / "etl.py").read_text() + "\n# changed\n")
    changed = package.build_lambda(target, tmp_path / "c", home=tmp_path, with_dependencies=False, package=package_dir)
    assert changed.key != first.key and changed.key.startswith("lambdas/etl-")


def tiny_wheel(folder: Path, name: str = "tinydep", version: str = "1.0") -> Path:
    """A real, minimal py3-none-any wheel (a module and its dist-info), for installing without a network."""
    dist = f"{name}-{version}.dist-info"
    files = {f"{name}/__init__.py": b"VALUE = 42\n",
             f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
             f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    files[f"{dist}/RECORD"] = "".join(f"{n},,\n" for n in [*files, f"{dist}/RECORD"]).encode()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for arc, data in files.items():
            archive.writestr(arc, data)
    return path


def test_dependencies_are_installed_into_the_zip_from_the_wheel_cache_without_a_download(tmp_path):
    # Given a wheel cache that already holds the pinned wheel
    cache = tmp_path / "wheelhouse"
    tiny_wheel(cache)
    calls = []

    def run(command):
        calls.append(command)
        assert "download" not in command, "the cache has the wheel: nothing to download"
        return package._run(command)

    target = targets()["IngestCodeKey"]
    first = package.build_lambda(target, tmp_path / "a", home=tmp_path, requirements=["tinydep==1.0"],
                                 wheelhouse=cache, run=run)
    listed = names(first.path)
    assert "tinydep/__init__.py" in listed and "tinydep-1.0.dist-info/METADATA" in listed and "handler.py" in listed
    assert not [n for n in listed if "__pycache__" in n or n.startswith("bin/")]
    assert first.requirements == ["tinydep==1.0"] and first.unpacked_size > first.size > 0
    again = package.build_lambda(target, tmp_path / "b", home=tmp_path, requirements=["tinydep==1.0"],
                                 wheelhouse=cache, run=run)
    assert again.key == first.key
    assert all("install" in c for c in calls)


def test_a_wheel_missing_from_the_cache_is_downloaded_into_it_and_a_failed_download_says_why(tmp_path):
    cache, calls = tmp_path / "wheelhouse", []

    def run(command):  # stands in for PyPI: "downloads" by building the wheel into --dest
        calls.append(command[3])
        if command[3] == "download":
            tiny_wheel(Path(command[command.index("--dest") + 1]))
            return package.subprocess.CompletedProcess(command, 0, "", "")
        return package._run(command)

    artifact = package.build_lambda(targets()["IngestCodeKey"], tmp_path / "out", home=tmp_path,
                                    requirements=["tinydep==1.0"], wheelhouse=cache, run=run)
    assert calls == ["install", "download", "install"] and "tinydep/__init__.py" in names(artifact.path)

    def offline(command):
        if command[3] == "download":
            return package.subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution found for nope==9")
        return package._run(command)

    with pytest.raises(package.PackageError, match="No matching distribution found for nope==9"):
        package.build_lambda(targets()["IngestCodeKey"], tmp_path / "out", home=tmp_path,
                             requirements=["nope==9"], wheelhouse=tmp_path / "empty", run=offline)


# --- the warehouse bundle ------------------------------------------------------------------------------
def test_the_bundle_holds_the_clickstream_wheel_sql_and_shiny_and_is_reproducible(tmp_path):
    target = targets()["DashboardCodeKey"]
    first = package.build_bundle(target, tmp_path / "a", home=tmp_path, project=ROOT, with_dependencies=False)
    again = package.build_bundle(target, tmp_path / "b", home=tmp_path, project=ROOT, with_dependencies=False)
    assert first.path.read_bytes() == again.path.read_bytes()
    assert first.key == f"dashboard/clickstream-dw-bundle-{first.sha256[:12]}.tar.gz"
    with tarfile.open(first.path) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert {"wheels", "sql", "shiny"} <= {n for n, m in members.items() if m.isdir()}
        assert {m.mtime for m in members.values()} == {0}
        assert "wheels/clickstream-0.1.0-py3-none-any.whl" in members
        assert any(n.startswith("sql/migrations/0001_") for n in members)
        assert {"shiny/www/chart.umd.min.js", "shiny/www/chartjs-chart-matrix.min.js", "shiny/www/chart_output.js"} <= set(members)  # served offline
        wheel = zipfile.ZipFile(io.BytesIO(tar.extractfile("wheels/clickstream-0.1.0-py3-none-any.whl").read()))
    listed = wheel.namelist()
    assert {"clickstream/analytics/warehouse.py", "clickstream/schemas/clickstream-event-v1.json",
            "clickstream-0.1.0.dist-info/METADATA", "clickstream-0.1.0.dist-info/RECORD"} <= set(listed)
    metadata = wheel.read("clickstream-0.1.0.dist-info/METADATA").decode()
    assert "Requires-Dist: psycopg[binary]" in metadata and "Requires-Dist: moto" not in metadata


def test_the_clickstream_wheel_installs_with_pip(tmp_path):
    wheel = package.build_project_wheel(tmp_path / "wheels")
    result = package._run([package.sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                           "--target", str(tmp_path / "site"), str(wheel)])
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "site" / "clickstream" / "schemas" / "clickstream-event-v1.json").exists()
    entry_points = (tmp_path / "site" / "clickstream-0.1.0.dist-info" / "entry_points.txt").read_text()
    assert "clickstream = clickstream.cli:main" in entry_points


# --- upload: only what is missing (moto's in-process S3 stands in for AWS, which cannot be reached) -------
@pytest.fixture()
def s3(monkeypatch):
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        yield boto3.client("s3", region_name="us-east-1")


def test_upload_skips_keys_that_exist_and_refuses_a_missing_bucket_on_aws(s3, tmp_path):
    artifacts = [package.build_lambda(t, tmp_path, home=tmp_path, with_dependencies=False)
                 for p, t in sorted(targets().items()) if t.kind == "lambda"]
    with pytest.raises(deploy.DeployError, match="CodeBucket code-bucket is not reachable"):
        deploy.upload_code(s3, "code-bucket", artifacts)
    s3.create_bucket(Bucket="code-bucket")
    s3.put_object(Bucket="code-bucket", Key=artifacts[0].key, Body=b"already there")
    done = deploy.upload_code(s3, "code-bucket", artifacts)
    assert done == [{"key": artifacts[0].key, "uploaded": False}, {"key": artifacts[1].key, "uploaded": True}]
    assert s3.get_object(Bucket="code-bucket", Key=artifacts[1].key)["Body"].read() == artifacts[1].path.read_bytes()
    assert deploy.upload_code(s3, "code-bucket", artifacts) == [{"key": a.key, "uploaded": False} for a in artifacts]


def test_an_aws_deploy_builds_uploads_only_missing_code_and_passes_the_keys(s3, tmp_path, monkeypatch):
    # Given the aws target with a parameters file naming a CodeBucket that holds the ingest zip already
    params = tmp_path / "aws.json"
    params.write_text('{"parameters": {"*": {"NameSuffix": "me", "CodeBucket": "my-code"}, '
                      '"analytics": {"DwHost": "10.20.10.10"}, "network": {"S3PrefixListId": "pl-1"}}}')
    s3.create_bucket(Bucket="my-code")
    home = tmp_path / "home"
    ingest = package.build_lambda(targets()["IngestCodeKey"], tmp_path / "pre", home=home, with_dependencies=False)
    s3.put_object(Bucket="my-code", Key=ingest.key, Body=ingest.path.read_bytes())
    sent: dict[str, list[dict]] = {}

    def change_set(cf, name, body, parameters, **_):  # CloudFormation is not reachable: record what it would get
        sent[name] = parameters
        return "CREATE_COMPLETE"

    monkeypatch.setattr(deploy, "deploy_with_change_set", change_set)
    monkeypatch.setattr(deploy, "require_deployed_dependencies", lambda *a: None)
    monkeypatch.setattr(deploy, "stack_resources", lambda cf, name: [])
    monkeypatch.setattr(deploy, "stack_outputs", lambda cf, name: {})
    lines: list[str] = []
    # When analytics and ingestion are deployed (dependencies off: no download in a test)
    results = [deploy.deploy(Settings(target="aws", project=ROOT, home=home), stack, parameters_file=params,
                             progress=lines.append, with_dependencies=False, delay=0)[0]
               for stack in ("ingestion", "analytics")]
    # Then the ingest zip was not uploaded again, the ETL zip and the bundle were, and the keys were passed
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="my-code")["Contents"]}
    given = {p["ParameterKey"]: p["ParameterValue"] for stack in sent.values() for p in stack}
    assert given["IngestCodeKey"] == ingest.key
    assert given["EtlCodeKey"].startswith("lambdas/etl-") and given["EtlCodeKey"] in keys
    assert given["DashboardCodeKey"].startswith("dashboard/clickstream-dw-bundle-") and given["DashboardCodeKey"] in keys
    assert any("is there already" in line and ingest.key in line for line in lines)
    assert any(line.startswith("  uploading etl-") for line in lines)
    assert not any(f"uploading {ingest.path.name}" in line for line in lines)
    assert results[0].code == [{"parameter": "IngestCodeKey", "key": ingest.key, "bucket": "my-code",
                                "size": ingest.size, "uploaded": False}]
    assert {item["parameter"]: item["uploaded"] for item in results[1].code} == {"EtlCodeKey": True,
                                                                                  "DashboardCodeKey": True}


def test_no_build_uses_the_given_keys_and_stops_when_the_code_is_missing(s3, tmp_path, monkeypatch):
    params = tmp_path / "aws.json"
    params.write_text('{"parameters": {"*": {"NameSuffix": "me", "CodeBucket": "my-code"}}}')
    s3.create_bucket(Bucket="my-code")
    monkeypatch.setattr(deploy, "require_deployed_dependencies", lambda *a: None)
    with pytest.raises(deploy.DeployError, match=r"code not found: s3://my-code/lambdas/ingest.zip"):
        deploy.deploy(Settings(target="aws", project=ROOT, home=tmp_path), "ingestion", parameters_file=params,
                      build=False, delay=0)
    # an instance's bundle too: its first boot would fail without it
    with pytest.raises(deploy.DeployError, match=r"code not found: s3://my-code/storefront/clickstream-storefront-"
                                                 r"bundle.tar.gz \(StorefrontCodeKey\)"):
        deploy.deploy(Settings(target="aws", project=ROOT, home=tmp_path), "frontend", parameters_file=params,
                      build=False, delay=0)
    assert "Contents" not in s3.list_objects_v2(Bucket="my-code")
