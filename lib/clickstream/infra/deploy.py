"""`clickstream deploy` / `destroy`: the CloudFormation templates as stacks, in dependency order.

The stacks and their order come from the templates in cloudformation/: a template that `Fn::ImportValue`s
an export of another is deployed after it (and destroyed before it). Stack names are `<prefix>-<stem>`
(prefix `clickstream`, or `stack_prefix` of the target's parameters file, or CLICKSTREAM_STACK_PREFIX).

Code: before the stacks, the code their `*CodeKey` parameters name is built (clickstream.infra.package: a zip per
Lambda function and the warehouse bundle, reproducible, at content-addressed keys), uploaded to CodeBucket
unless the key is there, and the keys are passed as those parameters (`build=False`: the given keys).

aws target: change sets (CREATE or UPDATE; "no changes" is success), waiters, CAPABILITY_NAMED_IAM,
parameters from cloudformation/parameters/aws.json (else the templates' defaults), outputs; a failure is a
DeployError listing each failed resource's logical id and status reason (describe_stack_events).

local target: the same templates into moto (the `clickstream up` endpoint). moto 5.2.5's change sets
lose the stack's outputs and exports (measured), so the local path uses create_stack/update_stack with the
same waiters, and "no changes" is decided by comparing the deployed template and parameters. What moto
cannot hold is left out and listed with the reason (see `local_template`): types its CloudFormation does
not implement (the HTTP API -> the project's local API server, Cognito, CloudFront, bucket policies),
buckets and secrets that `clickstream up` creates itself (referred to by name instead), outputs that
would make moto drop every output (an interface endpoint's DnsEntries). A green local deploy proves the
templates' structure and cross-stack wiring, not AWS behaviour.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from botocore.exceptions import ClientError, WaiterError

from clickstream import aws
from clickstream.infra import package
from clickstream.infra.templates import LOCAL_PLACEHOLDERS, Stack, load_template
from clickstream.settings import LOCAL_NAME_SUFFIX, Settings

PREFIX_ENV = "CLICKSTREAM_STACK_PREFIX"
DEFAULT_PREFIX = "clickstream"
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"]
NO_CHANGES = "NO_CHANGES"
FINGERPRINT_TAG = "clickstream:local-fingerprint"
NO_CHANGE_REASONS = ("didn't contain changes", "No updates are to be performed")
LOCAL_HONESTY = ("local deploy into moto: proves the templates' structure and cross-stack wiring, "
                 "not AWS behaviour (IAM is not enforced, nothing runs on the instances, schedules never fire)")

# Why a type moto's CloudFormation skips is fine locally: what the project runs instead.
WIRED_LOCALLY = {
    "AWS::ApiGatewayV2::": "served by the project's local HTTP API (clickstream up), which reads the routes, "
                           "integrations, stage and CORS from this template",
    "AWS::Cognito::": "not in moto's CloudFormation; the project creates the user pool in moto Cognito directly "
                      "(a later lesson)",
    "AWS::CloudFront::": "not in moto's CloudFormation; the storefront is served locally by the project",
    "AWS::Amplify::": "not in moto's CloudFormation; the storefront is served locally by the project",
    "AWS::S3::BucketPolicy": "not in moto's CloudFormation (moto's S3 would not enforce it anyway); the template "
                             "tests check the policy",
    "AWS::SecretsManager::Secret": "not in moto's CloudFormation",
}
BY_UP = {
    "AWS::S3::Bucket": "created by `clickstream up` (objects kept across restarts); the stack refers to it by name",
    "AWS::SecretsManager::Secret": "written by `clickstream up` with the local warehouse's password "
                                   "(Metadata.clickstream.LocalValue); the stack refers to its ARN",
}
# Properties moto accepts and does not apply (../shared/notes/local-aws.md), reported per resource.
MOTO_CAVEATS: dict[str, list[tuple[str | None, str]]] = {
    "AWS::EC2::SubnetRouteTableAssociation": [(None, "moto reports it created but keeps no association")],
    "AWS::EC2::VPC": [("EnableDnsHostnames", "EnableDnsHostnames reads back false in moto")],
    "AWS::EC2::Instance": [("SecurityGroupIds", "SecurityGroupIds ignored by moto"),
                           ("MetadataOptions", "MetadataOptions (IMDSv2) ignored by moto"),
                           (None, "moto runs nothing on it (no user data is executed)")],
    "AWS::IAM::Role": [("ManagedPolicyArns", "ManagedPolicyArns dropped by moto")],
    "AWS::Lambda::Function": [(None, "stored by moto, never run: the project's runtime runs the handler in-process")],
    "AWS::Events::Rule": [("ScheduleExpression", "never fires in moto: `clickstream up --schedule` runs it")],
    "AWS::EC2::VPCEndpoint": [(None, "created by moto with made-up DNS entries; `!GetAtt DnsEntries` in Outputs "
                                     "would make moto drop every output of the stack")],
    "AWS::EC2::SecurityGroup": [("SecurityGroupEgress", "SecurityGroupEgress ignored by moto: the group keeps "
                                                        "the default allow-all egress")],
    "AWS::EC2::Subnet": [("MapPublicIpOnLaunch", "MapPublicIpOnLaunch reads back false in moto")],
}
SUB_REF = re.compile(r"\$\{([^}!][^}]*)\}")


class DeployError(RuntimeError):
    """A stack could not be deployed or destroyed; the message says which resources and why."""


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


class _NamedStack(Stack):
    """templates.Stack with the deployed stack's name (for ${AWS::StackName} in export names)."""

    stack_name: str = ""

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.stack_name


