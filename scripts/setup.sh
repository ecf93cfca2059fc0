#!/usr/bin/env bash
# Sets up a fresh Debian/Ubuntu machine (as root) to run lab and its tests:
#  1. the system tools scenarios and tests use, the Docker engine and debootstrap (apt, when missing);
#  2. a virtualenv in .venv with lab installed (editable) and its development tools;
#  3. a running Docker engine (dockerd is started when nothing answers) and the lab's node image
#     (built from Debian's packages, no registry needed; cached by its content tag).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v ip >/dev/null || need+=(iproute2)
command -v telnet >/dev/null || need+=(telnet)
command -v nc >/dev/null || need+=(netcat-openbsd)
command -v curl >/dev/null || need+=(curl)
command -v iptables-save >/dev/null || need+=(iptables)
command -v nft >/dev/null || need+=(nftables)
command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v chromium >/dev/null || need+=(chromium)
command -v python3 >/dev/null || need+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -e '.[dev]'

if ! docker info >/dev/null 2>&1; then
  log=/var/log/lab-dockerd.log
  echo "setup: starting dockerd (log: $log)"
  nohup dockerd >"$log" 2>&1 &
  for _ in $(seq 1 150); do docker info >/dev/null 2>&1 && break; sleep 0.2; done
  if ! docker info >/dev/null 2>&1; then
    echo "setup: the Docker engine did not start; last lines of $log:" >&2
    tail -n 20 "$log" >&2
    exit 1
  fi
fi
.venv/bin/lab images
echo "setup: ok ($(.venv/bin/python --version), $(ip -V), docker $(docker version --format '{{.Server.Version}}'))"
