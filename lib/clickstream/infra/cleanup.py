"""What the project's stacks leave behind after `clickstream destroy`, and whether it still costs money.

    before = cleanup.inventory(settings)          # every resource of every deployed project stack
    ... clickstream destroy ...
    rows = cleanup.leftovers(settings, before)     # what still exists, billable or not, and how to delete it

A deleted stack deletes its resources, except what its template retains (`DeletionPolicy: Retain`, the raw bucket;
`Snapshot`, volumes kept as snapshots) and what a failed deletion left. `leftovers` looks at three things:
- the project's stacks (`<prefix>-<template stem>`) that still exist, whatever their status;
- each resource of the inventory taken before the destroy that still exists (asked of its own service);
- anything still tagged with one of those stacks' names (`aws:cloudformation:stack-name`, which CloudFormation puts
  on what it creates): snapshots made on delete, and what the inventory could not know (a kernel restarted between
  the two calls: then `inventory` is empty and only this sweep and the stack list run).

Each row says whether it bills while it exists: "yes" (by the hour or by the GB stored), "usage" (only when used:
requests, monthly active users) or "no" (free to keep: a VPC, a security group, an IAM role).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

from botocore.exceptions import ClientError

from clickstream import aws
from clickstream.infra.deploy import DeployConfig, stack_resources, stack_status
from clickstream.infra.templates import TemplateSet
from clickstream.settings import Settings

STACK_TAG = "aws:cloudformation:stack-name"

# resource type -> (bills while it exists, why, how to delete it by hand)
BILLING: dict[str, tuple[str, str, str]] = {
    "AWS::EC2::Instance": ("yes", "per hour while running; its EBS volumes per GB-month even when stopped",
                           "aws ec2 terminate-instances --instance-ids {id}"),
    "AWS::EC2::Volume": ("yes", "per GB-month", "aws ec2 delete-volume --volume-id {id}"),
    "AWS::EC2::Snapshot": ("yes", "per GB-month", "aws ec2 delete-snapshot --snapshot-id {id}"),
    "AWS::EC2::EIP": ("yes", "every public IPv4 address per hour", "aws ec2 release-address --allocation-id {id}"),
    "AWS::EC2::NatGateway": ("yes", "per hour and per GB", "aws ec2 delete-nat-gateway --nat-gateway-id {id}"),
    "AWS::EC2::VPCEndpoint": ("yes", "interface endpoints per AZ-hour and per GB (the S3 gateway endpoint is free)",
                              "aws ec2 delete-vpc-endpoints --vpc-endpoint-ids {id}"),
    "AWS::S3::Bucket": ("yes", "per GB-month stored and per request",
                        "aws s3 rb s3://{id} --force  (deletes every object first)"),
    "AWS::SecretsManager::Secret": ("yes", "per secret-month",
                                    "aws secretsmanager delete-secret --secret-id {id} --force-delete-without-recovery"),
    "AWS::Logs::LogGroup": ("yes", "per GB-month stored", "aws logs delete-log-group --log-group-name {id}"),
    "AWS::Cognito::UserPool": ("usage", "per monthly active user above the free tier",
                               "aws cognito-idp delete-user-pool --user-pool-id {id}"),
    "AWS::CloudFront::Distribution": ("usage", "per request and GB served",
                                      "disable it, wait, then aws cloudfront delete-distribution --id {id}"),
    "AWS::Lambda::Function": ("usage", "per request and GB-second", "aws lambda delete-function --function-name {id}"),
    "AWS::CloudFormation::Stack": ("depends", "its resources bill, the stack itself does not",
                                   "clickstream destroy --target aws --stack {id}"),
}
FREE = ("no", "free to keep", "deleted with its VPC or stack")


@dataclass(frozen=True)
class Resource:
    stack: str
    logical_id: str
    type: str
    physical_id: str


@dataclass(frozen=True)
class Leftover:
    stack: str
    type: str
    id: str
    state: str
    billable: str
    why: str
    delete_with: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def project_stacks(settings: Settings, prefix: str | None = None) -> list[str]:
    """The names `clickstream deploy` gives the templates' stacks on the settings' target."""
    prefix = prefix or DeployConfig.load(settings).prefix
    return list(TemplateSet(settings.templates, prefix).stack_names.values())


def inventory(settings: Settings, prefix: str | None = None) -> list[Resource]:
    """Every resource (with a physical id) of the project's stacks that exist now."""
    cf = aws.client("cloudformation", settings)
    return [Resource(name, r["logical_id"], r["type"], r["physical_id"])
            for name in project_stacks(settings, prefix) if stack_status(cf, name) is not None
            for r in stack_resources(cf, name) if r["physical_id"]]


