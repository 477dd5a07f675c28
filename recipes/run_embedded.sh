#!/usr/bin/env bash
# Train sync and async on the embedded task with the same seed; extra args are hydra overrides.
#   bash recipes/run_embedded.sh seed=1 trainer.total_env_steps=60000
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
for recipe in embedded_sync embedded_async; do
  verl-async-vla --config-dir "$here" --config-name "$recipe" "$@"
done