@dataclass
class Template:
    stem: str
    path: Path
    body: dict
    stack_name: str
    parameters: dict[str, Any]  # values for this target (None: not set)
    exports: dict[str, str] = field(default_factory=dict)  # export name -> output key
    imports: set[str] = field(default_factory=set)

    def resolver(self, settings: Settings) -> _NamedStack:
        stack = _NamedStack(path=self.path, body=self.body, parameters=dict(self.parameters), region=settings.region)
        stack.stack_name = self.stack_name
        return stack


def parameter_values(body: dict, stem: str, target: str, config: DeployConfig, stack_names: dict[str, str]
                     ) -> dict[str, Any]:
    """Defaults; locally Metadata.clickstream.LocalParameters and NameSuffix=local; `<Stem>StackName`
    parameters point at the sibling stack's name; then the parameters file ("*" then the stem) wins."""
    specs = body.get("Parameters", {})
    values = {name: spec.get("Default") for name, spec in specs.items()}
    if target == "local":
        values.update({k: v for k, v in body.get("Metadata", {}).get("clickstream", {})
                       .get("LocalParameters", {}).items() if k in specs})
        if "NameSuffix" in values:
            values["NameSuffix"] = LOCAL_NAME_SUFFIX
    for name in specs:
        if name.endswith("StackName") and name[: -len("StackName")].lower() in stack_names:
            values[name] = stack_names[name[: -len("StackName")].lower()]
    values.update({k: v for k, v in config.parameters.get("*", {}).items() if k in specs})
    own = config.parameters.get(stem, {})
    unknown = sorted(set(own) - set(specs))
    if unknown:
        raise DeployError(f"{config.source}: {stem}.yaml declares no parameters {unknown}")
    values.update(own)
    return values


def load_templates(settings: Settings, config: DeployConfig, templates_dir: Path | None = None) -> list[Template]:
    """Every cloudformation/*.yaml with its stack name, parameter values, exports and imports."""
    folder = templates_dir or settings.templates
    paths = sorted(folder.glob("*.yaml"))
    if not paths:
        raise DeployError(f"no templates (*.yaml) in {folder}")
    names = {path.stem: f"{config.prefix}-{path.stem}" for path in paths}
    templates = []
    for path in paths:
        body = load_template(path)
        template = Template(path.stem, path, body, names[path.stem],
                            parameter_values(body, path.stem, settings.target, config, names))
        check_references(template)
        resolver = template.resolver(settings)
        for key, output in body.get("Outputs", {}).items():
            if "Export" in output:
                template.exports[str(resolver.resolve(output["Export"]["Name"]))] = key
        template.imports = {str(resolver.resolve(arg)) for arg in _imports(body)}
        templates.append(template)
    return templates


PSEUDO_PARAMETERS = {"AWS::AccountId", "AWS::NotificationARNs", "AWS::NoValue", "AWS::Partition", "AWS::Region",
                     "AWS::StackId", "AWS::StackName", "AWS::URLSuffix"}


