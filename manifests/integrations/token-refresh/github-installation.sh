#!/bin/sh
# The GitHub check agent of the token-refresh bundle: lists the repositories the App's
# installation can reach with the token the daemon keeps fresh (GITHUB_TOKEN, from
# github-app-token). Exits 1 when GitHub refuses it. The token itself is never printed.
set -eu
: "${GITHUB_TOKEN:?GITHUB_TOKEN is not set: the agent's env takes it from github-app-token}"
api=${GITHUB_API_URL:-https://api.github.com}
out=$(curl -sS -w '\n%{http_code}' \
    -H "Authorization: Bearer $GITHUB_TOKEN" \
    -H 'Accept: application/vnd.github+json' \
    -H 'X-GitHub-Api-Version: 2022-11-28' \
    "$api/installation/repositories?per_page=100")
code=$(printf '%s\n' "$out" | tail -n 1)
body=$(printf '%s\n' "$out" | sed '$d')
if [ "$code" != 200 ]; then
    echo "GitHub answered HTTP $code: $body"
    exit 1
fi
if command -v jq >/dev/null 2>&1; then
    printf '%s\n' "$body" | jq -r '"installation reaches \(.total_count) repositories: \([.repositories[].full_name] | join(", "))"'
else
    echo "installation repositories: $body"
fi
