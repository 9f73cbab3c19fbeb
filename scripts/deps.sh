#!/usr/bin/env bash
# Installs the Debian 12 packages eddy needs. Usage: scripts/deps.sh [build|test]
#   build: what building and running the server needs (default)
#   test:  also the test tools: Criterion, the AWS CLI, boto3, pytest, Node.js/npm, clang (fuzzing),
#          Chromium (the dashboard test drives it headless)
# Only missing packages are installed; apt-get update runs first when anything is missing.
set -euo pipefail

what=${1:-build}
packages=(gcc make cmake pkg-config libh2o-evloop-dev libssl-dev libsqlite3-dev libcjson-dev libcbor-dev libisal-dev zlib1g-dev libcurl4-openssl-dev libprotobuf-c-dev protobuf-c-compiler libzstd-dev libpcre2-dev)
if [ "$what" = test ]; then
  packages+=(libcriterion-dev awscli python3-boto3 python3-pytest clang libclang-rt-14-dev curl faketime chromium fonts-liberation)
  command -v node >/dev/null 2>&1 || packages+=(nodejs)
  command -v npm >/dev/null 2>&1 || packages+=(npm)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}" >&2
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
