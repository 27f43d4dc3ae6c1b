"""`clickstream deploy` / `destroy` on AWS: the CloudFormation templates as stacks, in dependency order.

The stacks and their order come from the templates in cloudformation/ (clickstream.infra.templates): a template
that `Fn::ImportValue`s an export of another is deployed after it (and destroyed before it). Stack names are
`<prefix>-<stem>` (prefix `clickstream`, or `stack_prefix` of the target's parameters file, or
CLICKSTREAM_STACK_PREFIX).

Code: before the stacks, the code their `*CodeKey` parameters name is built (clickstream.infra.package: a zip per
Lambda function and the warehouse bundle, reproducible, at content-addressed keys), uploaded to CodeBucket
unless the key is there, and the keys are passed as those parameters (`build=False`: the given keys).

aws target: change sets (CREATE or UPDATE; "no changes" is success), waiters, CAPABILITY_NAMED_IAM,
parameters from cloudformation/parameters/aws.json (else the templates' defaults; a parameter holding an
AWS-managed prefix list's id, named in Metadata.clickstream.ManagedPrefixLists, is looked up in the region),
pinned images (resolve_images), outputs; a failure is a DeployError listing each failed resource's logical id and status reason
(describe_stack_events).

The local target (the same templates into moto) is clickstream.local.moto_deploy, built on this module;
`clickstream deploy` chooses between the two.
"""

from __future__ import annotations

import json
import mimetypes
import os
import re
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from botocore.exceptions import ClientError, WaiterError

from clickstream import aws
from clickstream.infra import package
from clickstream.infra import templates
from clickstream.infra.templates import DEFAULT_PREFIX, Stack, TemplateError, TemplateSet, UnknownParameterError
from clickstream.settings import Settings

PREFIX_ENV = "CLICKSTREAM_STACK_PREFIX"
# AUTO_EXPAND: templates with the AWS::LanguageExtensions transform (Fn::If in a DeletionPolicy).
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]
NO_CHANGES = "NO_CHANGES"
NO_CHANGE_REASONS = ("didn't contain changes", "No updates are to be performed")


class DeployError(RuntimeError):
    """A stack could not be deployed or destroyed; the message says which resources and why."""


@contextmanager
def _as_deploy_error() -> Iterator[None]:
    try:
        yield
    except TemplateError as error:
        raise DeployError(str(error)) from error


# --- templates, names, order ---------------------------------------------------------------------
@dataclass
class DeployConfig:
    """The target's parameters file: {"stack_prefix": "...", "parameters": {"*": {...}, "<stem>": {...}}}."""

    prefix: str = DEFAULT_PREFIX
    parameters: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: Path | None = None

    @classmethod
    def load(cls, settings: Settings, path: Path | None = None, env: dict | None = None) -> "DeployConfig":
        env = os.environ if env is None else env
        path = path or settings.templates / "parameters" / f"{settings.target}.json"
        data: dict = {}
        if path.exists():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except ValueError as error:
                raise DeployError(f"{path}: not valid JSON ({error})") from error
            unknown = set(data) - {"stack_prefix", "parameters", "comment"}
            if unknown:
                raise DeployError(f"{path}: unknown keys {sorted(unknown)} (stack_prefix, parameters)")
        prefix = env.get(PREFIX_ENV) or data.get("stack_prefix") or DEFAULT_PREFIX
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{0,80}", prefix):
            raise DeployError(f"stack prefix {prefix!r} must start with a letter and hold only letters, digits and -")
        return cls(prefix=prefix, parameters=data.get("parameters", {}), source=path if path.exists() else None)

    def overrides(self, template: templates.Template) -> dict[str, Any]:
        """The values this file sets for the template: "*" (the parameters it declares), then its stem's."""
        return {**{k: v for k, v in self.parameters.get("*", {}).items() if k in template.parameters},
                **self.parameters.get(template.stem, {})}


def load_templates(settings: Settings, config: DeployConfig, templates_dir: Path | None = None) -> list[Stack]:
    """Every cloudformation/*.yaml as a Stack for the target: its stack name, parameter values (the
    templates.parameter_values of the target with the parameters file's "*" then the stem's), exports, imports."""
    folder = TemplateSet(templates_dir or settings.templates, config.prefix)
    if not folder.templates:
        raise DeployError(f"no templates (*.yaml) in {folder.folder}")
    with _as_deploy_error():
        for template in folder:
            if problems := template.reference_problems():
                raise DeployError(f"{template.name}: " + "; ".join(problems))
        try:
            return folder.stacks(settings.target, settings.region,
                                 {template.stem: config.overrides(template) for template in folder})
        except UnknownParameterError as error:
            raise DeployError(f"{config.source}: {error}") from error


