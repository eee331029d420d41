#!/bin/sh
# The plain-script agent of the Stripe bundle: $1 is the delivery's payload file (the Event
# object Stripe sent). Prints a one-line summary when jq is installed, then the payload on one
# line starting "payload: ". Replace the summary with what your workflow should do; Stripe may
# send an event twice, so key any action on the event's id.
set -eu
file=${1:?usage: on-stripe.sh PAYLOAD_FILE}
if command -v jq >/dev/null 2>&1; then
    jq -r '"\(.type) \(.id): \(.data.object.object) \(.data.object.id)\(if .livemode then "" else " (test mode)" end)"' "$file"
fi
printf 'payload: %s\n' "$(tr -d '\n' < "$file")"
