#!/bin/sh
# Points the Butane config at another Node release or architecture: rewrites the node tarball's
# `source:` URL and its `verification: hash:` in deploy/flatcar/sluice.bu, with the SHA-256 from
# that release's SHASUMS256.txt. Ignition refuses the tarball unless the hash matches.
#
#   deploy/flatcar/pin-node.sh --version 20.20.2 --arch arm64
#   deploy/flatcar/pin-node.sh --shasums SHASUMS256.txt    # a copy you checked, no download
#
# SHASUMS256.txt comes over HTTPS from nodejs.org (curl or wget). To check it against the Node
# release keys as well, download SHASUMS256.txt.asc beside it, verify it with gpg, and pass the
# checked file with --shasums.
set -eu

usage() {
  cat <<'EOF'
usage: deploy/flatcar/pin-node.sh [options]

  --version V     Node release, e.g. 20.20.2 (default: the one the config names now)
  --arch A        x64 or arm64 (default x64)
  --shasums FILE  read the checksums from FILE instead of downloading SHASUMS256.txt
  --config FILE   the Butane config to rewrite (default: sluice.bu next to this script)
  -h, --help      show this help
EOF
}

die() {
  printf 'pin-node.sh: %s\n' "$*" >&2
  exit 2
}

here=$(cd "$(dirname "$0")" && pwd)
config="$here/sluice.bu"
version=
arch=x64
shasums=

while [ $# -gt 0 ]; do
  case "$1" in
    --version) [ $# -ge 2 ] || die "--version needs a release"; version=$2; shift 2 ;;
    --version=*) version=${1#*=}; shift ;;
    --arch) [ $# -ge 2 ] || die "--arch needs x64 or arm64"; arch=$2; shift 2 ;;
    --arch=*) arch=${1#*=}; shift ;;
    --shasums) [ $# -ge 2 ] || die "--shasums needs a file"; shasums=$2; shift 2 ;;
    --shasums=*) shasums=${1#*=}; shift ;;
    --config) [ $# -ge 2 ] || die "--config needs a file"; config=$2; shift 2 ;;
    --config=*) config=${1#*=}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

case "$arch" in x64 | arm64) ;; *) die "--arch must be x64 or arm64, not $arch" ;; esac
[ -f "$config" ] || die "no Butane config at $config"

# The tarball line as it is now: `source: https://nodejs.org/dist/vX/node-vX-linux-A.tar.gz`.
url_re='https://nodejs\.org/dist/v[0-9][0-9.]*/node-v[0-9][0-9.]*-linux-[a-z0-9]*\.tar\.gz'
current=$(grep -o "source: $url_re" "$config" || true)
[ "$(printf '%s\n' "$current" | grep -c .)" = 1 ] ||
  die "expected one nodejs.org tarball source: line in $config"
if [ -z "$version" ]; then
  version=$(printf '%s\n' "$current" | sed 's|.*/dist/v\([0-9.]*\)/.*|\1|')
fi
case "$version" in
  v*) version=${version#v} ;;
esac
printf '%s\n' "$version" | grep -Eq '^[0-9]+\.[0-9]+\.[0-9]+$' || die "not a Node release: $version"

tarball="node-v$version-linux-$arch.tar.gz"
if [ -z "$shasums" ]; then
  url="https://nodejs.org/dist/v$version/SHASUMS256.txt"
  if command -v curl >/dev/null 2>&1; then
    sums=$(curl -fsSL "$url") || die "cannot download $url"
  elif command -v wget >/dev/null 2>&1; then
    sums=$(wget -qO- "$url") || die "cannot download $url"
  else
    die "neither curl nor wget is installed: download $url yourself and pass --shasums FILE"
  fi
else
  [ -f "$shasums" ] || die "no such file: $shasums"
  sums=$(cat "$shasums")
fi
sum=$(printf '%s\n' "$sums" | awk -v f="$tarball" '$2 == f { print $1 }')
printf '%s\n' "$sum" | grep -Eq '^[0-9a-f]{64}$' || die "no SHA-256 for $tarball in SHASUMS256.txt"

# The hash line is the first `hash: sha256-...` after the source line.
tmp="$config.tmp.$$"
trap 'rm -f "$tmp"' EXIT
awk -v url="https://nodejs.org/dist/v$version/$tarball" -v hash="sha256-$sum" -v re="$url_re" '
  !done && $0 ~ "^[ ]*source: " re "$" { sub("source: .*", "source: " url); seen = 1 }
  seen && !done && $0 ~ /^[ ]*hash: sha256-/ { sub("hash: .*", "hash: " hash); done = 1 }
  { print }
  END { if (!done) exit 1 }
' "$config" >"$tmp" || die "no verification hash: line after the tarball's source: line in $config"
cat "$tmp" >"$config"
printf 'pinned %s: sha256-%s\n' "$tarball" "$sum"