def resolve_prefix_lists(ec2, stacks: Iterable[Stack], config: DeployConfig,
                         progress: Callable[[str], None] = lambda _: None) -> None:
    """Set each managed-prefix-list parameter (templates.managed_prefix_lists) that the parameters file does not
    set to the id of the list of that name in the client's region (DescribeManagedPrefixLists)."""
    for stack in stacks:
        with _as_deploy_error():
            named = templates.managed_prefix_lists(stack.template)
        for parameter, name in sorted(named.items()):
            if parameter in config.overrides(stack.template):
                continue
            found = ec2.describe_managed_prefix_lists(
                Filters=[{"Name": "prefix-list-name", "Values": [name]}])["PrefixLists"]
            if not found:
                raise DeployError(f"{stack.path.name}: {parameter}: no managed prefix list {name} in "
                                  f"{ec2.meta.region_name}; set {parameter} in the parameters file")
            stack.parameters[parameter] = found[0]["PrefixListId"]
            progress(f"{stack.stack_name}: {parameter} = {found[0]['PrefixListId']} ({name})")


def resolve_images(ssm, cf, stacks: Iterable[Stack], config: DeployConfig, *, new_images: bool = False,
                   progress: Callable[[str], None] = lambda _: None) -> None:
    """Pin each image parameter (templates.image_parameters) that the parameters file does not set: to the image
    the deployed stack runs (so an update never replaces an instance by surprise), or, at the stack's first
    deployment or with `new_images`, to the image the public SSM parameter names now."""
    for stack in stacks:
        with _as_deploy_error():
            named = templates.image_parameters(stack.template)
        deployed = {} if new_images or not named else deployed_parameters(cf, stack.stack_name)
        for parameter, ssm_name in sorted(named.items()):
            if parameter in config.overrides(stack.template):
                continue
            image = deployed.get(parameter, "")
            if not image.startswith("ami-"):
                image = ssm.get_parameter(Name=ssm_name)["Parameter"]["Value"]
                progress(f"{stack.stack_name}: {parameter} = {image} (now {ssm_name})")
            stack.parameters[parameter] = image


def deployed_parameters(cf, name: str) -> dict[str, str]:
    """The deployed stack's parameter values ({} if not deployed); an SSM-typed parameter's resolved value."""
    if stack_status(cf, name) is None:
        return {}
    described = cf.describe_stacks(StackName=name)["Stacks"][0]
    return {p["ParameterKey"]: p.get("ResolvedValue") or p.get("ParameterValue", "")
            for p in described.get("Parameters", [])}


def dependency_order(stacks: list[Stack]) -> list[Stack]:
    """Exporters before importers (ties by file name); a missing export or a cycle is a DeployError."""
    with _as_deploy_error():
        return templates.dependency_order(stacks)


def select(order: list[Stack], stack: str | None) -> list[Stack]:
    if stack is None:
        return order
    chosen = [t for t in order if stack in (t.stem, t.stack_name, t.path.name)]
    if not chosen:
        raise DeployError(f"no template for stack {stack!r}; known: {', '.join(t.stem for t in order)}")
    return chosen


@dataclass
class StackResult:
    stack: str
    template: str
    target: str
    status: str
    resources: list[dict] = field(default_factory=list)  # logical_id, type, physical_id
    skipped: list[dict] = field(default_factory=list)  # logical_id, type, reason
    skipped_outputs: list[dict] = field(default_factory=list)  # name, reason
    notes: list[dict] = field(default_factory=list)  # logical_id, note (moto accepts, does not apply)
    outputs: dict[str, str] = field(default_factory=dict)
    code: list[dict] = field(default_factory=list)  # parameter, key, size, uploaded (built by this deploy)

    def as_dict(self) -> dict:
        return asdict(self)


# --- clients' calls shared by both targets ----------------------------------------------------------
def stack_status(cf, name: str) -> str | None:
    try:
        return cf.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"]
    except ClientError as error:
        if "does not exist" in str(error):
            return None
        raise


