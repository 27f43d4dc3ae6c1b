"""Each database on its own volume (issue 15, safe to update): the templates' data volumes and attachments, the
user data that mounts them before PostgreSQL's initdb, and cloudformation/userdata/mount-data-volume.sh run
against stand-ins for the disk tools (no block device here)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from clickstream.infra.templates import load_stacks
from clickstream.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
MOUNT_SCRIPT = ROOT / "cloudformation" / "userdata" / "mount-data-volume.sh"
INSTANCES = {"frontend": ("OltpInstance", "OltpDataVolume", "OltpDataVolumeAttachment"),
             "analytics": ("DwInstance", "DwDataVolume", "DwDataVolumeAttachment")}


@pytest.fixture(scope="module")
def stacks():
    return {s.stem: s for s in load_stacks(Settings())}


def user_data(stack, instance: str) -> str:
    return stack.resolve(stack.props(instance)["UserData"]["Fn::Base64"])


@pytest.mark.parametrize("stem", sorted(INSTANCES))
def test_the_database_volume_is_encrypted_in_the_instances_zone_and_kept_only_with_protect_data(stacks, stem):
    stack = stacks[stem]
    instance, volume, attachment = INSTANCES[stem]
    resource = stack.template.body["Resources"][volume]
    assert resource["Type"] == "AWS::EC2::Volume"
    props = resource["Properties"]
    assert props["Encrypted"] is True and props["AvailabilityZone"] == {"Fn::GetAtt": [instance, "AvailabilityZone"]}
    for policy in ("DeletionPolicy", "UpdateReplacePolicy"):
        assert resource[policy] == {"Fn::If": ["ProtectsData", "Snapshot", "Delete"]}
    assert stack.template.body["Transform"] == "AWS::LanguageExtensions"  # Fn::If in a policy needs it
    assert stack.template.parameters["ProtectData"]["Default"] == "false"
    attached = stack.props(attachment)
    assert attached["InstanceId"] == {"Ref": instance} and attached["VolumeId"] == {"Ref": volume}
    assert f"mount-data-volume.sh {attached['Device']} /var/lib/pgsql postgres postgresql" in user_data(stack, instance)


@pytest.mark.parametrize("stem", sorted(INSTANCES))
def test_user_data_mounts_the_volume_before_initdb_and_initialises_only_a_new_volume(stacks, stem):
    script = user_data(stacks[stem], INSTANCES[stem][0])
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    bundle, mount = script.index("tar -xzf bundle.tar.gz"), script.index("mount-data-volume.sh")
    initdb, start = script.index("postgresql-setup --initdb"), script.index("systemctl enable --now postgresql")
    assert bundle < mount < initdb < start  # the script comes in the bundle; PGDATA is on the volume
    guard = re.search(r"if \[ ! -f \$PGDATA/PG_VERSION \]; then\n(.*?)\nfi\n", script, re.S)
    assert guard and "postgresql-setup --initdb" in guard.group(1)
    assert script.count("CREATE ROLE") == len(re.findall(r"CREATE ROLE \w+ LOGIN;", script))  # no password there
    creating = script.index("if $NEW_VOLUME; then")
    assert creating < script.index("CREATE DATABASE") < script.index("ALTER ROLE")


def run_mount(tmp_path: Path, fs_type: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """The script with blkid/mkfs.xfs/mount/... recorded instead of run; the device is a file."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir(exist_ok=True)
    stubs = {"blkid": f'echo "blkid $*" >> {log}; case "$*" in *TYPE*) echo "{fs_type}";; *UUID*) echo 1234-abcd;; esac',
             "mkfs.xfs": f'echo "mkfs.xfs $*" >> {log}', "mountpoint": f'echo "mountpoint $*" >> {log}; exit 1',
             "mount": f'echo "mount $*" >> {log}', "chown": f'echo "chown $*" >> {log}',
             "restorecon": f'echo "restorecon $*" >> {log}'}
    for name, body in stubs.items():
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    device, directory, fstab = tmp_path / "sdf", tmp_path / "pgsql", tmp_path / "fstab"
    device.touch()
    fstab.touch()
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FSTAB": str(fstab),
           "SYSTEMD_DIR": str(tmp_path / "systemd")}
    done = subprocess.run(["bash", str(MOUNT_SCRIPT), str(device), str(directory), "postgres", "postgresql"], env=env,
                          capture_output=True, text=True, timeout=30)
    calls = log.read_text().splitlines() if log.exists() else []
    log.unlink(missing_ok=True)
    return done, calls


def test_a_new_volume_gets_a_file_system_and_an_fstab_line_once(tmp_path):
    done, calls = run_mount(tmp_path, fs_type="")
    assert done.returncode == 0, done.stderr
    assert f"mkfs.xfs -q {tmp_path / 'sdf'}" in calls
    assert calls.index(f"mkfs.xfs -q {tmp_path / 'sdf'}") < calls.index(f"mount {tmp_path / 'pgsql'}")
    assert f"chown postgres:postgres {tmp_path / 'pgsql'}" in calls
    assert (tmp_path / "fstab").read_text() == f"UUID=1234-abcd {tmp_path / 'pgsql'} xfs defaults,nofail 0 2\n"
    assert oct((tmp_path / "pgsql").stat().st_mode & 0o777) == "0o700"
    dropin = tmp_path / "systemd" / "postgresql.service.d" / "data-volume.conf"
    assert dropin.read_text() == f"[Unit]\nRequiresMountsFor={tmp_path / 'pgsql'}\n"  # never on the root volume
    run_mount(tmp_path, fs_type="")
    assert len((tmp_path / "fstab").read_text().splitlines()) == 1  # a second run adds no line


def test_a_volume_that_holds_a_file_system_is_mounted_as_it_is(tmp_path):
    done, calls = run_mount(tmp_path, fs_type="xfs")
    assert done.returncode == 0, done.stderr
    assert not any(call.startswith("mkfs") for call in calls)
    assert f"mount {tmp_path / 'pgsql'}" in calls
