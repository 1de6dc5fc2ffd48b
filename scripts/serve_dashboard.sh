#!/usr/bin/env bash
# Serve the course dashboard with Voila on this machine only (127.0.0.1).
#
#   scripts/serve_dashboard.sh [PORT]        # default port 8866; then open the printed URL
#
# Run from anywhere: it changes to the repository root, so Voila also reads ./voila.json
# (a pre-heated kernel, light theme, code cells hidden). Visitors can use the widgets but
# never run code: Voila refuses execute requests and strips the sources.
# Every visitor gets a kernel of their own (about 0.3 GB with torch); POOL_SIZE kernels are
# kept pre-heated (default 1), so that many visitors arriving together each get the page in
# about 3 s: e.g. POOL_SIZE=4 scripts/serve_dashboard.sh 8866.
# To let a class on the same network reach it, put a reverse proxy in front of it rather
# than binding Voila to 0.0.0.0; docs/classroom.md says how. Stop it with Ctrl-C.
set -euo pipefail
# One kernel per visitor: one torch thread each keeps a shared machine's cores from being
# oversubscribed.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
cd "$(dirname "$0")/.."
PORT="${1:-8866}"
PYTHON="${PYTHON:-python}"
if [ -x .venv/bin/python ] && [ -z "${VIRTUAL_ENV:-}" ]; then PYTHON=.venv/bin/python; fi
exec "$PYTHON" -m voila notebooks/dashboard.ipynb \
  --no-browser \
  --Voila.ip=127.0.0.1 \
  --port="$PORT" \
  --Voila.port_retries=0 \
  --preheat_kernel=True \
  --pool_size="${POOL_SIZE:-1}" \
  --strip_sources=True \
  --theme=light