def wait(cf, waiter: str, delay: float, max_attempts: int = 720, **kwargs) -> None:
    cf.get_waiter(waiter).wait(**kwargs, WaiterConfig={"Delay": delay, "MaxAttempts": max_attempts})


def failure_report(cf, name: str, since: Any = None, limit: int = 20) -> str:
    """`name: STATUS` and one line per failed resource (logical id, type, status, reason), newest first."""
    lines, seen = [], set()
    try:
        status = stack_status(cf, name) or "gone (rolled back and deleted)"
        events = [e for page in cf.get_paginator("describe_stack_events").paginate(StackName=name)
                  for e in page["StackEvents"]]
    except ClientError:
        return f"stack {name}: no events (the stack no longer exists)"
    failed = [e for e in events if e.get("ResourceStatus", "").endswith("_FAILED")
              and (since is None or e["Timestamp"] >= since)]
    primary = [e for e in failed if "cancelled" not in (e.get("ResourceStatusReason") or "").lower()
               and e.get("LogicalResourceId") != name] or failed
    for event in primary:
        key = (event.get("LogicalResourceId"), event.get("ResourceStatus"))
        if key in seen:
            continue
        seen.add(key)
        lines.append(f"  {event.get('LogicalResourceId')} ({event.get('ResourceType')}) {event.get('ResourceStatus')}: "
                     f"{event.get('ResourceStatusReason') or 'no reason given'}")
        if len(lines) >= limit:
            break
    return f"stack {name}: {status}\n" + ("\n".join(lines) if lines else "  no failed resource events")


def stack_resources(cf, name: str) -> list[dict]:
    return [{"logical_id": r["LogicalResourceId"], "type": r["ResourceType"], "physical_id": r.get("PhysicalResourceId")}
            for r in cf.describe_stack_resources(StackName=name)["StackResources"]
            if r.get("LogicalResourceId") and r.get("ResourceType")]  # moto lists skipped types nameless


def stack_outputs(cf, name: str) -> dict[str, str]:
    stack = cf.describe_stacks(StackName=name)["Stacks"][0]
    return {o["OutputKey"]: o.get("OutputValue") for o in stack.get("Outputs", [])}


def cfn_parameters(values: dict[str, Any], body: dict) -> list[dict]:
    sent = []
    for name in body.get("Parameters", {}):
        value = values.get(name)
        if value is None:
            continue
        text = ",".join(str(v) for v in value) if isinstance(value, list) else str(value)
        sent.append({"ParameterKey": name, "ParameterValue": text})
    return sent


# --- aws: change sets -----------------------------------------------------------------------------
def deploy_with_change_set(cf, name: str, template_body: str, parameters: list[dict], delay: float = 5.0,
                           progress: Callable[[str], None] = lambda _: None) -> str:
    """Create or update `name` through a change set; returns the final status or NO_CHANGES."""
    status = stack_status(cf, name)
    if status == "ROLLBACK_COMPLETE":
        raise DeployError(f"stack {name} is ROLLBACK_COMPLETE after a failed create and cannot be updated: "
                          f"`clickstream destroy --stack {name}`, fix the cause, deploy again\n"
                          + failure_report(cf, name))
    if status and status.endswith("_IN_PROGRESS") and status != "REVIEW_IN_PROGRESS":
        raise DeployError(f"stack {name} is {status}: wait until it finishes, then deploy again")
    kind = "UPDATE" if status and status != "REVIEW_IN_PROGRESS" else "CREATE"
    change_set = f"clickstream-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        created = cf.create_change_set(StackName=name, ChangeSetName=change_set, ChangeSetType=kind,
                                       TemplateBody=template_body, Parameters=parameters, Capabilities=CAPABILITIES)
    except ClientError as error:
        raise DeployError(f"stack {name}: the change set was refused: {error.response['Error'].get('Message', error)}"
                          ) from error
    try:
        wait(cf, "change_set_create_complete", delay, ChangeSetName=created["Id"], StackName=name)
    except WaiterError as error:
        described = cf.describe_change_set(ChangeSetName=created["Id"], StackName=name)
        reason = described.get("StatusReason") or str(error)
        if described.get("Status") == "FAILED" and any(text in reason for text in NO_CHANGE_REASONS):
            cf.delete_change_set(ChangeSetName=created["Id"], StackName=name)
            return NO_CHANGES
        raise DeployError(f"stack {name}: change set {change_set} {described.get('Status')}: {reason}") from error
    progress(f"{name}: executing change set {change_set} ({kind})")
    started = _now(cf, name)
    cf.execute_change_set(ChangeSetName=created["Id"], StackName=name)
    waiter = "stack_create_complete" if kind == "CREATE" else "stack_update_complete"
    try:
        wait(cf, waiter, delay, StackName=name)
    except WaiterError as error:
        raise DeployError(f"deploy failed\n{failure_report(cf, name, since=started)}") from error
    return stack_status(cf, name) or "UNKNOWN"


