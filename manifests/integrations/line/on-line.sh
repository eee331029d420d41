#!/bin/sh
# The plain-script agent of the LINE bundle: $1 is the delivery's payload file (the JSON LINE
# sent: `destination` and a list of `events`). Prints one line per text message when jq is
# installed, then the payload on one line starting "payload: ". To answer, call the Messaging
# API's reply endpoint with the event's replyToken and the channel access token.
set -eu
file=${1:?usage: on-line.sh PAYLOAD_FILE}
if command -v jq >/dev/null 2>&1; then
    jq -r '.events[] | select(.type == "message" and .message.type == "text")
           | "message from \(.source.userId): \(.message.text) (reply token \(.replyToken))"' "$file"
fi
printf 'payload: %s\n' "$(tr -d '\n' < "$file")"