def leftovers(settings: Settings, before: Iterable[Resource] = (), prefix: str | None = None) -> list[Leftover]:
    """What still exists of the project's stacks: the stacks, the inventoried resources, anything tagged with them."""
    names = project_stacks(settings, prefix)
    cf = aws.client("cloudformation", settings)
    found: dict[tuple[str, str], Leftover] = {}
    for name in names:
        if status := stack_status(cf, name):
            found[("AWS::CloudFormation::Stack", name)] = _row(name, "AWS::CloudFormation::Stack", name, status)
    probes = _Probes(settings)
    for resource in before:
        state = probes.state(resource.type, resource.physical_id)
        if state is not None:
            found[(resource.type, resource.physical_id)] = _row(resource.stack, resource.type, resource.physical_id,
                                                                state)
    for stack, type_, id_, state in probes.tagged(names):
        found.setdefault((type_, id_), _row(stack, type_, id_, state))
    return sorted(found.values(), key=lambda row: (row.billable != "yes", row.stack, row.type, row.id))


def billable(rows: Iterable[Leftover]) -> list[Leftover]:
    """The rows that cost money while they exist (stacks count: what is left in them bills)."""
    return [row for row in rows if row.billable in ("yes", "depends")]


def _row(stack: str, type_: str, id_: str, state: str) -> Leftover:
    bills, why, how = BILLING.get(type_, FREE)
    return Leftover(stack, type_, id_, state, bills, why, how.format(id=id_))


def _missing(error: ClientError) -> bool:
    code = error.response.get("Error", {}).get("Code", "")
    return any(word in code for word in ("NotFound", "NoSuch", "ResourceNotFound", "InvalidParameterValue")) or \
        code in ("404", "InvalidInstanceID.Malformed")


