#!/usr/bin/env bash
# Builds a minimal local Node.js base image from THIS machine's node binary,
# for hosts that cannot pull node:20-bookworm-slim from a registry.
#
#   deploy/scripts/build-base-image.sh [--force]
#
# The image holds: node (at /usr/local/bin/node, as in the official image) and
# the shared libraries `ldd` lists for it, /bin/sh (dash) and its libraries, the
# libraries of the native addons found under node_modules (e.g. @riaskov/mmap-io),
# /tmp (1777), a minimal /etc/passwd and /etc/group with root and node (uid/gid
# 1000, like the official image), and nothing else: no package manager, no npm.
# The layout follows Debian 12's merged /usr (/bin, /lib, /lib64 -> usr/...).
#
# Then:  docker build --build-arg BASE_IMAGE=p2p-dmabuf/node-base:20 -f deploy/Dockerfile .
#
# Idempotent: does nothing when the image already exists (unless --force).
# Env: NODE_BASE_IMAGE overrides the tag (default p2p-dmabuf/node-base:20).
# The native addons in node_modules are built against this host's glibc; the
# image reuses that same glibc, so they load there too.
set -euo pipefail
cd "$(dirname "$0")/../.."

image=${NODE_BASE_IMAGE:-p2p-dmabuf/node-base:20}
force=false
[[ ${1:-} == --force ]] && force=true

if ! $force && docker image inspect "$image" >/dev/null 2>&1; then
  echo "base image $image already exists (use --force to rebuild)"
  exit 0
fi

node_bin=$(command -v node) || { echo "node is not on PATH" >&2; exit 1; }
node_bin=$(readlink -f "$node_bin")
node_version=$("$node_bin" -p 'process.versions.node')
node_major=${node_version%%.*}
if [[ $image == *:20 && $node_major != 20 ]]; then
  echo "warning: host node is v$node_version but the image is tagged $image" >&2
fi
sh_bin=$(readlink -f /bin/sh)

rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT

# Debian 12 merged-/usr layout.
mkdir -p "$rootfs"/usr/{bin,lib,lib64,local/bin,sbin} "$rootfs"/{etc,tmp,root,home/node,app,dev,proc,sys,run}
ln -s usr/bin "$rootfs/bin"
ln -s usr/sbin "$rootfs/sbin"
ln -s usr/lib "$rootfs/lib"
ln -s usr/lib64 "$rootfs/lib64"
chmod 1777 "$rootfs/tmp"
chmod 0700 "$rootfs/root"

install -m 0755 "$node_bin" "$rootfs/usr/local/bin/node"
ln -s ../local/bin/node "$rootfs/usr/bin/node"
install -m 0755 "$sh_bin" "$rootfs/usr/bin/$(basename "$sh_bin")"
[[ $(basename "$sh_bin") == sh ]] || ln -s "$(basename "$sh_bin")" "$rootfs/usr/bin/sh"

# The shared libraries of node, sh and every native addon in node_modules.
elfs=("$node_bin" "$sh_bin")
if [[ -d node_modules ]]; then
  while IFS= read -r -d '' addon; do
    # Only addons for this platform: prebuilt binaries for others fail ldd.
    ldd "$addon" >/dev/null 2>&1 && elfs+=("$addon")
  done < <(find node_modules -name '*.node' -type f -print0 2>/dev/null)
fi
declare -A libs=()
for elf in "${elfs[@]}"; do
  while read -r lib; do
    [[ -n $lib ]] && libs[$lib]=1
  done < <(ldd "$elf" | awk '/=> \// { print $3 } /^\t\/[^ ]+ \(/ { print $1 }')
done
for lib in "${!libs[@]}"; do
  # Resolve /lib/... to its merged-/usr path, then copy the file's content there.
  real_dir=$(readlink -f "$(dirname "$lib")")
  dest="$rootfs$real_dir/$(basename "$lib")"
  mkdir -p "$(dirname "$dest")"
  cp -L "$lib" "$dest"
done
# The dynamic loader must also be reachable at its ELF interpreter path.
if [[ ! -e $rootfs/lib64/ld-linux-x86-64.so.2 && -e /lib64/ld-linux-x86-64.so.2 ]]; then
  cp -L /lib64/ld-linux-x86-64.so.2 "$rootfs/usr/lib64/ld-linux-x86-64.so.2"
fi

cat > "$rootfs/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
node:x:1000:1000::/home/node:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
PASSWD
cat > "$rootfs/etc/group" <<'GROUP'
root:x:0:
node:x:1000:
nogroup:x:65534:
GROUP
printf 'passwd: files\ngroup: files\nhosts: files dns\n' > "$rootfs/etc/nsswitch.conf"

tar_owner=()
if [[ $(id -u) == 0 ]]; then
  chown 1000:1000 "$rootfs/home/node"
else
  # Not root: everything is stored as root, so make the home dir writable by all.
  tar_owner=(--owner=0 --group=0)
  chmod 0777 "$rootfs/home/node"
fi

echo "importing $image (node v$node_version, ${#libs[@]} shared libraries)"
tar -C "$rootfs" --numeric-owner "${tar_owner[@]}" -cf - . |
  docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change "ENV NODE_VERSION=$node_version" \
    --change 'CMD ["node"]' \
    --message "p2p-dmabuf local node base (host node v$node_version)" \
    - "$image" >/dev/null

docker run --rm "$image" node -e 'console.log(`base image ok: node ${process.version}`)'
