#!/bin/bash
# Mounts an instance's data volume (the device its AWS::EC2::VolumeAttachment names) at DIRECTORY for good:
# waits for the device, makes a file system only on an empty volume (a volume that already holds a database,
# found by a replacement instance, is mounted as it is), mounts it by UUID from fstab and gives it to OWNER;
# SERVICE then starts only with it mounted (after a reboot too), never on an empty directory of the root volume.
# Usage: mount-data-volume.sh DEVICE DIRECTORY OWNER SERVICE   (FSTAB, SYSTEMD_DIR: other paths, for tests)
set -euo pipefail
device=$1 directory=$2 owner=$3 service=$4
fstab=${FSTAB:-/etc/fstab}
dropins=${SYSTEMD_DIR:-/etc/systemd/system}/$service.service.d
for _ in $(seq 120); do
  [ -e "$device" ] && break
  sleep 5
done
[ -e "$device" ] || { echo "no data volume at $device after 10 minutes" >&2; exit 1; }
if [ -z "$(blkid -o value -s TYPE "$device" || true)" ]; then
  mkfs.xfs -q "$device"
fi
uuid=$(blkid -o value -s UUID "$device")
mkdir -p "$directory"
grep -q "^UUID=$uuid " "$fstab" || echo "UUID=$uuid $directory xfs defaults,nofail 0 2" >> "$fstab"
mountpoint -q "$directory" || mount "$directory"
chown "$owner:$owner" "$directory"
chmod 0700 "$directory"
if command -v restorecon > /dev/null; then restorecon -R "$directory"; fi
mkdir -p "$dropins"
printf '[Unit]\nRequiresMountsFor=%s\n' "$directory" > "$dropins/data-volume.conf"