def _now(cf, name: str):
    """The newest event's time (to report only this operation's failures); None if no events yet."""
    try:
        events = cf.describe_stack_events(StackName=name)["StackEvents"]
        return events[0]["Timestamp"] if events else None
    except ClientError:
        return None


def check_code_objects(s3, stack: Stack) -> None:
    """Every Lambda's S3 code and every instance's bundle must exist before CloudFormation is asked (a clear
    error instead of a rollback, or of an instance whose first boot fails)."""
    wanted = []
    for lid, res in stack.resources.items():
        code = res.get("Properties", {}).get("Code", {}) if res.get("Type") == "AWS::Lambda::Function" else {}
        if "S3Bucket" in code:
            wanted.append((stack.resolve(code["S3Bucket"]), stack.resolve(code["S3Key"]), lid))
    for target in package.code_targets([stack]):
        if target.kind == "bundle" and (bucket := _code_bucket(stack, target.parameter)):
            wanted.append((bucket, stack.parameters[target.parameter], target.parameter))
    missing = []
    for bucket, key, what in wanted:
        try:
            s3.head_object(Bucket=bucket, Key=key)
        except ClientError:
            missing.append(f"s3://{bucket}/{key} ({what})")
    if missing:
        raise DeployError(f"{stack.path.name}: code not found: {', '.join(missing)}. Deploy without "
                          "--no-build (it builds and uploads the code), or upload it there (cloudformation/DEPLOY.md, "
                          "step 3)")


def build_code(settings: Settings, stacks: list[Stack], *, with_dependencies: bool,
               progress: Callable[[str], None] = lambda _: None) -> dict[str, package.Artifact]:
    """Build the code the templates read from CodeBucket (package.code_targets): parameter -> Artifact, in
    <home>/build. Raises DeployError with the builder's message."""
    try:
        targets = package.code_targets(stacks)
        return package.build(targets, settings.home / "build", home=settings.home, project=stacks[0].path.parent.parent
                             if stacks else settings.project, with_dependencies=with_dependencies, progress=progress)
    except package.PackageError as error:
        raise DeployError(f"building the code failed: {error}") from error


def upload_code(s3, bucket: str, artifacts: Iterable[package.Artifact], *, create_bucket: bool = False,
                progress: Callable[[str], None] = lambda _: None) -> list[dict]:
    """Put each artifact at its key in `bucket` unless an object is there already (keys are content hashes, so
    an existing key holds the same bytes). Returns {"key", "uploaded"} per artifact."""
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as error:
        if not create_bucket:
            raise DeployError(f"CodeBucket {bucket} is not reachable ({error.response.get('Error', {}).get('Code')}): "
                              f"create it in your region first (`aws s3 mb s3://{bucket}`, cloudformation/DEPLOY.md "
                              "step 2)") from error
        s3.create_bucket(Bucket=bucket)
    done = []
    for artifact in artifacts:
        try:
            s3.head_object(Bucket=bucket, Key=artifact.key)
            progress(f"  s3://{bucket}/{artifact.key} is there already (same content): not uploaded")
            done.append({"key": artifact.key, "uploaded": False})
            continue
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                raise
        progress(f"  uploading {artifact.path.name} ({artifact.size / 1_000_000:.1f} MB) to s3://{bucket}/{artifact.key}")
        with open(artifact.path, "rb") as body:
            s3.put_object(Bucket=bucket, Key=artifact.key, Body=body, ChecksumAlgorithm="SHA256",
                          Metadata={"sha256": artifact.sha256})
        done.append({"key": artifact.key, "uploaded": True})
    return done


def _code_bucket(stack: Stack, parameter: str) -> str | None:
    """The bucket the template reads the `parameter` key from (the Code.S3Bucket of the function using it;
    the CodeBucket parameter otherwise)."""
    for res in stack.resources.values():
        code = res.get("Properties", {}).get("Code", {}) if res.get("Type") == "AWS::Lambda::Function" else {}
        if code.get("S3Key") == {"Ref": parameter} and "S3Bucket" in code:
            return str(stack.resolve(code["S3Bucket"]))
    value = stack.parameters.get("CodeBucket")
    return str(value) if value else None


