#!/bin/sh
# The Slack check agent of the token-refresh bundle: calls auth.test with the access token the
# daemon keeps fresh (SLACK_TOKEN, from slack-token) and prints whose token it is. Exits 1 when
# Slack refuses it. The token itself is never printed (and the run log redacts it anyway).
set -eu
: "${SLACK_TOKEN:?SLACK_TOKEN is not set: the agent's env takes it from slack-token}"
api=${SLACK_API_URL:-https://slack.com/api}
answer=$(curl -sS -X POST -H "Authorization: Bearer $SLACK_TOKEN" "$api/auth.test")
case "$answer" in
    *'"ok":true'* | *'"ok": true'*) ;;
    *) echo "auth.test refused the token: $answer"; exit 1 ;;
esac
if command -v jq >/dev/null 2>&1; then
    printf '%s\n' "$answer" | jq -r '"auth.test ok: user \(.user) (\(.user_id)) in team \(.team) (\(.team_id))"'
else
    echo "auth.test ok: $answer"
fi
