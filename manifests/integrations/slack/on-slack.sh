#!/bin/sh
# The plain-script agent of the Slack bundle: $1 is what arrived (event, command or
# interaction), $2 the payload file (JSON). Prints a one-line summary when jq is installed,
# then the payload on one line starting "payload: ". Replace the summary with what your
# workflow should do; a reply to a command or an interaction goes to its response_url.
set -eu
kind=${1:?usage: on-slack.sh event|command|interaction PAYLOAD_FILE}
file=${2:?usage: on-slack.sh event|command|interaction PAYLOAD_FILE}
if command -v jq >/dev/null 2>&1; then
    case "$kind" in
        event) jq -r '"mention by \(.event.user) in \(.event.channel): \(.event.text)"' "$file" ;;
        command) jq -r '"\(.command) \(.text) from \(.user_name) in \(.channel_name // .channel_id)"' "$file" ;;
        interaction) jq -r '"\(.type) by \(.user.username // .user.id): \([.actions[]?.action_id] | join(","))"' "$file" ;;
        *) echo "unknown kind $kind" ;;
    esac
fi
printf 'payload: %s\n' "$(tr -d '\n' < "$file")"