def ship_code(s3, settings: Settings, chosen: list[Stack], *, with_dependencies: bool, create_bucket: bool,
              progress: Callable[[str], None]) -> dict[str, list[dict]]:
    """Build the chosen stacks' code, upload what is missing, and set their code-key parameters to the keys.
    Returns, per template stem, what was shipped (parameter, key, size, uploaded)."""
    artifacts = build_code(settings, chosen, with_dependencies=with_dependencies, progress=progress)
    shipped: dict[str, list[dict]] = {}
    for artifact in artifacts.values():
        for stack in chosen:
            if artifact.parameter not in stack.template.parameters:
                continue
            bucket = _code_bucket(stack, artifact.parameter)
            if bucket is None:
                raise DeployError(f"{stack.path.name}: no CodeBucket for {artifact.parameter}")
            (done,) = upload_code(s3, bucket, [artifact], create_bucket=create_bucket, progress=progress)
            stack.parameters[artifact.parameter] = artifact.key
            shipped.setdefault(stack.stem, []).append({"parameter": artifact.parameter, "key": artifact.key,
                                                       "bucket": bucket, "size": artifact.size,
                                                       "uploaded": done["uploaded"]})
    return shipped


def upload_content(s3, stack: Stack, resources: list[dict], project: Path,
                   progress: Callable[[str], None] = lambda _: None) -> list[dict]:
    """Put each project folder a bucket's `Metadata.clickstream.Content` names ({Source, Prefix}) into the deployed
    bucket under Prefix, with its content type (the storefront's /static/* files). Returns {bucket, prefix, files}."""
    physical = {r["logical_id"]: r["physical_id"] for r in resources}
    done = []
    for lid, res in stack.of_type("AWS::S3::Bucket").items():
        content = (res.get("Metadata") or {}).get("clickstream", {}).get("Content")
        if not content:
            continue
        source, prefix, bucket = project / content["Source"], content.get("Prefix", ""), physical[lid]
        files = package.tree_files(source, prefix)
        for key, path in sorted(files.items()):
            s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes(),
                          ContentType=mimetypes.guess_type(path.name)[0] or "application/octet-stream")
        progress(f"  {len(files)} files of {content['Source']} uploaded to s3://{bucket}/{prefix}")
        done.append({"bucket": bucket, "prefix": prefix, "files": len(files)})
    return done


# --- the commands -----------------------------------------------------------------------------------
def plan(settings: Settings, stack: str | None, parameters_file: Path | None,
         templates_dir: Path | None) -> tuple[DeployConfig, list[Stack], list[Stack]]:
    """(config, every stack in dependency order, the ones chosen)."""
    config = DeployConfig.load(settings, parameters_file)
    order = dependency_order(load_templates(settings, config, templates_dir))
    return config, order, select(order, stack)


