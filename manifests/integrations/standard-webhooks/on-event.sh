#!/bin/sh
# The plain-script agent of the Standard Webhooks bundle: $1 is the delivery's payload file
# ({"type", "timestamp", "data"}). Prints a one-line summary when jq is installed, then the
# payload on one line starting "payload: ". Replace the summary with what your workflow should
# do.
set -eu
file=${1:?usage: on-event.sh PAYLOAD_FILE}
if command -v jq >/dev/null 2>&1; then
    jq -r '"\(.type) at \(.timestamp): \(.data | keys | join(", "))"' "$file"
fi
printf 'payload: %s\n' "$(tr -d '\n' < "$file")"
