#!/usr/bin/env bash
# Tools the benchmarks need that Go does not bring, installed when missing (idempotent; instant when
# they are there). Now one: wrk, the HTTP load generator of cmd/querybench (Debian package wrk).
#
#   scripts/benchtools.sh
#
# Installing needs root (apt-get), as scripts/testenv.sh does.
set -euo pipefail

say() { echo "benchtools: $*" >&2; }
die() { say "$*"; exit 1; }

if command -v wrk >/dev/null; then
	exit 0
fi
[[ $EUID -eq 0 ]] || die "wrk is missing and installing it needs root: run \`apt-get install -y wrk\` as root"
export DEBIAN_FRONTEND=noninteractive
out=$(mktemp)
trap 'rm -f "$out"' EXIT
say "installing wrk (apt-get)"
# An old package list may not know wrk: update first when the install fails.
if ! apt-get install -y -qq --no-install-recommends wrk >"$out" 2>&1 </dev/null; then
	apt-get update -qq >"$out" 2>&1 || { cat "$out" >&2; die "apt-get update failed"; }
	apt-get install -y -qq --no-install-recommends wrk >"$out" 2>&1 </dev/null ||
		{ cat "$out" >&2; die "apt-get install wrk failed"; }
fi
command -v wrk >/dev/null || die "wrk is still not on PATH after apt-get install wrk"