def check_references(template: Template) -> None:
    """Every Ref, Fn::GetAtt, ${...} and DependsOn names something the template declares (a readable error
    naming the resource, before any AWS call)."""
    resources = template.body.get("Resources", {})
    declared = set(resources) | set(template.body.get("Parameters", {})) | PSEUDO_PARAMETERS
    problems = []
    for where, node in [*resources.items(), *(("output " + k, v) for k, v in template.body.get("Outputs", {}).items())]:
        if isinstance(node, dict) and where in resources and not node.get("Type"):
            problems.append(f"{where} has no Type")
        for lid, attr in sorted(_refs(node), key=str):
            if lid not in declared:
                problems.append(f"{where} refers to {lid}{'.' + attr if attr else ''}, which the template does not "
                                "declare (no resource or parameter of that name)")
            elif attr and lid not in resources:
                problems.append(f"{where} asks for attribute {attr} of {lid}, which is not a resource")
        depends = node.get("DependsOn", []) if isinstance(node, dict) else []
        for name in [depends] if isinstance(depends, str) else depends:
            if name not in resources:
                problems.append(f"{where} DependsOn {name}, which the template does not declare")
    if problems:
        raise DeployError(f"{template.path.name}: " + "; ".join(problems))


def _imports(node: Any) -> Iterable[Any]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Fn::ImportValue":
                yield value
            else:
                yield from _imports(value)
    elif isinstance(node, list):
        for item in node:
            yield from _imports(item)


def dependency_order(templates: list[Template]) -> list[Template]:
    """Exporters before importers (ties by file name); a missing export or a cycle is a DeployError."""
    exporter = {name: t for t in templates for name in t.exports}
    needs: dict[str, set[str]] = {}
    for template in templates:
        missing = sorted(name for name in template.imports if name not in exporter)
        if missing:
            raise DeployError(f"{template.path.name} imports {', '.join(missing)}, which no template in "
                              f"{template.path.parent} exports")
        needs[template.stem] = {exporter[name].stem for name in template.imports} - {template.stem}
    order: list[Template] = []
    by_stem = {t.stem: t for t in templates}
    done: set[str] = set()
    while len(order) < len(templates):
        ready = sorted(stem for stem in by_stem if stem not in done and needs[stem] <= done)
        if not ready:
            cycle = sorted(stem for stem in by_stem if stem not in done)
            raise DeployError(f"the templates import each other's exports in a cycle: {', '.join(cycle)} "
                              "(move the shared resources into one template)")
        for stem in ready[:1]:
            order.append(by_stem[stem])
            done.add(stem)
    return order


def select(order: list[Template], stack: str | None) -> list[Template]:
    if stack is None:
        return order
    chosen = [t for t in order if stack in (t.stem, t.stack_name, t.path.name)]
    if not chosen:
        raise DeployError(f"no template for stack {stack!r}; known: {', '.join(t.stem for t in order)}")
    return chosen


# --- results -------------------------------------------------------------------------------------
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


# --- local template: what moto can hold -----------------------------------------------------------
def _refs(node: Any, local_names: frozenset = frozenset()) -> set[tuple[str, str | None]]:
    """(logical id or parameter, attribute) pairs a node refers to by Ref, Fn::GetAtt and Fn::Sub."""
    found: set[tuple[str, str | None]] = set()
    if isinstance(node, list):
        for item in node:
            found |= _refs(item, local_names)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                found.add((value, None))
            elif key == "Fn::GetAtt":
                lid, attr = value.split(".", 1) if isinstance(value, str) else value
                found.add((lid, attr if isinstance(attr, str) else None))
            elif key == "Fn::Sub":
                text, variables = (value, {}) if isinstance(value, str) else (value[0], value[1])
                for name in SUB_REF.findall(text):
                    if name not in variables:
                        lid, _, attr = name.partition(".")
                        found.add((lid, attr or None))
                found |= _refs(variables, local_names)
            elif key == "DependsOn":
                continue
            else:
                found |= _refs(value, local_names)
    return found


def _substitute(node: Any, values: dict[tuple[str, str | None], str]) -> Any:
    if isinstance(node, list):
        return [_substitute(item, values) for item in node]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        (key, value), = node.items()
        if key == "Ref" and (value, None) in values:
            return values[(value, None)]
        if key == "Fn::GetAtt":
            lid, attr = value.split(".", 1) if isinstance(value, str) else value
            if (lid, attr) in values:
                return values[(lid, attr)]
        if key == "Fn::Sub":
            text, variables = (value, None) if isinstance(value, str) else (value[0], value[1])

            def replace(match: re.Match) -> str:
                lid, _, attr = match.group(1).partition(".")
                if variables and match.group(1) in variables:
                    return match.group(0)
                return values.get((lid, attr or None), match.group(0))

            text = SUB_REF.sub(replace, text)
            return {"Fn::Sub": text if variables is None else [text, _substitute(variables, values)]}
    return {key: _substitute(value, values) for key, value in node.items()}


