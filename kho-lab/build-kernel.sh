#!/usr/bin/env bash
# Builds a KHO-enabled Linux 7.2 kernel for the lab from Debian's
# linux-source-7.2 package, without changing the system's apt setup.
#
#   kho-lab/build-kernel.sh OUTDIR
#
# OUTDIR receives bzImage, System.map and config. Then run the lab with
#   cargo run --release -p kho-lab -- ci --kernel OUTDIR/bzImage
#
# The config: tinyconfig, then kvm_guest.config, then the options below,
# then olddefconfig. It adds PROC_KCORE (for the in-guest
# `kho inspect /proc/kcore`) to the options of the lab's reference kernel.
# The build takes about 20-25 minutes on 2 cores.
#
# Needs: apt-get (Debian), and the build dependencies, installed here if
# missing: build-essential flex bison bc libelf-dev libssl-dev xz-utils
# (run as root, or have them installed).
set -euo pipefail

out=${1:?usage: build-kernel.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=${KHO_KERNEL_WORK:-$out/work}
mkdir -p "$work"

need=()
for p in build-essential flex bison bc libelf-dev libssl-dev xz-utils; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
fi

# 1. Download linux-source-7.2 from the sid suite of the machine's own
#    archive, with a private apt state (the system's sources stay as they are).
apt_dir=$work/apt
mkdir -p "$apt_dir/sources" "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
src=$(ls /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 || true)
if [ -z "$src" ]; then
    echo "build-kernel.sh: no /etc/apt/sources.list.d/*.sources to copy" >&2
    exit 1
fi
sed -E 's/^Suites:.*/Suites: sid/' "$src" > "$apt_dir/sources/sid.sources"
apt_opts=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$apt_dir/sources"
          -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache")
if ! ls "$work"/linux-source-7.2_*.deb >/dev/null 2>&1; then
    apt-get "${apt_opts[@]}" update -q
    (cd "$work" && apt-get "${apt_opts[@]}" download linux-source-7.2)
fi
deb=$(ls "$work"/linux-source-7.2_*.deb | head -n1)

# 2. Unpack the source tree.
tree=$work/linux-source-7.2
if [ ! -d "$tree" ]; then
    rm -rf "$work/deb"
    dpkg-deb -x "$deb" "$work/deb"
    tar -C "$work" -xf "$work/deb/usr/src/linux-source-7.2.tar.xz"
fi

# 3. Configure.
cd "$tree"
make tinyconfig
make kvm_guest.config
opts=(KEXEC KEXEC_FILE KEXEC_HANDOVER KEXEC_HANDOVER_DEBUG KEXEC_HANDOVER_DEBUGFS
      LIVEUPDATE LIVEUPDATE_MEMFD RUNTIME_TESTING_MENU TEST_KEXEC_HANDOVER
      MEMBLOCK_KHO_SCRATCH CMA DEBUG_FS DEVTMPFS DEVTMPFS_MOUNT BLK_DEV_INITRD
      SERIAL_8250 SERIAL_8250_CONSOLE PROC_FS PROC_KCORE SYSFS TMPFS SHMEM
      MEMFD_CREATE BINFMT_ELF BINFMT_SCRIPT PROC_PAGE_MONITOR RELOCATABLE
      RANDOMIZE_BASE KVM_GUEST PRINTK TTY)
args=()
for o in "${opts[@]}"; do args+=(-e "$o"); done
scripts/config "${args[@]}" -d MODULES -d TRANSPARENT_HUGEPAGE
make olddefconfig
missing=()
for o in "${opts[@]}"; do
    grep -q "^CONFIG_$o=y" .config || missing+=("$o")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "build-kernel.sh: olddefconfig dropped: ${missing[*]}" >&2
    exit 1
fi

# 4. Build.
make -j"$(nproc)" bzImage
cp arch/x86/boot/bzImage System.map "$out/"
cp .config "$out/config"
echo "build-kernel.sh: kernel in $out/bzImage"
