#!/usr/bin/env bash
# Writes scripts/uv-bootstrap.txt: the uv that uv.lock names, with the hashes of its wheels for
# every platform, so that `make install` bootstraps exactly that installer with pip.
set -euo pipefail
uv=${1:-uv}
cd "$(dirname "$0")/.."
version=$(python3 -c 'import tomllib; print(next(p["version"] for p in tomllib.load(open("uv.lock", "rb"))["package"] if p["name"] == "uv"))')
{
  echo "# The installer that installs the lock (uv.lock), pinned with its hashes: \`make install\`"
  echo "# bootstraps it with pip from this file. Written by \`make lock\`; keep it at uv.lock's uv."
  echo "uv==$version" | "$uv" pip compile - --quiet --generate-hashes --universal \
    --python-version 3.11 --no-header --no-annotate
} > scripts/uv-bootstrap.txt.new
mv scripts/uv-bootstrap.txt.new scripts/uv-bootstrap.txt