def _wired_reason(resource_type: str) -> str | None:
    for prefix, reason in WIRED_LOCALLY.items():
        if resource_type.startswith(prefix):
            return reason
    return None


def local_template(template: Template, resolver: Stack, supported: set[str], secret_arns: dict[str, str],
                   dropped_exports: set[str] | None = None) -> tuple[dict, StackResult]:
    """The template as moto can hold it, and what was left out and why (pure: no AWS calls).

    `supported`: the resource types moto's CloudFormation implements; `secret_arns`: secret name -> ARN of
    the secrets `clickstream up` wrote; `dropped_exports`: exports other stacks' local deploys left out.
    """
    body = json.loads(json.dumps(template.body))
    resources: dict[str, dict] = body.get("Resources", {})
    types = {lid: res.get("Type", "") for lid, res in resources.items()}
    result = StackResult(template.stack_name, template.path.name, "local", "PENDING")
    skipped: dict[str, str] = {}
    for lid, res in resources.items():
        rtype = res.get("Type", "")
        if rtype == "AWS::S3::Bucket":
            skipped[lid] = BY_UP[rtype]
        elif rtype == "AWS::SecretsManager::Secret" and res.get("Metadata", {}).get("clickstream", {}).get("LocalValue"):
            skipped[lid] = BY_UP[rtype]
        elif rtype not in supported:
            skipped[lid] = _wired_reason(rtype) or f"moto's CloudFormation does not implement {rtype}"
    # Stand-ins by name for what `up` creates and for the API id the local API server uses.
    values: dict[tuple[str, str | None], str] = {}
    for lid in skipped:
        rtype = resources[lid]["Type"]
        if rtype in ("AWS::S3::Bucket", "AWS::ApiGatewayV2::Api") or (
                rtype == "AWS::SecretsManager::Secret" and lid in skipped and BY_UP[rtype] == skipped[lid]):
            name = str(resolver.physical_id(lid))
            values[(lid, None)] = (secret_arns.get(name) or resolver.get_att(lid, "Arn")
                                   if rtype.startswith("AWS::SecretsManager") else name)
            if rtype != "AWS::ApiGatewayV2::Api":
                values[(lid, "Arn")] = secret_arns.get(name) or resolver.get_att(lid, "Arn")
    dropped_exports = dropped_exports or set()

    def blocker(node: Any) -> str | None:
        for lid, attr in sorted(_refs(node), key=str):
            if lid in skipped and (lid, attr) not in values:
                what = f"{lid}.{attr}" if attr else lid
                return f"refers to {what} ({types[lid]}), which the local deploy leaves out"
        for arg in _imports(node):
            name = str(resolver.resolve(arg))
            if name in dropped_exports:
                return f"imports {name}, which the local deploy of its stack leaves out"
        return None

    changed = True
    while changed:  # cascade: a kept resource that needs a left-out one without a stand-in goes too
        changed = False
        for lid, res in resources.items():
            if lid not in skipped and (reason := blocker({k: v for k, v in res.items() if k != "DependsOn"})):
                skipped[lid] = reason
                changed = True
    for lid in skipped:
        result.skipped.append({"logical_id": lid, "type": types[lid], "reason": skipped[lid]})
        del resources[lid]
    for res in resources.values():
        if "DependsOn" in res:
            depends = [res["DependsOn"]] if isinstance(res["DependsOn"], str) else res["DependsOn"]
            kept = [d for d in depends if d not in skipped]
            res["DependsOn"] = kept
            if not kept:
                del res["DependsOn"]
    body["Resources"] = _substitute(resources, values)

    outputs: dict[str, dict] = body.get("Outputs", {})
    for name, output in list(outputs.items()):
        refs = _refs(output.get("Value"))
        reason = None
        if any(attr == "DnsEntries" and types.get(lid) == "AWS::EC2::VPCEndpoint" for lid, attr in refs):
            reason = "GetAtt of an interface endpoint's DnsEntries makes moto drop every output of the stack"
        elif any(lid in skipped and types[lid].startswith("AWS::ApiGatewayV2::") for lid, _ in refs):
            reason = "refers to the HTTP API, which the project serves locally (clickstream status: api_url)"
        else:
            reason = blocker(output.get("Value"))
        if reason:
            result.skipped_outputs.append({"name": name, "reason": reason})
            del outputs[name]
    if outputs:
        body["Outputs"] = _substitute(outputs, values)
    else:
        body.pop("Outputs", None)
    for lid, res in sorted(resources.items()):
        for prop, note in MOTO_CAVEATS.get(res["Type"], []):
            if prop is None or prop in res.get("Properties", {}):
                result.notes.append({"logical_id": lid, "note": note})
    return body, result


