"""clickstream.infra.cleanup against the test stack's moto: what a destroy leaves behind, and what it costs."""

from __future__ import annotations

import pytest

from clickstream import aws
from clickstream.infra import cleanup
from clickstream.local import moto_deploy

PREFIX = "cs-cleanup"


@pytest.fixture
def deployed(local_stack, monkeypatch):
    """network and frontend deployed into moto under a prefix of their own; destroyed at the end if still there."""
    monkeypatch.setenv("CLICKSTREAM_STACK_PREFIX", PREFIX)
    for stem in ("network", "frontend"):
        moto_deploy.deploy(local_stack, stem, delay=0.1)
    yield local_stack
    moto_deploy.destroy(local_stack)


def test_the_project_stacks_are_named_as_deploy_names_them(local_stack, monkeypatch):
    monkeypatch.setenv("CLICKSTREAM_STACK_PREFIX", PREFIX)
    names = cleanup.project_stacks(local_stack)
    assert f"{PREFIX}-network" in names and f"{PREFIX}-analytics" in names
    assert all(name.startswith(PREFIX + "-") for name in names)


def test_deployed_stacks_and_their_instances_are_listed_as_billable(deployed):
    before = cleanup.inventory(deployed)
    assert f"{PREFIX}-network" in {r.stack for r in before} <= {f"{PREFIX}-network", f"{PREFIX}-frontend"}
    rows = cleanup.leftovers(deployed, before)
    stacks = {row.id for row in rows if row.type == "AWS::CloudFormation::Stack"}
    assert stacks == {f"{PREFIX}-network", f"{PREFIX}-frontend"}
    endpoints = [row for row in rows if row.type == "AWS::EC2::VPCEndpoint"]
    assert endpoints and all(row.billable == "yes" and row.id in row.delete_with for row in endpoints)
    assert {row.id for row in cleanup.billable(rows)} >= stacks


def test_after_destroy_nothing_of_the_stacks_is_left(deployed):
    before = cleanup.inventory(deployed)
    moto_deploy.destroy(deployed)
    assert cleanup.leftovers(deployed, before) == []


def test_a_snapshot_tagged_with_a_destroyed_stack_is_found(deployed):
    before = cleanup.inventory(deployed)
    ec2 = aws.client("ec2", deployed)
    volume = ec2.create_volume(AvailabilityZone=f"{deployed.region}a", Size=1)["VolumeId"]
    snapshot = ec2.create_snapshot(VolumeId=volume, TagSpecifications=[{
        "ResourceType": "snapshot", "Tags": [{"Key": cleanup.STACK_TAG, "Value": f"{PREFIX}-network"}]}])
    ec2.delete_volume(VolumeId=volume)
    try:
        moto_deploy.destroy(deployed)
        rows = cleanup.leftovers(deployed, before)
        assert [(row.type, row.id, row.billable) for row in rows] == [
            ("AWS::EC2::Snapshot", snapshot["SnapshotId"], "yes")]
        assert rows[0].stack == f"{PREFIX}-network"
    finally:
        ec2.delete_snapshot(SnapshotId=snapshot["SnapshotId"])


def test_a_retained_bucket_is_found_with_its_objects(deployed):
    s3 = aws.client("s3", deployed)
    bucket = "cs-cleanup-retained"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="events/a.json", Body=b"12345")
    kept = cleanup.Resource(f"{PREFIX}-ingestion", "RawBucket", "AWS::S3::Bucket", bucket)
    try:
        (row,) = cleanup.leftovers(deployed, [kept, cleanup.Resource("x", "Gone", "AWS::S3::Bucket", "cs-no-such")],
                                   prefix="cs-nothing-deployed")
        assert (row.type, row.id, row.state, row.billable) == ("AWS::S3::Bucket", bucket, "1 objects, 5 bytes", "yes")
        assert row.delete_with == f"aws s3 rb s3://{bucket} --force  (deletes every object first)"
    finally:
        assert cleanup.delete_bucket(deployed, bucket) == 1
    assert cleanup.leftovers(deployed, [kept], prefix="cs-nothing-deployed") == []


def test_delete_bucket_deletes_every_version_and_marker(local_stack):
    s3 = aws.client("s3", local_stack)
    bucket = "cs-cleanup-versioned"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    for body in (b"1", b"2"):
        s3.put_object(Bucket=bucket, Key="k", Body=body)
    s3.delete_object(Bucket=bucket, Key="k")  # a delete marker
    assert cleanup.delete_bucket(local_stack, bucket) == 3
    assert bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}


def test_a_protected_data_volume_outlives_destroy_and_is_listed_as_billable(local_stack, monkeypatch, tmp_path):
    monkeypatch.setenv("CLICKSTREAM_STACK_PREFIX", PREFIX)
    parameters = tmp_path / "local.json"
    parameters.write_text('{"parameters": {"frontend": {"ProtectData": "true"}}}')
    for stem in ("network", "frontend"):
        moto_deploy.deploy(local_stack, stem, parameters_file=parameters, delay=0.1)
    before = cleanup.inventory(local_stack)
    volume = next(r.physical_id for r in before if r.logical_id == "OltpDataVolume")
    ec2 = aws.client("ec2", local_stack)
    try:
        results = moto_deploy.destroy(local_stack, parameters_file=parameters)
        assert next(r for r in results if r["stack"] == f"{PREFIX}-frontend")["retained"] == ["OltpDataVolume"]
        rows = cleanup.leftovers(local_stack, before)
        assert [(row.type, row.id, row.billable) for row in rows] == [("AWS::EC2::Volume", volume, "yes")]
    finally:
        ec2.delete_volume(VolumeId=volume)
