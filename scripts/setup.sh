#!/usr/bin/env bash
# Sets up a fresh Debian/Ubuntu machine (as root) to run lab and its tests, in four steps it names:
#  1. the system tools scenarios and tests use, the Docker engine and debootstrap (apt, only when missing);
#  2. .venv with exactly what uv.lock pins (uv itself is bootstrapped with pip, hash-checked against the lock);
#  3. a running Docker engine (dockerd is started when nothing answers);
#  4. the lab's node image (built from Debian's packages, no registry needed; cached by its content tag).
# Run again on a set-up machine it changes nothing and takes a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
export UV_PYTHON_DOWNLOADS=never UV_NO_PROGRESS=1  # the venv uses the machine's python3; CI logs stay readable
start=$SECONDS
step() { echo "setup [$1/4] $2"; }
took() { echo "setup       ${1} ($((SECONDS - t))s)"; }

t=$SECONDS
step 1 "system packages"
need=()
command -v ip >/dev/null || need+=(iproute2)
command -v telnet >/dev/null || need+=(telnet)
command -v nc >/dev/null || need+=(netcat-openbsd)
command -v curl >/dev/null || need+=(curl)
command -v iptables-save >/dev/null || need+=(iptables)
command -v nft >/dev/null || need+=(nftables)
command -v tcpdump >/dev/null || need+=(tcpdump)  # captures read back (tests/integration/test_faults.py)
command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v chromium >/dev/null || need+=(chromium)
command -v python3 >/dev/null || need+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
/usr/bin/python3 -c 'import yaml' 2>/dev/null || need+=(python3-yaml)  # labs without root (tests/integration/test_rootless.py)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  echo "setup       installing ${need[*]} (apt-get; package lists first)"
  apt-get update -qq
  # One line per package as it is set up: progress without apt's full chatter.
  apt-get install -y -q --no-install-recommends "${need[@]}" | sed -nu 's/^Setting up \([^ ]*\).*/setup         \1/p'
  took "installed ${#need[@]} package(s)"
else
  took "all present"
fi

t=$SECONDS
step 2 "python environment (.venv, exactly uv.lock)"
if [ ! -x .venv/bin/uv ]; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  echo "setup       bootstrapping uv with pip (hash-checked against uv.lock)"
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --require-hashes \
    -r <(python3 scripts/uv_requirement.py uv.lock)
fi
# --frozen: install the lock as it is, never re-resolve; a lock that no longer matches
# pyproject.toml is caught by `uv lock --check` in `inv lint`.
.venv/bin/uv sync --frozen --extra dev --quiet
took "$(.venv/bin/python --version), in step with uv.lock"

t=$SECONDS
step 3 "Docker engine"
if ! docker info >/dev/null 2>&1; then
  log=/var/log/lab-dockerd.log
  echo "setup       starting dockerd (log: $log)"
  nohup dockerd >"$log" 2>&1 &
  for _ in $(seq 1 150); do docker info >/dev/null 2>&1 && break; sleep 0.2; done
  if ! docker info >/dev/null 2>&1; then
    echo "setup: the Docker engine did not start; last lines of $log:" >&2
    tail -n 20 "$log" >&2
    exit 1
  fi
fi
took "docker $(docker version --format '{{.Server.Version}}')"

t=$SECONDS
step 4 "node image (debootstrap on first run, then cached)"
.venv/bin/lab images | sed -u 's/^/setup       /'
took "ready"
echo "setup: ok in $((SECONDS - start))s ($(ip -V))"