def dropped_export_names(template: Template, result: StackResult, resolver: Stack) -> set[str]:
    skipped = {item["name"] for item in result.skipped_outputs}
    return {str(resolver.resolve(out["Export"]["Name"])) for key, out in template.body.get("Outputs", {}).items()
            if key in skipped and "Export" in out}


def moto_supported_types() -> set[str]:
    """The resource types this moto's CloudFormation implements (the server runs the same moto)."""
    from moto.cloudformation.parsing import get_model_map

    return set(get_model_map())


# --- clients' calls shared by both targets ----------------------------------------------------------
def stack_status(cf, name: str) -> str | None:
    try:
        return cf.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"]
    except ClientError as error:
        if "does not exist" in str(error):
            return None
        raise


def _wait(cf, waiter: str, delay: float, max_attempts: int = 720, **kwargs) -> None:
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


def _resources(cf, name: str) -> list[dict]:
    return [{"logical_id": r["LogicalResourceId"], "type": r["ResourceType"], "physical_id": r.get("PhysicalResourceId")}
            for r in cf.describe_stack_resources(StackName=name)["StackResources"]
            if r.get("LogicalResourceId") and r.get("ResourceType")]  # moto lists skipped types nameless


def _outputs(cf, name: str) -> dict[str, str]:
    stack = cf.describe_stacks(StackName=name)["Stacks"][0]
    return {o["OutputKey"]: o.get("OutputValue") for o in stack.get("Outputs", [])}


def _cfn_parameters(values: dict[str, Any], body: dict) -> list[dict]:
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
        _wait(cf, "change_set_create_complete", delay, ChangeSetName=created["Id"], StackName=name)
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
        _wait(cf, waiter, delay, StackName=name)
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


def _check_code_objects(s3, template: Template, resolver: Stack) -> None:
    """Every Lambda's S3 code must exist before CloudFormation is asked (a clear error instead of a rollback)."""
    missing = []
    for lid, res in template.body.get("Resources", {}).items():
        code = res.get("Properties", {}).get("Code", {}) if res.get("Type") == "AWS::Lambda::Function" else {}
        if "S3Bucket" in code:
            bucket, key = resolver.resolve(code["S3Bucket"]), resolver.resolve(code["S3Key"])
            try:
                s3.head_object(Bucket=bucket, Key=key)
            except ClientError:
                missing.append(f"s3://{bucket}/{key} ({lid})")
    if missing:
        raise DeployError(f"{template.path.name}: Lambda code not found: {', '.join(missing)}. Deploy without "
                          "--no-build (it builds and uploads the code), or upload it there (cloudformation/DEPLOY.md, "
                          "step 3)")


# --- local: moto ------------------------------------------------------------------------------------
def _local_parameter_defaults(ec2, template: Template) -> dict[str, Any]:
    """AWS-typed parameters nobody set: moto's default VPC, two of its subnets in different AZs, its default SG."""
    specs = template.body.get("Parameters", {})
    wanted = {n for n, s in specs.items() if template.parameters.get(n) is None and s.get("Type") in LOCAL_PLACEHOLDERS}
    if not wanted:
        return {}
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    if not vpcs:
        raise DeployError("moto has no default VPC to stand in for the VPC parameters")
    vpc = vpcs[0]["VpcId"]
    subnets, zones = [], set()
    for subnet in sorted(ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"],
                         key=lambda s: s["AvailabilityZone"]):
        if subnet["AvailabilityZone"] not in zones:
            zones.add(subnet["AvailabilityZone"])
            subnets.append(subnet["SubnetId"])
    group = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc]},
                                                  {"Name": "group-name", "Values": ["default"]}])["SecurityGroups"]
    by_type = {"AWS::EC2::VPC::Id": vpc, "AWS::EC2::Subnet::Id": subnets[0], "List<AWS::EC2::Subnet::Id>": subnets[:2],
               "AWS::EC2::SecurityGroup::Id": group[0]["GroupId"],
               "List<AWS::EC2::SecurityGroup::Id>": [group[0]["GroupId"]]}
    return {name: by_type[specs[name]["Type"]] for name in wanted}


