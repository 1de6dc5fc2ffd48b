#!/usr/bin/env bash
# Serve the course dashboard with Voila, for one person or a whole class.
#
#   scripts/serve_dashboard.sh [PORT]                 # default port 8866, on 127.0.0.1
#   CLASS_SIZE=30 scripts/serve_dashboard.sh 8866     # 30 kernels pre-heated for a class
#   CLASS_TOKEN=secret HOST=0.0.0.0 scripts/serve_dashboard.sh 8866   # a class password
#
# Run from anywhere: it changes to the repository root, so Voila also reads ./voila.json
# (light theme, code cells hidden). Visitors can use the widgets but never run code.
# What it runs is python -m flowedu.app.serve (Voila with XSRF checks on, checked kernel
# websocket frames, a cap on kernels, and kernels with one thread each at a lower CPU
# priority than the web server; see that module and docs/classroom.md).
#
# CLASS_SIZE (default 1): kernels kept pre-heated, each having run the notebook already,
#   so that that many visitors arriving together each get the page at once. They are
#   started one or two at a time when the server starts (about a second each), and a
#   taken one is replaced once the server has been quiet for a few seconds.
# FLOWEDU_MAX_KERNELS: at most this many kernels (default: what 3/4 of the memory holds
#   at 370 MiB each); a visitor beyond it gets "the class is full, try again in a minute".
# CLASS_TOKEN: a class password; visitors open http://HOST:PORT/?token=CLASS_TOKEN once.
# HOST (default 127.0.0.1): serving beyond 127.0.0.1 needs CLASS_TOKEN (or a reverse
#   proxy in front, docs/classroom.md). Stop it with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${1:-8866}"
CLASS_SIZE="${CLASS_SIZE:-${POOL_SIZE:-1}}"
case "$CLASS_SIZE" in
  '' | *[!0-9]*) echo "CLASS_SIZE must be a whole number of students, got '$CLASS_SIZE'" >&2; exit 2 ;;
esac
PYTHON="${PYTHON:-python}"
if [ -x .venv/bin/python ] && [ -z "${VIRTUAL_ENV:-}" ]; then PYTHON=.venv/bin/python; fi
TOKEN_ARGS=()
if [ -n "${CLASS_TOKEN:-}" ]; then TOKEN_ARGS=(--token="$CLASS_TOKEN"); fi
exec "$PYTHON" -m flowedu.app.serve notebooks/dashboard.ipynb \
  --no-browser \
  --Voila.ip="${HOST:-127.0.0.1}" \
  --port="$PORT" \
  --Voila.port_retries=0 \
  --preheat_kernel=True \
  --pool_size="$CLASS_SIZE" \
  --strip_sources=True \
  --theme=light \
  "${TOKEN_ARGS[@]}"
