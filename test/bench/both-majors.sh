#!/usr/bin/env bash
# npm run bench [-- options of overhead.ts]
#
# The overhead benchmark on both majors, one after the other: first on this Node with the
# lockfile's undici (Node 20 + undici 7 here), then on Node 24 with undici 8 in a scratch copy of
# the project (.config/node24-project.sh). Each leg is its own run of overhead.ts with its own raw
# baseline, so ratios compare within a leg. With --json, one document: { "legs": [ …, … ] }.
# `npm run bench:here` runs one leg on the current Node.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

json=false
for arg in "$@"; do [ "$arg" = "--json" ] && json=true; [ "$arg" = "--help" ] && exec npx tsx "$root/test/bench/overhead.ts" --help; done
# Two legs must fit in 10 minutes: each gets 3 rounds of 10,000 timed requests per variant (after
# overhead.ts's 20,000 warm-up requests per process) and 200 s of budget for re-sent bursts by
# default. Options given on the command line come later and win.
legs=(--rounds 3 --requests 10000 --budget 200 "$@")

run_leg() { # $1: label, $2: project dir, $3: PATH prefix
  echo "== leg: $1" >&2
  (cd "$2" && PATH="$3:$PATH" node node_modules/tsx/dist/cli.mjs test/bench/overhead.ts "${legs[@]}")
}

if $json; then
  run_leg "$(node --version)" "$root" "" >"$scratch/leg1.json"
else
  run_leg "$(node --version)" "$root" ""
fi

echo "== preparing Node 24 + undici 8 (scratch copy of the project)" >&2
node24_bin="$(bash "$root/.config/node24-project.sh" "$scratch")"
if $json; then
  run_leg "Node 24" "$scratch/project" "$node24_bin" >"$scratch/leg2.json"
  node -e 'const fs = require("fs"); const [a, b] = process.argv.slice(1).map((f) => JSON.parse(fs.readFileSync(f, "utf8"))); process.stdout.write(JSON.stringify({ legs: [a, b] }, null, 2) + "\n")' "$scratch/leg1.json" "$scratch/leg2.json"
else
  echo
  run_leg "Node 24" "$scratch/project" "$node24_bin"
fi