def build_code(settings: Settings, templates: list[Template], *, with_dependencies: bool,
               progress: Callable[[str], None] = lambda _: None) -> dict[str, package.Artifact]:
    """Build the code the templates read from CodeBucket (package.code_targets): parameter -> Artifact, in
    <home>/build. Raises DeployError with the builder's message."""
    try:
        targets = package.code_targets(templates)
        return package.build(targets, settings.home / "build", home=settings.home, project=templates[0].path.parent.parent
                             if templates else settings.project, with_dependencies=with_dependencies, progress=progress)
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


def _code_bucket(template: Template, resolver: Stack, parameter: str) -> str | None:
    """The bucket the template reads the `parameter` key from (the Code.S3Bucket of the function using it;
    the CodeBucket parameter otherwise)."""
    for res in template.body.get("Resources", {}).values():
        code = res.get("Properties", {}).get("Code", {}) if res.get("Type") == "AWS::Lambda::Function" else {}
        if code.get("S3Key") == {"Ref": parameter} and "S3Bucket" in code:
            return str(resolver.resolve(code["S3Bucket"]))
    value = template.parameters.get("CodeBucket")
    return str(value) if value else None


def ship_code(s3, settings: Settings, chosen: list[Template], *, with_dependencies: bool, create_bucket: bool,
              progress: Callable[[str], None]) -> dict[str, list[dict]]:
    """Build the chosen templates' code, upload what is missing, and set their code-key parameters to the keys.
    Returns, per template stem, what was shipped (parameter, key, size, uploaded)."""
    artifacts = build_code(settings, chosen, with_dependencies=with_dependencies, progress=progress)
    shipped: dict[str, list[dict]] = {}
    for artifact in artifacts.values():
        for template in chosen:
            if artifact.parameter not in template.body.get("Parameters", {}):
                continue
            bucket = _code_bucket(template, template.resolver(settings), artifact.parameter)
            if bucket is None:
                raise DeployError(f"{template.path.name}: no CodeBucket for {artifact.parameter}")
            (done,) = upload_code(s3, bucket, [artifact], create_bucket=create_bucket, progress=progress)
            template.parameters[artifact.parameter] = artifact.key
            shipped.setdefault(template.stem, []).append({"parameter": artifact.parameter, "key": artifact.key,
                                                          "bucket": bucket, "size": artifact.size,
                                                          "uploaded": done["uploaded"]})
    return shipped


def _secret_arns(sm) -> dict[str, str]:
    arns = {}
    for page in sm.get_paginator("list_secrets").paginate():
        arns.update({s["Name"]: s["ARN"] for s in page["SecretList"]})
    return arns


def _moto_message(error: Exception) -> str:
    text = str(error)
    if "invalid XML received" in text and "500 Internal Server Error" in text:
        return "moto failed with an internal error (HTTP 500)"
    if match := re.search(r'"message":\s*"((?:[^"\\]|\\.)*)"', text):
        return match.group(1)
    if isinstance(error, ClientError):
        return error.response.get("Error", {}).get("Message") or text
    return text


def deploy_local_stack(cf, name: str, body: dict, parameters: list[dict], delay: float = 0.5) -> str:
    """create_stack/update_stack into moto with the waiters; NO_CHANGES when template and parameters match."""
    status = stack_status(cf, name)
    text = json.dumps(body, sort_keys=True)
    # moto stores list parameters as Python reprs and resolves SSM-typed ones, so "no changes" is decided by a
    # fingerprint of what was sent, kept as a stack tag.
    fingerprint = hashlib.sha256(json.dumps([text, parameters], sort_keys=True).encode()).hexdigest()
    tags = [{"Key": FINGERPRINT_TAG, "Value": fingerprint}]
    try:
        if status is None:
            cf.create_stack(StackName=name, TemplateBody=text, Parameters=parameters, Capabilities=CAPABILITIES,
                            Tags=tags)
            _wait(cf, "stack_create_complete", delay, max_attempts=120, StackName=name)
        else:
            deployed = cf.describe_stacks(StackName=name)["Stacks"][0]
            if {t["Key"]: t["Value"] for t in deployed.get("Tags", [])}.get(FINGERPRINT_TAG) == fingerprint:
                return NO_CHANGES
            cf.update_stack(StackName=name, TemplateBody=text, Parameters=parameters, Capabilities=CAPABILITIES,
                            Tags=tags)
            _wait(cf, "stack_update_complete", delay, max_attempts=120, StackName=name)
    except WaiterError as error:
        raise DeployError(f"local deploy failed\n{failure_report(cf, name)}") from error
    except Exception as error:  # moto raises inside the call; the server answers HTTP 500 (not XML)
        if not hasattr(error, "response") and "invalid XML" not in str(error) and not isinstance(error, ClientError):
            raise
        if status is None:  # moto keeps a half-created stack that fails every later call: remove it
            try:
                cf.delete_stack(StackName=name)
            except Exception:  # noqa: BLE001 - best effort; the error below is what matters
                pass
        raise DeployError(f"moto refused stack {name}: {_moto_message(error)} (moto does not say which resource; "
                          "its CloudFormation stops at the first resource it cannot create)") from error
    return stack_status(cf, name) or "UNKNOWN"


