#!/usr/bin/env bash
# The npm package as a new user gets it: `npm pack` (prepack builds dist/), the tarball's
# contents checked, installed into an empty directory without dev dependencies, then
# `detektr --version`, `detektr run --max-frames 5` (embedded backends) and
# `detektr trace find <id>` run from there. Works offline when npm's cache holds the
# dependencies (after `npm ci`): npm is told to prefer the cache.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/detektr-pack-smoke.XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() { echo "pack smoke: $*" >&2; exit 1; }

cd "$root"
tgz="$work/$(npm pack --silent --pack-destination "$work" | tail -1)"
[ -f "$tgz" ] || fail "npm pack made no tarball"
tar -tzf "$tgz" | sort >"$work/contents"
# What runs: the bin, the compiled CLI, and the files read at run time (migrations by the
# store, the reader thread by capture via import.meta.url, the shipped observability files).
for f in bin/detektr dist/commands/index.js dist/commands/run.js dist/src/capture/reader-thread.js \
  dist/src/embedded/lua.js dist/src/buffer/scripts.js migrations/001_initial.sql migrations/002_partitioned_storage.sql \
  observability/prometheus/detektr-alerts.yml package.json README.md LICENSE; do
  grep -qx "package/$f" "$work/contents" || fail "$f is missing from the tarball"
done
if grep -E '^package/(test|src|bench|scripts|node_modules|\.ci)/|\.map$|\.ts$' "$work/contents" | grep -v '\.d\.ts$'; then
  fail "the tarball holds files that do not run (above)"
fi

mkdir "$work/app"
cd "$work/app"
echo '{ "name": "detektr-pack-smoke", "private": true }' >package.json
npm install "$tgz" --omit=dev --prefer-offline --no-audit --no-fund --loglevel=error >/dev/null
[ ! -d node_modules/vitest ] || fail "dev dependencies were installed"

want=$(node -p "require('$root/package.json').version")
got=$(npx --no-install detektr --version)
[ "$got" = "$want" ] || fail "detektr --version printed \"$got\", package.json says $want"
echo "pack smoke: detektr --version = $got"

# Embedded backends (no REDIS_URL / DATABASE_URL), a free metrics port, data in ./.detektr.
unset REDIS_URL DATABASE_URL
export DETEKTR_METRICS_PORT=0
out=$(npx --no-install detektr run --max-frames 5 2>"$work/run.log") || { tail -20 "$work/run.log" >&2; fail "detektr run exited $?"; }
echo "$out" | grep -q '^published 5 frames' || fail "detektr run did not publish 5 frames: $out"
id=$(echo "$out" | sed -n 's/^last frame \([0-9A-Z]\{26\}\) .*/\1/p')
[ -n "$id" ] || fail "detektr run printed no frame id: $out"
journey=$(npx --no-install detektr trace find "$id" --json 2>"$work/trace.log") || { cat "$work/trace.log" >&2; fail "detektr trace find $id failed"; }
node -e '
  const j = JSON.parse(process.argv[1]);
  if (j.frameId !== process.argv[2] || j.state !== "completed" || !(j.events.length > 0))
    throw new Error(`want frame ${process.argv[2]} completed with events, got ${j.frameId} ${j.state} (${j.events?.length} events)`);
' "$journey" "$id" || fail "detektr trace find $id --json printed no completed journey of that frame"
echo "pack smoke: ok ($(wc -l <"$work/contents") files in $(basename "$tgz"); run and trace find $id from an install without dev dependencies)"
