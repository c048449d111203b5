#!/usr/bin/env bash
# Fails when a tracked file is an executable binary (ELF, Mach-O or PE, or
# any file with the executable bit that is not a #! script), anywhere, or
# is larger than 1 MB outside a testdata/ directory. Built binaries are
# ignored (.gitignore) and never committed: the 53 MB keygate and
# keygate-load of 0.2.0 were. Run from .ci/run; an optional argument
# names the repository (default: this one).
set -euo pipefail
cd "${1:-$(dirname "$0")/..}"
limit=1000000
bad=0
while IFS= read -r -d '' entry; do
  mode=${entry%% *}
  file=${entry#*$'\t'}
  [ -f "$file" ] || continue # deleted in the work tree
  magic=$(head -c 4 "$file" | od -An -tx1 | tr -d ' \n')
  case "$magic" in
    7f454c46|cffaedfe|cefaedfe|feedfacf|feedface|cafebabe|4d5a*)
      echo "tracked executable binary: $file (build it, don't commit it)"; bad=1; continue ;;
  esac
  if [ "$mode" = 100755 ] && [ "$(head -c 2 "$file")" != '#!' ]; then
    echo "tracked file with the executable bit that is not a #! script: $file"; bad=1
  fi
  case "/$file" in
    */testdata/*) ;;
    *)
      size=$(stat -c %s "$file")
      if [ "$size" -gt "$limit" ]; then
        echo "tracked file larger than 1 MB outside testdata/: $file ($size bytes)"; bad=1
      fi ;;
  esac
done < <(git ls-files -s -z | sed -z 's/^\([0-9]*\) [0-9a-f]* [0-9]*\t/\1 \t/')
if [ "$bad" -ne 0 ]; then
  exit 1
fi
echo "tracked files: no binaries, none over 1 MB outside testdata/"