def deploy(settings: Settings, stack: str | None = None, *, parameters_file: Path | None = None,
           templates_dir: Path | None = None, progress: Callable[[str], None] = lambda _: None,
           delay: float | None = None, build: bool = True, with_dependencies: bool | None = None,
           new_images: bool = False) -> list[StackResult]:
    """Deploy every stack (or one, whose dependencies must be deployed already) to AWS in dependency order.

    Instance images stay those deployed (resolve_images); new_images moves them to the current ones, which
    replaces the instances (DEPLOY.md: moving to a new image).

    build (default): build the chosen stacks' code (clickstream.infra.package) with the third-party dependencies
    for the functions' runtime and architecture (the first build downloads wheels from PyPI into the wheel
    cache), upload what CodeBucket lacks and pass the content-addressed keys as the code-key parameters.
    build=False: use the keys the parameters give, which must exist in CodeBucket. `with_dependencies`
    overrides that choice."""
    if settings.target != "aws":
        raise DeployError(f"clickstream.infra.deploy deploys to aws, not {settings.target}: the local target is "
                          "clickstream.local.moto_deploy (`clickstream deploy` chooses)")
    config, order, chosen = plan(settings, stack, parameters_file, templates_dir)
    cf = aws.client("cloudformation", settings)
    s3 = aws.client("s3", settings)
    require_deployed_dependencies(cf, order, chosen)
    resolve_prefix_lists(aws.client("ec2", settings), chosen, config, progress)
    resolve_images(aws.client("ssm", settings), cf, chosen, config, new_images=new_images, progress=progress)
    for template in chosen:
        missing = [n for n, v in template.parameters.items() if v is None]
        if missing:
            raise DeployError(f"{template.path.name}: set {', '.join(missing)} in "
                              f"{config.source or settings.templates / 'parameters' / 'aws.json'} (no default)")
    shipped = ship_code(s3, settings, chosen, with_dependencies=True if with_dependencies is None
                        else with_dependencies, create_bucket=False, progress=progress) if build else {}
    results = []
    for template in chosen:
        check_code_objects(s3, template)
        progress(f"{template.stack_name}: creating change set from {template.path.name}")
        status = deploy_with_change_set(cf, template.stack_name, template.path.read_text(encoding="utf-8"),
                                        cfn_parameters(template.parameters, template.body),
                                        delay=5.0 if delay is None else delay, progress=progress)
        resources = stack_resources(cf, template.stack_name)
        upload_content(s3, template, resources, template.path.parent.parent, progress)
        result = StackResult(template.stack_name, template.path.name, "aws", status, resources=resources,
                             outputs=stack_outputs(cf, template.stack_name), code=shipped.get(template.stem, []))
        progress(f"{template.stack_name}: {status}")
        results.append(result)
    return results


def destroy(settings: Settings, stack: str | None = None, *, parameters_file: Path | None = None,
            templates_dir: Path | None = None, progress: Callable[[str], None] = lambda _: None,
            delay: float | None = None, prepare: Callable[[str], Callable[[], None]] | None = None) -> list[dict]:
    """Delete the deployed stacks (or one, if no deployed stack imports its exports) in reverse order.

    `prepare(stack name)`, if given, runs before each deletion and returns a check to run after it (the local
    target clears what moto would not delete, then checks nothing is left)."""
    _, order, chosen = plan(settings, stack, parameters_file, templates_dir)
    cf = aws.client("cloudformation", settings)
    deployed = {t.stem for t in order if stack_status(cf, t.stack_name) is not None}
    for template in chosen:
        users = [t.stack_name for t in order if t.stem in deployed and t not in chosen
                 and template.exports.keys() & t.imports]
        if users:
            raise DeployError(f"{template.stack_name} exports values that {', '.join(users)} import: "
                              "destroy those first (or destroy all stacks)")
    results = []
    for template in reversed(chosen):
        name = template.stack_name
        if template.stem not in deployed:
            results.append({"stack": name, "status": "NOT_DEPLOYED"})
            continue
        progress(f"{name}: deleting")
        kept = {r["logical_id"] for r in stack_resources(cf, name)}
        check = prepare(name) if prepare else None
        try:
            cf.delete_stack(StackName=name)
            wait(cf, "stack_delete_complete", 5.0 if delay is None else delay, max_attempts=720, StackName=name)
        except WaiterError as error:
            raise DeployError(f"destroy failed\n{failure_report(cf, name)}") from error
        except ClientError as error:
            raise DeployError(f"{name} could not be deleted: {error.response['Error'].get('Message')}") from error
        if check:
            check()
        results.append({"stack": name, "status": "DELETE_COMPLETE", "retained": sorted(set(_retained(template)) & kept)})
        progress(f"{name}: deleted")
    return results


def _retained(stack: Stack) -> list[str]:
    """What deleting the stack keeps: resources whose DeletionPolicy (resolved: Fn::If on ProtectData) retains
    or snapshots them."""
    kept = ("Retain", "RetainExceptOnCreate", "Snapshot")
    return sorted(lid for lid, res in stack.resources.items() if stack.resolve(res.get("DeletionPolicy", "Delete")) in kept)


def require_deployed_dependencies(cf, order: list[Stack], chosen: list[Stack]) -> None:
    chosen_stems = {t.stem for t in chosen}
    exporter = {name: t for t in order for name in t.exports}
    for template in chosen:
        needed = {exporter[name].stack_name for name in template.imports if exporter[name].stem not in chosen_stems}
        missing = sorted(n for n in needed if stack_status(cf, n) is None)
        if missing:
            raise DeployError(f"{template.stack_name} imports exports of {', '.join(missing)}, which is not deployed: "
                              "deploy it first (or run `clickstream deploy` without --stack)")
