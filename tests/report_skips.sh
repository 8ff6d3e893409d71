#!/usr/bin/env bash
# Prints every test ctest skipped in its last run with the reason the test gave (ctest itself shows only
# "***Skipped"), so a GPU test that skipped says "no GPU" in CI's log. Fails if a skip gives no reason.
set -euo pipefail
build=${1:-build}
log="$build/Testing/Temporary/LastTest.log"
[[ -f "$log" ]] || { echo "report_skips: $log not found (run ctest first)" >&2; exit 1; }
awk '
  /^[0-9]+\/[0-9]+ Test: / { name = $3; reason = ""; next }
  /: Skipped$/ { getline reason; next }
  /^Test Pass Reason:/ { getline why; if (why ~ /^Skip/) { skipped++; missing += (reason == "");
                          printf "skipped: %s: %s\n", name, (reason == "" ? "(no reason given)" : reason) } }
  END { printf "report_skips: %d tests skipped\n", skipped; exit (missing > 0) }
' "$log"
