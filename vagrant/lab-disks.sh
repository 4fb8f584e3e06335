#!/usr/bin/env bash
# lab-disks.sh: the tutorial's disks, made once and brought back after a reboot.
#
# A 320 MiB file on a loop device holds the LVM volume group `tutorial` with
#   /dev/tutorial/wdata  64 MiB  the WalB data device (ddev)
#   /dev/tutorial/wlog   96 MiB  the WalB log device (ldev): the data device and half
#                                again, so filling the new file system at once cannot
#                                overflow it (the walb-tools tutorial used 32 MiB)
#   /dev/tutorial/data  156 MiB  ext4 at /mnt/tutorial: the daemons' directories
# as in the walb-tools tutorial, with a larger log. A disk made by an older version (a
# 32 MiB log) is kept as it is; remove the file (after `lab down`) to make the new one. Run as root; running it again changes nothing.
set -euo pipefail

IMG=${WALB_LAB_DISK:-/var/lib/walb-lab/tutorial-disk}
MNT=/mnt/tutorial

mkdir -p "$(dirname "$IMG")" "$MNT"
if [ ! -e "$IMG" ]; then
    truncate -s 320M "$IMG"
    new=1
else
    new=0
fi
loop=$(losetup -j "$IMG" | cut -d: -f1 | head -n 1)
if [ -z "$loop" ]; then
    loop=$(losetup --find --show "$IMG")
fi
if [ "$new" = 1 ]; then
    pvcreate -q "$loop"
    vgcreate -q tutorial "$loop"
    lvcreate -q -y -n wdata -L 64m tutorial
    lvcreate -q -y -n wlog -L 96m tutorial
    lvcreate -q -y -n data -l 100%FREE tutorial
    mkfs.ext4 -q /dev/tutorial/data
else
    pvscan --cache -q "$loop" >/dev/null 2>&1 || true
    vgchange -q -ay tutorial >/dev/null
fi
mountpoint -q "$MNT" || mount /dev/tutorial/data "$MNT"
echo "lab disks: $loop -> VG tutorial (wdata, wlog, data at $MNT)"
