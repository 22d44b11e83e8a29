#!/bin/sh
# Sets up etcd's role-based access control for sluice, with etcdctl (v3 API):
#
#   role sluice-agent   read and write on the sluice prefix only (default /sluice/v1/)
#   role sluice-reader  read only on the same prefix, for dashboards and `sluicectl status`
#   user sluice-agent   for sluiced (and operators' sluicectl), granted sluice-agent
#   user sluice-reader  granted sluice-reader
#   user root           granted etcd's built-in root role; etcd needs it to turn auth on
#   auth enable         unless --no-auth-enable
#
# Safe to run again: what exists is kept (users keep their passwords), missing pieces are added,
# and grants are repeated harmlessly. Once auth is on, later runs authenticate as root.
#
# Passwords come from ROOT_PASSWORD, AGENT_PASSWORD and READER_PASSWORD, else from the files
# root.password, <agent-user>.password and <reader-user>.password in the credentials directory,
# else they are generated and written there (mode 0600). They are never printed. Give the agent's
# file to sluiced as etcd.passwordFile.
#
# TLS: etcdctl's own variables apply (ETCDCTL_CACERT, ETCDCTL_CERT, ETCDCTL_KEY), or pass
# --cacert/--cert/--key. See deploy/etcd/TLS.md.
set -eu

