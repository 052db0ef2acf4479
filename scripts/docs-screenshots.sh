#!/usr/bin/env bash
# Remakes the docs' screenshots (docs/img/*.png) from the browser tests that take them: the chat
# page with a cited answer open (tests/test_web.py) and the Documents panel after an upload
# (tests/test_web_documents.py). They save into tests/artifacts/docs/; this copies them over.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf tests/artifacts/docs
HF_HUB_OFFLINE=1 QA_ENV_FILE= .venv/bin/pytest -q \
  tests/test_web.py::test_cited_answer_panel_and_document_view \
  tests/test_web_documents.py::test_upload_ask_cite_then_remove_and_abstain
mkdir -p docs/img
cp tests/artifacts/docs/*.png docs/img/
ls -l docs/img/