# --- the commands -----------------------------------------------------------------------------------
def deploy(settings: Settings, stack: str | None = None, *, parameters_file: Path | None = None,
           templates_dir: Path | None = None, progress: Callable[[str], None] = lambda _: None,
           delay: float | None = None, build: bool = True, with_dependencies: bool | None = None
           ) -> list[StackResult]:
    """Deploy every stack (or one, whose dependencies must be deployed already) in dependency order.

    build (default): build the chosen stacks' code (clickstream.infra.package), upload what CodeBucket lacks and pass
    the content-addressed keys as the code-key parameters. aws builds with the third-party dependencies for the
    functions' runtime and architecture (the first build downloads wheels from PyPI into the wheel cache); local
    builds without them (the local runtime runs the handlers in-process with this venv's packages), into a
    code bucket in moto. build=False: use the keys the parameters give, which must exist in CodeBucket.
    `with_dependencies` overrides the target's choice."""
    config, order, chosen = _plan(settings, stack, parameters_file, templates_dir)
    cf = aws.client("cloudformation", settings)
    s3 = aws.client("s3", settings)
    _require_deployed_dependencies(cf, order, chosen)
    results = []
    if settings.target == "aws":
        for template in chosen:
            missing = [n for n, v in template.parameters.items() if v is None]
            if missing:
                raise DeployError(f"{template.path.name}: set {', '.join(missing)} in "
                                  f"{config.source or settings.templates / 'parameters' / 'aws.json'} (no default)")
        shipped = ship_code(s3, settings, chosen, with_dependencies=True if with_dependencies is None
                            else with_dependencies, create_bucket=False, progress=progress) if build else {}
        for template in chosen:
            resolver = template.resolver(settings)
            _check_code_objects(s3, template, resolver)
            progress(f"{template.stack_name}: creating change set from {template.path.name}")
            status = deploy_with_change_set(cf, template.stack_name, template.path.read_text(encoding="utf-8"),
                                            _cfn_parameters(template.parameters, template.body),
                                            delay=5.0 if delay is None else delay, progress=progress)
            result = StackResult(template.stack_name, template.path.name, "aws", status,
                                 resources=_resources(cf, template.stack_name),
                                 outputs=_outputs(cf, template.stack_name), code=shipped.get(template.stem, []))
            progress(f"{template.stack_name}: {status}")
            results.append(result)
        return results

    ec2, sm = aws.client("ec2", settings), aws.client("secretsmanager", settings)
    supported, secret_arns = moto_supported_types(), _secret_arns(sm)
    shipped: dict[str, list[dict]] = {}
    if build:
        progress("local: building the code without third-party dependencies (the local runtime runs the handlers "
                 "in-process with this environment's packages)")
        shipped = ship_code(s3, settings, chosen, with_dependencies=bool(with_dependencies), create_bucket=True,
                            progress=progress)
    dropped: set[str] = set()
    for template in order:
        template.parameters.update(_local_parameter_defaults(ec2, template))
        resolver = template.resolver(settings)
        body, result = local_template(template, resolver, supported, secret_arns, dropped)
        dropped |= dropped_export_names(template, result, resolver)
        if template.stem not in {t.stem for t in chosen}:
            continue
        _check_code_objects(s3, template, resolver)
        progress(f"{template.stack_name}: deploying {template.path.name} into moto "
                 f"({len(result.skipped)} resources left out)")
        result.status = deploy_local_stack(cf, template.stack_name, body, _cfn_parameters(template.parameters, body),
                                           delay=0.5 if delay is None else delay)
        result.resources = _resources(cf, template.stack_name)
        result.outputs = _outputs(cf, template.stack_name)
        result.code = shipped.get(template.stem, [])
        progress(f"{template.stack_name}: {result.status}")
        results.append(result)
    return results