usage() {
  cat <<'EOF'
usage: deploy/etcd/setup-rbac.sh [options]

  --endpoints URLS     etcd endpoints, comma-separated [ENDPOINTS] (default http://127.0.0.1:2379)
  --prefix PREFIX      the sluice key prefix [PREFIX] (default /sluice/v1/)
  --out DIR            credentials directory [CREDENTIALS_DIR] (default ./sluice-etcd-credentials)
  --agent-user NAME    user (and role) for agents [AGENT_USER] (default sluice-agent)
  --reader-user NAME   user (and role) for read-only access [READER_USER] (default sluice-reader)
  --cacert FILE        CA for etcd's server certificate [ETCDCTL_CACERT]
  --cert FILE          client certificate for mutual TLS [ETCDCTL_CERT]
  --key FILE           client key for mutual TLS [ETCDCTL_KEY]
  --no-auth-enable     create roles and users but leave auth as it is
  -h, --help           show this help

Passwords: ROOT_PASSWORD, AGENT_PASSWORD, READER_PASSWORD, else files in --out, else generated.
EOF
}

die() {
  printf 'setup-rbac.sh: %s\n' "$*" >&2
  exit 2
}

endpoints=${ENDPOINTS:-http://127.0.0.1:2379}
prefix=${PREFIX:-/sluice/v1/}
out=${CREDENTIALS_DIR:-./sluice-etcd-credentials}
agent=${AGENT_USER:-sluice-agent}
reader=${READER_USER:-sluice-reader}
enable_auth=yes

while [ $# -gt 0 ]; do
  case "$1" in
    --endpoints) [ $# -ge 2 ] || die "--endpoints needs a value"; endpoints=$2; shift 2 ;;
    --endpoints=*) endpoints=${1#*=}; shift ;;
    --prefix) [ $# -ge 2 ] || die "--prefix needs a value"; prefix=$2; shift 2 ;;
    --prefix=*) prefix=${1#*=}; shift ;;
    --out) [ $# -ge 2 ] || die "--out needs a directory"; out=$2; shift 2 ;;
    --out=*) out=${1#*=}; shift ;;
    --agent-user) [ $# -ge 2 ] || die "--agent-user needs a name"; agent=$2; shift 2 ;;
    --agent-user=*) agent=${1#*=}; shift ;;
    --reader-user) [ $# -ge 2 ] || die "--reader-user needs a name"; reader=$2; shift 2 ;;
    --reader-user=*) reader=${1#*=}; shift ;;
    --cacert) [ $# -ge 2 ] || die "--cacert needs a file"; ETCDCTL_CACERT=$2; export ETCDCTL_CACERT; shift 2 ;;
    --cert) [ $# -ge 2 ] || die "--cert needs a file"; ETCDCTL_CERT=$2; export ETCDCTL_CERT; shift 2 ;;
    --key) [ $# -ge 2 ] || die "--key needs a file"; ETCDCTL_KEY=$2; export ETCDCTL_KEY; shift 2 ;;
    --no-auth-enable) enable_auth=no; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

case "$prefix" in
  /*/) ;;
  *) die "--prefix must start and end with /, got '$prefix'" ;;
esac
for name in "$agent" "$reader"; do
  case "$name" in
    root | '' | *[!A-Za-z0-9._@-]*) die "invalid user name '$name'" ;;
  esac
done
[ "$agent" != "$reader" ] || die "the agent and reader users must differ"
command -v etcdctl >/dev/null 2>&1 || die "etcdctl not found (Debian: apt-get install etcd-client)"

export ETCDCTL_API=3
# Credentials travel in the environment, never on a command line that `ps` shows.
unset ETCDCTL_USER ETCDCTL_PASSWORD

# Runs etcdctl quietly; on failure prints its error (without the gRPC retry chatter) and fails.
ctl() {
  if ! result=$(etcdctl --endpoints="$endpoints" "$@" 2>&1); then
    printf '%s\n' "$result" | grep -v '"level":"warn"' >&2
    return 1
  fi
  printf '%s\n' "$result"
}

# Whether etcdctl succeeds, output discarded.
ctl_ok() {
  etcdctl --endpoints="$endpoints" "$@" >/dev/null 2>&1
}

umask 077

# The password for a user: from the variable, else its file, else a new random one (saved).
password_for() { # user variable-name
  eval "given=\${$2:-}"
  file="$out/$1.password"
  if [ -n "$given" ]; then
    printf '%s' "$given"
  elif [ -s "$file" ]; then
    # The first line, without its newline, as sluiced reads passwordFile.
    head -n 1 "$file" | tr -d '\n'
  else
    generated=$(LC_ALL=C tr -dc 'A-Za-z0-9' </dev/urandom | head -c 32)
    printf '%s\n' "$generated" >"$file"
    printf 'setup-rbac.sh: generated a password for %s in %s\n' "$1" "$file" >&2
    printf '%s' "$generated"
  fi
}

# Is auth already on? Then an unauthenticated request is refused, and we must be root.
auth_on=no
if ! probe=$(etcdctl --endpoints="$endpoints" user list 2>&1); then
  case "$probe" in
    *"user name is empty"* | *"permission denied"* | *"authentication"* | *"invalid auth token"*)
      auth_on=yes ;;
    *)
      printf '%s\n' "$probe" | grep -v '"level":"warn"' >&2
      die "cannot reach etcd at $endpoints" ;;
  esac
fi
if [ "$auth_on" = yes ] && [ -z "${ROOT_PASSWORD:-}" ] && [ ! -s "$out/root.password" ]; then
  die "auth is enabled on $endpoints: set ROOT_PASSWORD or put root's password in $out/root.password"
fi
mkdir -p "$out"
root_password=$(password_for root ROOT_PASSWORD)
if [ "$auth_on" = yes ]; then
  printf 'auth is already enabled: working as root\n'
  ETCDCTL_USER=root
  ETCDCTL_PASSWORD=$root_password
  export ETCDCTL_USER ETCDCTL_PASSWORD
  ctl_ok user list || die "etcd refused root with the password from ROOT_PASSWORD or $out/root.password"
fi

ensure_role() { # role permission
  if ctl_ok role get "$1"; then
    printf 'role %s exists\n' "$1"
  else
    ctl role add "$1" >/dev/null
    printf 'role %s created\n' "$1"
  fi
  # Granting again is harmless; it keeps the role right if someone narrowed it.
  ctl role grant-permission --prefix=true "$1" "$2" "$prefix" >/dev/null
  printf 'role %s: %s on %s (prefix)\n' "$1" "$2" "$prefix"
}

ensure_user() { # user role password
  if ctl_ok user get "$1"; then
    printf 'user %s exists (password unchanged)\n' "$1"
  else
    printf '%s\n' "$3" | ctl user add "$1" --interactive=false >/dev/null
    printf 'user %s created\n' "$1"
  fi
  ctl user grant-role "$1" "$2" >/dev/null
}

ensure_role "$agent" readwrite
ensure_role "$reader" read
ensure_user "$agent" "$agent" "$(password_for "$agent" AGENT_PASSWORD)"
ensure_user "$reader" "$reader" "$(password_for "$reader" READER_PASSWORD)"
ensure_user root root "$root_password"

if [ "$auth_on" = no ] && [ "$enable_auth" = yes ]; then
  ctl auth enable >/dev/null
  auth_on=yes
  printf 'auth enabled\n'
fi

# With auth on, prove that each user gets in with the password on record and sees the prefix.
if [ "$auth_on" = yes ]; then
  for pair in "$agent:AGENT_PASSWORD" "$reader:READER_PASSWORD"; do
    user=${pair%%:*}
    pw=$(password_for "$user" "${pair#*:}")
    if ! ETCDCTL_USER=$user ETCDCTL_PASSWORD=$pw \
      etcdctl --endpoints="$endpoints" get --prefix "$prefix" --keys-only --limit=1 >/dev/null 2>&1; then
      die "user $user cannot read $prefix with the password on record; reset it with: etcdctl user passwd $user"
    fi
    printf 'checked: %s can read %s\n' "$user" "$prefix"
  done
fi

printf 'done. passwords: %s/{root,%s,%s}.password (unless given in the environment)\n' \
  "$out" "$agent" "$reader"
