#!/usr/bin/env bash
# Set up and run the whole test suite (unit, integration, end-to-end).
# The Prometheus collector is tested against a real Prometheus, the HTML report and the Dagster UI
# in a real browser, and the production instance (dagster.yaml) on the local PostgreSQL with the
# real daemon under a faked wall clock: Debian's prometheus, chromium and faketime packages (and
# gcc, which builds the test's small libfaketime fix) are installed when missing, and the local
# PostgreSQL cluster is started when it is not accepting connections.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
missing=()
{ command -v prometheus >/dev/null && command -v promtool >/dev/null; } || missing+=(prometheus)
command -v chromium >/dev/null || missing+=(chromium)
command -v git >/dev/null || missing+=(git)
compgen -G "/usr/lib/*/faketime/libfaketime.so.1" >/dev/null || missing+=(faketime)
command -v gcc >/dev/null || missing+=(gcc libc6-dev)
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if command -v pg_isready >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432 && command -v pg_ctlcluster >/dev/null; then
  for version in /etc/postgresql/*/; do
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$(basename "$version")" main start || true
  done
fi
scripts/setup.sh dev
exec .venv/bin/python -m pytest "$@"
