#!/usr/bin/env bash
# The test suite, in the project's environment (created on first use).
set -euo pipefail
cd "$(dirname "$0")"
local/setup_env.sh
exec .venv/bin/python -m pytest -q -n "${TEST_JOBS:-2}" "$@"
