#!/bin/sh
# The rotation agent of this bundle. It reports the SecretStores the daemon holds, by key
# name and fingerprint (values are never shown), so the task log records the state that
# a rotation starts from.
set -eu
echo "rotation task ${ORCHESTRATOR_TASK_ID:-?} (project ${ORCHESTRATOR_PROJECT:-default})"
orchestrator get secretstores
