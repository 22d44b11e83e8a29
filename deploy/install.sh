#!/bin/sh
# Installs sluice from the single-file bundle (npm run bundle) onto this machine, or into a
# staging root for packaging and images:
#
#   PREFIX/lib/sluiced.mjs, sluicectl.mjs, locksmithctl.mjs,   the bundle (plain node, no node_modules)
#     sluice-fleetlock.mjs
#   PREFIX/bin/sluiced, sluicectl, locksmithctl,                links to them (locksmithctl: locksmith's
#     sluice-fleetlock                                          commands and flags on sluice's keys;
#                                                               sluice-fleetlock: the FleetLock server)
#   PREFIX/bin/node                                    with --node FILE: a node runtime to use
#   PREFIX/README.md                                   deploy/README.md (the units point at it)
#   UNITDIR/sluiced.service, sluice-reboot.{service,timer}, sluice-release.service,
#     sluice-fleetlock.service
#   /etc/sluice/sluiced.yaml.example, sluiced.env.example, sluice-fleetlock.env.example
#
# Everything lands under --root when given. The units name /opt/sluice; another --prefix is
# written into them. Existing configuration (/etc/sluice/sluiced.yaml, sluiced.env) is never
# touched, so running it again upgrades in place. It enables nothing: it prints what to run.
set -eu

usage() {
  cat <<'EOF'
usage: deploy/install.sh [options]

  --prefix DIR    where the programs go (default /opt/sluice)
  --root DIR      install under DIR instead of / (a staging root; nothing is enabled)
  --bundle DIR    the directory with sluiced.mjs, sluicectl.mjs, locksmithctl.mjs and
                  sluice-fleetlock.mjs (default: dist-bundle/ next to deploy/; build it with
                  `npm run bundle`)
  --unitdir DIR   where the systemd units go (default /etc/systemd/system)
  --node FILE     also install this node binary as PREFIX/bin/node (for hosts without
                  node >= 20.19, such as Flatcar); the units look in PREFIX/bin first
  --no-units      install the programs and examples only
  -h, --help      show this help
EOF
}

die() {
  printf 'install.sh: %s\n' "$*" >&2
  exit 2
}

here=$(cd "$(dirname "$0")" && pwd)
prefix=/opt/sluice
root=
bundle="$here/../dist-bundle"
unitdir=/etc/systemd/system
node=
units=yes

while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; prefix=$2; shift 2 ;;
    --prefix=*) prefix=${1#*=}; shift ;;
    --root) [ $# -ge 2 ] || die "--root needs a directory"; root=$2; shift 2 ;;
    --root=*) root=${1#*=}; shift ;;
    --bundle) [ $# -ge 2 ] || die "--bundle needs a directory"; bundle=$2; shift 2 ;;
    --bundle=*) bundle=${1#*=}; shift ;;
    --unitdir) [ $# -ge 2 ] || die "--unitdir needs a directory"; unitdir=$2; shift 2 ;;
    --unitdir=*) unitdir=${1#*=}; shift ;;
    --node) [ $# -ge 2 ] || die "--node needs a file"; node=$2; shift 2 ;;
    --node=*) node=${1#*=}; shift ;;
    --no-units) units=no; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

# The prefix is written into unit files with sed: keep it to plain path characters.
case "$prefix" in
  /*) ;;
  *) die "--prefix must be an absolute path, got '$prefix'" ;;
esac
if printf '%s' "$prefix$unitdir" | grep -q '[^A-Za-z0-9._/-]'; then
  die "--prefix and --unitdir may only contain letters, digits and . _ / -"
fi
case "$unitdir" in
  /*) ;;
  *) die "--unitdir must be an absolute path, got '$unitdir'" ;;
esac
prefix=${prefix%/}
root=${root%/}

for program in sluiced sluicectl locksmithctl sluice-fleetlock; do
  [ -f "$bundle/$program.mjs" ] ||
    die "$bundle/$program.mjs is missing: run \`npm run bundle\` first, or pass --bundle DIR"
done
if [ -n "$node" ]; then
  [ -x "$node" ] || die "--node $node is not an executable file"
fi

dest="$root$prefix"
install -d -m 0755 "$dest/bin" "$dest/lib"
for program in sluiced sluicectl locksmithctl sluice-fleetlock; do
  install -m 0755 "$bundle/$program.mjs" "$dest/lib/$program.mjs"
  # A link, so node sees the .mjs name and loads the file as an ES module.
  ln -sfn "../lib/$program.mjs" "$dest/bin/$program"
done
if [ -n "$node" ]; then
  install -m 0755 "$node" "$dest/bin/node"
fi
install -m 0644 "$here/README.md" "$dest/README.md"

if [ "$units" = yes ]; then
  install -d -m 0755 "$root$unitdir"
  for unit in sluiced.service sluice-reboot.service sluice-reboot.timer sluice-release.service \
    sluice-fleetlock.service; do
    sed "s|/opt/sluice/|$prefix/|g" "$here/systemd/$unit" >"$root$unitdir/$unit.tmp"
    chmod 0644 "$root$unitdir/$unit.tmp"
    mv -f "$root$unitdir/$unit.tmp" "$root$unitdir/$unit"
  done
fi

# The configuration directory holds the etcd password and keys: root only.
install -d -m 0700 "$root/etc/sluice"
install -m 0600 "$here/config/sluiced.yaml" "$root/etc/sluice/sluiced.yaml.example"
install -m 0600 "$here/config/sluiced.env" "$root/etc/sluice/sluiced.env.example"
install -m 0600 "$here/config/sluice-fleetlock.env" "$root/etc/sluice/sluice-fleetlock.env.example"

printf 'installed sluice into %s\n' "${root:-/}"
printf '  %s\n' "$prefix/bin/sluiced" "$prefix/bin/sluicectl" "$prefix/bin/locksmithctl" \
  "$prefix/bin/sluice-fleetlock"
[ -z "$node" ] || printf '  %s\n' "$prefix/bin/node"
[ "$units" = no ] || printf '  %s\n' "$unitdir/sluiced.service" "$unitdir/sluice-reboot.timer" \
  "$unitdir/sluice-reboot.service" "$unitdir/sluice-release.service" \
  "$unitdir/sluice-fleetlock.service"
printf '  %s\n' /etc/sluice/sluiced.yaml.example /etc/sluice/sluiced.env.example \
  /etc/sluice/sluice-fleetlock.env.example
if [ -z "$root" ] && [ "$units" = yes ]; then
  cat <<EOF
next:
  cp /etc/sluice/sluiced.yaml.example /etc/sluice/sluiced.yaml   # then edit it
  systemctl mask --now locksmithd.service                        # if this node ran locksmith
  systemctl daemon-reload && systemctl enable --now sluiced.service
FleetLock server (on the machines Zincati or Flatcar clients poll; see docs/fleetlock.md):
  cp /etc/sluice/sluice-fleetlock.env.example /etc/sluice/sluice-fleetlock.env   # then edit it
  systemctl enable --now sluice-fleetlock.service
EOF
fi
