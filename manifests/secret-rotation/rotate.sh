#!/bin/sh
# The rotation agent of this bundle. For every SecretStore with a rotation block it runs
# `orchestrator secret rotate` (create the new value beside the old one, set it at the platform,
# wait for a delivery signed with it, retire the old one), then prints a report: which secrets
# were rotated and which remain unchanged, and why. Values are never printed, only fingerprints.
set -u
project="${ORCHESTRATOR_PROJECT:-default}"
echo "== secret rotation report: task ${ORCHESTRATOR_TASK_ID:-?}, project $project =="
if ! stores=$(orchestrator -p "$project" get secretstores); then
    echo "cannot list the SecretStores"
    exit 1
fi
last=$(mktemp)
code=$(mktemp)
trap 'rm -f "$last" "$code"' EXIT
rotated=0
unchanged=0
failed=0
# Columns: NAME KEYS ROTATION GEN AGE; ROTATION is "-" without a rotation block.
while read -r store provider; do
    [ -n "$store" ] || continue
    if [ "$provider" = "-" ]; then
        echo "unchanged: secretstore/$store (no rotation block)"
        unchanged=$((unchanged + 1))
        continue
    fi
    # `secret rotate` prints each stage as it happens, then its outcome on the last line; the
    # stages are passed on as they come (indented), so `task logs --follow` shows a rotation
    # that waits for its platform.
    : > "$last"
    { orchestrator -p "$project" secret rotate "$store" 2>&1; echo $? > "$code"; } |
        while IFS= read -r line; do
            printf '           %s\n' "$line"
            printf '%s\n' "$line" > "$last"
        done
    outcome=$(cat "$last")
    if [ "$(cat "$code")" = 0 ]; then
        echo "rotated:   $outcome"
        rotated=$((rotated + 1))
    else
        echo "failed:    ${outcome#orchestrator: }"
        echo "           the old value stays in force"
        failed=$((failed + 1))
    fi
done <<LIST
$(printf '%s\n' "$stores" | awk 'NR > 1 && NF >= 3 { print $1, $3 }')
LIST
echo "== $rotated rotated, $unchanged unchanged, $failed failed =="
[ "$failed" -eq 0 ]
