"""`clickstream deploy` / `destroy --target local`: the templates into moto (the `clickstream up` endpoint).

Built on clickstream.infra.deploy (the same stacks, names, order, parameters file and code shipping). moto
5.2.5's change sets lose the stack's outputs and exports (measured), so this uses create_stack/update_stack
with the same waiters, and "no changes" is decided by comparing the deployed template and parameters. What
moto cannot hold is left out and listed with the reason (see `local_template`): types its CloudFormation does
not implement (the HTTP API -> the project's local API server, Cognito, CloudFront, bucket policies),
buckets and secrets that `clickstream up` creates itself (referred to by name instead), outputs that
would make moto drop every output (an interface endpoint's DnsEntries). A green local deploy proves the
templates' structure and cross-stack wiring, not AWS behaviour.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Callable

from botocore.exceptions import ClientError, WaiterError

from clickstream import aws
from clickstream.infra.deploy import (CAPABILITIES, NO_CHANGES, DeployError, StackResult, cfn_parameters,
                                      check_code_objects, failure_report, plan, require_deployed_dependencies,
                                      resolve_images, resolve_prefix_lists, ship_code, stack_outputs, stack_resources, stack_status,
                                      wait)
from clickstream.infra import deploy as aws_deploy
from clickstream.infra.templates import LOCAL_PLACEHOLDERS, Stack, import_arguments, references, substitute
from clickstream.local.stack import http_ok
from clickstream.settings import Settings

FINGERPRINT_TAG = "clickstream:local-fingerprint"
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
    "AWS::EC2::Volume": [(None, "moto's stack deletion leaves it: the local destroy detaches and deletes it unless "
                                "its DeletionPolicy keeps it")],
    "AWS::EC2::VPCEndpoint": [(None, "created by moto with made-up DNS entries; `!GetAtt DnsEntries` in Outputs "
                                     "would make moto drop every output of the stack")],
    "AWS::EC2::SecurityGroup": [("SecurityGroupEgress", "SecurityGroupEgress ignored by moto: the group keeps "
                                                        "the default allow-all egress")],
    "AWS::EC2::Subnet": [("MapPublicIpOnLaunch", "MapPublicIpOnLaunch reads back false in moto")],
}
PREFIX_LIST_INGRESS_NOTE = ("ingress from a prefix list (SourcePrefixListId) dropped by moto: the group admits "
                            "nothing locally; the prefix list's id is moto's (the same lookup as on AWS)")

def _wired_reason(resource_type: str) -> str | None:
    for prefix, reason in WIRED_LOCALLY.items():
        if resource_type.startswith(prefix):
            return reason
    return None


def local_template(stack: Stack, supported: set[str], secret_arns: dict[str, str],
                   dropped_exports: set[str] | None = None) -> tuple[dict, StackResult]:
    """The template as moto can hold it, and what was left out and why (pure: no AWS calls).

    `supported`: the resource types moto's CloudFormation implements; `secret_arns`: secret name -> ARN of
    the secrets `clickstream up` wrote; `dropped_exports`: exports other stacks' local deploys left out.
    """
    body = json.loads(json.dumps(stack.body))
    resources: dict[str, dict] = body.get("Resources", {})
    types = {lid: res.get("Type", "") for lid, res in resources.items()}
    result = StackResult(stack.stack_name, stack.path.name, "local", "PENDING")
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
            name = str(stack.physical_id(lid))
            values[(lid, None)] = (secret_arns.get(name) or stack.get_att(lid, "Arn")
                                   if rtype.startswith("AWS::SecretsManager") else name)
            if rtype != "AWS::ApiGatewayV2::Api":
                values[(lid, "Arn")] = secret_arns.get(name) or stack.get_att(lid, "Arn")
    dropped_exports = dropped_exports or set()

    def blocker(node: Any) -> str | None:
        for lid, attr in sorted(references(node), key=str):
            if lid in skipped and (lid, attr) not in values:
                what = f"{lid}.{attr}" if attr else lid
                return f"refers to {what} ({types[lid]}), which the local deploy leaves out"
        for arg in import_arguments(node):
            name = str(stack.resolve(arg))
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
    body["Resources"] = substitute(resources, values)

    outputs: dict[str, dict] = body.get("Outputs", {})
    for name, output in list(outputs.items()):
        refs = references(output.get("Value"))
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
        body["Outputs"] = substitute(outputs, values)
    else:
        body.pop("Outputs", None)
    for lid, res in sorted(resources.items()):
        for prop, note in MOTO_CAVEATS.get(res["Type"], []):
            if prop is None or prop in res.get("Properties", {}):
                result.notes.append({"logical_id": lid, "note": note})
        if any("SourcePrefixListId" in rule for rule in res.get("Properties", {}).get("SecurityGroupIngress") or []):
            result.notes.append({"logical_id": lid, "note": PREFIX_LIST_INGRESS_NOTE})
    return body, result


def dropped_export_names(stack: Stack, result: StackResult) -> set[str]:
    """The exports of the outputs `local_template` left out."""
    skipped = {item["name"] for item in result.skipped_outputs}
    return {name for name, key in stack.exports.items() if key in skipped}


def moto_supported_types() -> set[str]:
    """The resource types this moto's CloudFormation implements (the server runs the same moto)."""
    from moto.cloudformation.parsing import get_model_map

    return set(get_model_map())


