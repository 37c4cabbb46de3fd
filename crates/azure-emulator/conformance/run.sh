#!/usr/bin/env bash
# Conformance suite: Microsoft's official Python SDKs against the Rust Azure emulator.
#
# Idempotent. Creates or updates a venv (${CONFORMANCE_VENV:-<repo>/target/conformance-venv}),
# reinstalling only when requirements.txt changed (its sha256 is kept in a stamp file), builds
# the emulator, then runs pytest over this folder. Extra arguments go to pytest
# (e.g. `run.sh -k graph -x`). Exit status is pytest's.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
venv="${CONFORMANCE_VENV:-$repo/target/conformance-venv}"
python="${PYTHON:-python3}"
req="$here/requirements.txt"
stamp="$venv/.requirements.sha256"

if ! "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)'; then
  echo "run.sh: $python is older than 3.10; set PYTHON to a newer interpreter" >&2
  exit 2
fi

if [[ ! -x "$venv/bin/python" ]]; then
  echo "run.sh: creating venv $venv" >&2
  "$python" -m venv "$venv"
fi

want="$(sha256sum "$req" | cut -d' ' -f1)"
have="$(cat "$stamp" 2>/dev/null || true)"
if [[ "$want" != "$have" ]]; then
  echo "run.sh: installing requirements into $venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
  echo "$want" > "$stamp"
fi

echo "run.sh: building the emulator" >&2
(cd "$repo" && cargo build --quiet -p azure-emulator)

cd "$here"
# -p no:cacheprovider keeps .pytest_cache out of the source tree.
exec "$venv/bin/python" -m pytest -p no:cacheprovider "$@"
