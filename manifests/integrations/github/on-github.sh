#!/bin/sh
# The plain-script agent of the GitHub bundle: $1 is the delivery's payload file (the JSON
# GitHub sent). Prints a one-line summary of the push or pull request when jq is installed,
# then the payload itself on one line starting "payload: ". Replace the summary with what your
# workflow should do (run the tests of the pushed commit, label the pull request, …).
set -eu
file=${1:?usage: on-github.sh PAYLOAD_FILE}
if command -v jq >/dev/null 2>&1; then
    jq -r '
      if has("pull_request") then
        "pull request #\(.number) \(.action): \(.pull_request.title) (\(.pull_request.head.ref) -> \(.pull_request.base.ref)) by \(.sender.login)"
      else
        "push to \(.ref) of \(.repository.full_name): \(.commits | length) commit(s), head \(.after[0:12]) by \(.pusher.name)"
      end' "$file"
fi
printf 'payload: %s\n' "$(tr -d '\n' < "$file")"