class _Probes:
    """Asks each resource's own service whether it still exists, and in which state (None: gone)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._clients: dict[str, object] = {}

    def client(self, service: str):
        if service not in self._clients:
            self._clients[service] = aws.client(service, self._settings)
        return self._clients[service]

    def state(self, type_: str, id_: str) -> str | None:
        probe: Callable[[str], str | None] | None = self._PROBES.get(type_)
        if probe is None:
            return None  # free to keep, or deleted with its stack: not asked
        try:
            return probe(self, id_)
        except ClientError as error:
            if _missing(error):
                return None
            raise

    def _instance(self, id_: str) -> str | None:
        reservations = self.client("ec2").describe_instances(InstanceIds=[id_])["Reservations"]
        states = [i["State"]["Name"] for r in reservations for i in r["Instances"]]
        return next((s for s in states if s != "terminated"), None)

    def _volume(self, id_: str) -> str | None:
        volumes = self.client("ec2").describe_volumes(VolumeIds=[id_])["Volumes"]
        return volumes[0]["State"] if volumes else None

    def _address(self, id_: str) -> str | None:
        key = "AllocationIds" if id_.startswith("eipalloc-") else "PublicIps"
        addresses = self.client("ec2").describe_addresses(**{key: [id_]})["Addresses"]
        return "allocated" if addresses else None

    def _nat_gateway(self, id_: str) -> str | None:
        gateways = self.client("ec2").describe_nat_gateways(NatGatewayIds=[id_])["NatGateways"]
        return next((g["State"] for g in gateways if g["State"] not in ("deleted", "deleting")), None)

    def _endpoint(self, id_: str) -> str | None:
        endpoints = self.client("ec2").describe_vpc_endpoints(VpcEndpointIds=[id_])["VpcEndpoints"]
        return next((e["State"].lower() for e in endpoints if e["State"].lower() not in ("deleted", "deleting")),
                    None)

    def _bucket(self, id_: str) -> str | None:
        s3 = self.client("s3")
        s3.head_bucket(Bucket=id_)
        listed = s3.list_objects_v2(Bucket=id_, MaxKeys=1000)
        count, size = listed.get("KeyCount", 0), sum(o["Size"] for o in listed.get("Contents", []))
        more = "+" if listed.get("IsTruncated") else ""
        return f"{count}{more} objects, {size:,}{more} bytes"

    def _secret(self, id_: str) -> str | None:
        secret = self.client("secretsmanager").describe_secret(SecretId=id_)
        return f"deletion scheduled {secret['DeletedDate']:%Y-%m-%d}" if secret.get("DeletedDate") else "active"

    def _log_group(self, id_: str) -> str | None:
        groups = self.client("logs").describe_log_groups(logGroupNamePrefix=id_)["logGroups"]
        group = next((g for g in groups if g["logGroupName"] == id_), None)
        return None if group is None else f"{group.get('storedBytes', 0):,} bytes stored"

    def _user_pool(self, id_: str) -> str | None:
        self.client("cognito-idp").describe_user_pool(UserPoolId=id_)
        return "active"

    def _distribution(self, id_: str) -> str | None:
        config = self.client("cloudfront").get_distribution(Id=id_)["Distribution"]
        return config["Status"].lower()

    def _function(self, id_: str) -> str | None:
        return self.client("lambda").get_function(FunctionName=id_)["Configuration"].get("State", "active").lower()

    _PROBES = {
        "AWS::EC2::Instance": _instance, "AWS::EC2::Volume": _volume, "AWS::EC2::EIP": _address,
        "AWS::EC2::NatGateway": _nat_gateway, "AWS::EC2::VPCEndpoint": _endpoint, "AWS::S3::Bucket": _bucket,
        "AWS::SecretsManager::Secret": _secret, "AWS::Logs::LogGroup": _log_group,
        "AWS::Cognito::UserPool": _user_pool, "AWS::CloudFront::Distribution": _distribution,
        "AWS::Lambda::Function": _function,
    }

    def tagged(self, stacks: list[str]) -> list[tuple[str, str, str, str]]:
        """(stack, type, id, state) of the billable EC2 resources still tagged with one of `stacks`."""
        ec2 = self.client("ec2")
        tag_filter = [{"Name": f"tag:{STACK_TAG}", "Values": stacks}]
        rows = []

        def stack_of(tags: list[dict] | None) -> str:
            return next((t["Value"] for t in tags or [] if t["Key"] == STACK_TAG), "")

        for reservation in ec2.describe_instances(Filters=tag_filter)["Reservations"]:
            for instance in reservation["Instances"]:
                if instance["State"]["Name"] != "terminated":
                    rows.append((stack_of(instance.get("Tags")), "AWS::EC2::Instance", instance["InstanceId"],
                                 instance["State"]["Name"]))
        for volume in ec2.describe_volumes(Filters=tag_filter)["Volumes"]:
            rows.append((stack_of(volume.get("Tags")), "AWS::EC2::Volume", volume["VolumeId"], volume["State"]))
        for snapshot in ec2.describe_snapshots(OwnerIds=["self"], Filters=tag_filter)["Snapshots"]:
            rows.append((stack_of(snapshot.get("Tags")), "AWS::EC2::Snapshot", snapshot["SnapshotId"],
                         snapshot["State"]))
        for address in ec2.describe_addresses(Filters=tag_filter)["Addresses"]:
            rows.append((stack_of(address.get("Tags")), "AWS::EC2::EIP",
                         address.get("AllocationId") or address["PublicIp"], "allocated"))
        for gateway in ec2.describe_nat_gateways(Filter=tag_filter)["NatGateways"]:
            if gateway["State"] not in ("deleted", "deleting"):
                rows.append((stack_of(gateway.get("Tags")), "AWS::EC2::NatGateway", gateway["NatGatewayId"],
                             gateway["State"]))
        for endpoint in ec2.describe_vpc_endpoints(Filters=tag_filter)["VpcEndpoints"]:
            if endpoint["State"].lower() not in ("deleted", "deleting"):
                rows.append((stack_of(endpoint.get("Tags")), "AWS::EC2::VPCEndpoint", endpoint["VpcEndpointId"],
                             endpoint["State"].lower()))
        return rows


def delete_bucket(settings: Settings, bucket: str) -> int:
    """Delete every object version and delete marker of `bucket`, then the bucket; returns how many were deleted."""
    s3 = aws.client("s3", settings)
    deleted = 0
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        keys = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
            deleted += len(keys)
    s3.delete_bucket(Bucket=bucket)
    return deleted