def _local_parameter_defaults(ec2, template: Stack) -> dict[str, Any]:
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
               "List<AWS::EC2::SecurityGroup::Id>": [group[0]["GroupId"]],
               "AWS::EC2::Image::Id": LOCAL_PLACEHOLDERS["AWS::EC2::Image::Id"]}  # stacks not deployed now
    return {name: by_type[specs[name]["Type"]] for name in wanted}



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
            wait(cf, "stack_create_complete", delay, max_attempts=120, StackName=name)
        else:
            deployed = cf.describe_stacks(StackName=name)["Stacks"][0]
            if {t["Key"]: t["Value"] for t in deployed.get("Tags", [])}.get(FINGERPRINT_TAG) == fingerprint:
                return NO_CHANGES
            cf.update_stack(StackName=name, TemplateBody=text, Parameters=parameters, Capabilities=CAPABILITIES,
                            Tags=tags)
            wait(cf, "stack_update_complete", delay, max_attempts=120, StackName=name)
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



def _local_pre_delete(cf, ec2, name: str, kept: set[str] = frozenset()) -> list[str]:
    """moto refuses to delete a VPC that still has network interfaces (DependencyViolation): its interface
    endpoints' and its terminated instances' interfaces outlive them. Delete the stack's endpoints, then the
    interfaces left in its VPCs. moto's stack deletion leaves EBS volumes: detach and delete those whose
    DeletionPolicy does not keep them (`kept`: logical ids). Returns the stack's VPC ids, to check afterwards."""
    resources = stack_resources(cf, name)
    for volume in [r["physical_id"] for r in resources if r["type"] == "AWS::EC2::Volume" and r["physical_id"]
                   and r["logical_id"] not in kept]:
        for attachment in ec2.describe_volumes(VolumeIds=[volume])["Volumes"][0].get("Attachments") or []:
            ec2.detach_volume(VolumeId=volume, InstanceId=attachment["InstanceId"], Force=True)  # moto needs the id
        ec2.delete_volume(VolumeId=volume)
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




def deploy(settings: Settings, stack: str | None = None, *, parameters_file: Path | None = None,
           templates_dir: Path | None = None, progress: Callable[[str], None] = lambda _: None,
           delay: float | None = None, build: bool = True, with_dependencies: bool | None = None,
           new_images: bool = False) -> list[StackResult]:
    """Deploy every stack (or one, whose dependencies must be deployed already) into moto in dependency order.

    Images are pinned as on AWS (resolve_images: moto serves the public latest-AMI parameters).

    build (default): build the chosen stacks' code without the third-party dependencies (the local runtime runs
    the handlers in-process with this venv's packages, `with_dependencies` overrides), into a code bucket in
    moto, and pass the keys as the code-key parameters. build=False: use the keys the parameters give."""
    _require_local_endpoint(settings)
    config, order, chosen = plan(settings, stack, parameters_file, templates_dir)
    cf, s3 = aws.client("cloudformation", settings), aws.client("s3", settings)
    ec2, sm = aws.client("ec2", settings), aws.client("secretsmanager", settings)
    require_deployed_dependencies(cf, order, chosen)
    resolve_prefix_lists(ec2, chosen, config, progress)  # moto serves the AWS-managed lists, with ids of its own
    resolve_images(aws.client("ssm", settings), cf, chosen, config, new_images=new_images, progress=progress)
    supported, secret_arns = moto_supported_types(), _secret_arns(sm)
    shipped: dict[str, list[dict]] = {}
    if build:
        progress("local: building the code without third-party dependencies (the local runtime runs the handlers "
                 "in-process with this environment's packages)")
        shipped = ship_code(s3, settings, chosen, with_dependencies=bool(with_dependencies), create_bucket=True,
                            progress=progress)
    dropped: set[str] = set()
    results = []
    for template in order:
        template.parameters.update(_local_parameter_defaults(ec2, template))
        body, result = local_template(template, supported, secret_arns, dropped)
        dropped |= dropped_export_names(template, result)
        if template.stem not in {t.stem for t in chosen}:
            continue
        check_code_objects(s3, template)
        progress(f"{template.stack_name}: deploying {template.path.name} into moto "
                 f"({len(result.skipped)} resources left out)")
        result.status = deploy_local_stack(cf, template.stack_name, body, cfn_parameters(template.parameters, body),
                                           delay=0.5 if delay is None else delay)
        result.resources = stack_resources(cf, template.stack_name)
        result.outputs = stack_outputs(cf, template.stack_name)
        result.code = shipped.get(template.stem, [])
        progress(f"{template.stack_name}: {result.status}")
        results.append(result)
    return results


def destroy(settings: Settings, stack: str | None = None, *, parameters_file: Path | None = None,
            templates_dir: Path | None = None, progress: Callable[[str], None] = lambda _: None) -> list[dict]:
    """clickstream.infra.deploy.destroy against moto: before each deletion, what moto would not delete goes
    first; after it, no VPC of the stack may be left."""
    _require_local_endpoint(settings)
    cf, ec2 = aws.client("cloudformation", settings), aws.client("ec2", settings)
    _, order, _ = plan(settings, stack, parameters_file, templates_dir)
    kept = {template.stack_name: set(aws_deploy._retained(template)) for template in order}

    def prepare(name: str) -> Callable[[], None]:
        vpcs = _local_pre_delete(cf, ec2, name, kept.get(name, set()))

        def check() -> None:
            if left := _local_leftovers(ec2, vpcs):
                raise DeployError(f"moto deleted stack {name} but left VPC {', '.join(left)} behind")

        return check

    return aws_deploy.destroy(settings, stack, parameters_file=parameters_file, templates_dir=templates_dir,
                              progress=progress, delay=0.5, prepare=prepare)


def _require_local_endpoint(settings: Settings) -> None:
    if not http_ok(settings.aws_endpoint_url + "/"):
        raise DeployError(f"the local AWS endpoint (moto) is not answering on {settings.aws_endpoint_url}: "
                          "start the local stack with `clickstream up`")
