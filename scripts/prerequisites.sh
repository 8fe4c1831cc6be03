#!/usr/bin/env bash
# What `make demo` and `make test` need besides Python 3.11+, Node 20 and git, from Debian: rsync
# (gitlab-ci-local copies job directories with it), python3-venv, and npm/git when missing.
# As root it installs them with apt-get; otherwise it stops with one message saying what to install.
set -euo pipefail

need=()
command -v rsync >/dev/null 2>&1 || need+=(rsync)
command -v git >/dev/null 2>&1 || need+=(git)
command -v npm >/dev/null 2>&1 || need+=(nodejs npm)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
[ "${#need[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "prerequisites: installing ${need[*]} with apt-get ..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}"
  exit 0
fi
echo "prerequisites: missing ${need[*]}: install them (as root: apt-get install ${need[*]}) and rerun" >&2
exit 1
