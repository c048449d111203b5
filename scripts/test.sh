#!/usr/bin/env bash
# The one command that runs keygate's tests: formatting, vet, the whole
# suite with the race detector, and each fuzz target briefly.
set -euo pipefail
cd "$(dirname "$0")/.."
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt: not formatted:"; echo "$unformatted"; exit 1
fi
go vet ./...
go test -race -count=1 -timeout 20m ./...
# Fuzz targets, a few seconds each (corpus in testdata/fuzz).
for target in $(go test -list '^Fuzz' ./... 2>/dev/null | grep '^Fuzz' || true); do
  pkg=$(grep -rl "func $target(" --include='*_test.go' . | head -1 | xargs dirname)
  go test -run '^$' -fuzz "^${target}\$" -fuzztime "${FUZZTIME:-5s}" "$pkg"
done
