#!/usr/bin/env bash
# Prepares a Linux host for test/failure/netns.test.ts: installs iptables if it is missing (Debian/Ubuntu,
# apt-get) and checks that network namespaces, veth pairs, a bridge and iptables inside a namespace all work.
# Needs root (CI runs as root). Exits non-zero with one line saying what is missing.
set -euo pipefail

fail() {
  echo "setup-netns: $*" >&2
  exit 1
}

[ "$(uname -s)" = Linux ] || fail "network namespaces need Linux, this is $(uname -s)"
[ "$(id -u)" = 0 ] || fail "must run as root (ip netns and iptables need CAP_NET_ADMIN)"
command -v ip >/dev/null || fail "the ip command (iproute2) is missing"

if ! command -v iptables >/dev/null; then
  command -v apt-get >/dev/null || fail "iptables is missing and there is no apt-get to install it"
  echo "setup-netns: installing iptables" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq iptables >/dev/null 2>&1 || {
    apt-get update -qq >/dev/null
    apt-get install -y -qq iptables >/dev/null
  }
  command -v iptables >/dev/null || fail "apt-get install iptables did not provide iptables"
fi

probe="tmem-probe-$$"
# Interface names are at most 15 characters.
bridge="tmpb$$"
cleanup() {
  ip netns del "$probe" 2>/dev/null || true
  ip link del "$bridge" 2>/dev/null || true
}
trap cleanup EXIT
ip netns add "$probe" || fail "ip netns add failed: no network namespaces here"
ip link add "$bridge" type bridge || fail "cannot create a bridge"
ip netns exec "$probe" iptables -A INPUT -p tcp --dport 9 -m statistic --mode random --probability 0.2 -j DROP ||
  fail "iptables (with -m statistic) does not work inside a namespace"
echo "setup-netns: ok" >&2