def _plan(settings: Settings, stack: str | None, parameters_file: Path | None,
          templates_dir: Path | None) -> tuple[DeployConfig, list[Template], list[Template]]:
    """(config, every template in dependency order, the ones chosen); locally, the endpoint must be up."""
    config = DeployConfig.load(settings, parameters_file)
    order = dependency_order(load_templates(settings, config, templates_dir))
    chosen = select(order, stack)
    if settings.target == "local":
        _require_local_endpoint(settings)
    return config, order, chosen


def destroy(settings: Settings, stack: str | None = None, *, parameters_file: Path | None = None,
            templates_dir: Path | None = None, progress: Callable[[str], None] = lambda _: None,
            delay: float | None = None) -> list[dict]:
    """Delete the deployed stacks (or one, if no deployed stack imports its exports) in reverse order."""
    _, order, chosen = _plan(settings, stack, parameters_file, templates_dir)
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
        vpcs: list[str] = []
        kept = {r["logical_id"] for r in _resources(cf, name)}
        if settings.target == "local":
            ec2 = aws.client("ec2", settings)
            vpcs = _local_pre_delete(cf, ec2, name)
        try:
            cf.delete_stack(StackName=name)
            _wait(cf, "stack_delete_complete", 0.5 if settings.target == "local" else (delay or 5.0),
                  max_attempts=720, StackName=name)
        except WaiterError as error:
            raise DeployError(f"destroy failed\n{failure_report(cf, name)}") from error
        except ClientError as error:
            raise DeployError(f"{name} could not be deleted: {error.response['Error'].get('Message')}") from error
        if settings.target == "local" and (left := _local_leftovers(aws.client("ec2", settings), vpcs)):
            raise DeployError(f"moto deleted stack {name} but left VPC {', '.join(left)} behind")
        results.append({"stack": name, "status": "DELETE_COMPLETE", "retained": sorted(set(_retained(template)) & kept)})
        progress(f"{name}: deleted")
    return results


def _retained(template: Template) -> list[str]:
    return sorted(lid for lid, res in template.body.get("Resources", {}).items()
                  if res.get("DeletionPolicy") in ("Retain", "RetainExceptOnCreate"))


def _local_pre_delete(cf, ec2, name: str) -> list[str]:
    """moto refuses to delete a VPC that still has network interfaces (DependencyViolation): its interface
    endpoints' and its terminated instances' interfaces outlive them. Delete the stack's endpoints, then the
    interfaces left in its VPCs. Returns the stack's VPC ids, to check afterwards."""
    resources = _resources(cf, name)
    vpcs = [r["physical_id"] for r in resources if r["type"] == "AWS::EC2::VPC" and r["physical_id"]]
    endpoints = [r["physical_id"] for r in resources if r["type"] == "AWS::EC2::VPCEndpoint" and r["physical_id"]]
    if endpoints:
        ec2.delete_vpc_endpoints(VpcEndpointIds=endpoints)
    # moto's stack deletion does not delete route tables, so the VPC never goes: delete them first.
    for table in [r["physical_id"] for r in resources if r["type"] == "AWS::EC2::RouteTable" and r["physical_id"]]:
        try:
            described = ec2.describe_route_tables(RouteTableIds=[table])["RouteTables"]
        except ClientError:
            continue
        for association in described[0].get("Associations", []) if described else []:
            if not association.get("Main"):
                ec2.disassociate_route_table(AssociationId=association["RouteTableAssociationId"])
        ec2.delete_route_table(RouteTableId=table)
    return vpcs


def _local_leftovers(ec2, vpcs: list[str]) -> list[str]:
    if not vpcs:
        return []
    try:
        return [v["VpcId"] for v in ec2.describe_vpcs(VpcIds=vpcs)["Vpcs"]]
    except ClientError:
        return []


def _require_local_endpoint(settings: Settings) -> None:
    from clickstream.local.stack import http_ok

    if not http_ok(settings.aws_endpoint_url + "/"):
        raise DeployError(f"the local AWS endpoint (moto) is not answering on {settings.aws_endpoint_url}: "
                          "start the local stack with `clickstream up`")


def _require_deployed_dependencies(cf, order: list[Template], chosen: list[Template]) -> None:
    chosen_stems = {t.stem for t in chosen}
    exporter = {name: t for t in order for name in t.exports}
    for template in chosen:
        needed = {exporter[name].stack_name for name in template.imports if exporter[name].stem not in chosen_stems}
        missing = sorted(n for n in needed if stack_status(cf, n) is None)
        if missing:
            raise DeployError(f"{template.stack_name} imports exports of {', '.join(missing)}, which is not deployed: "
                              "deploy it first (or run `clickstream deploy` without --stack)")

