#!/usr/bin/env bash
# Installs spaq with its test dependencies and runs the test suite.
#   Debian packages: ffmpeg (codec degradations), espeak-ng (speech sources); skipped
#   with a warning when apt-get is not available (tests that need them then skip).
#   torch: the CPU build (pip install torch==2.13.0) before spaq, so pip does not pull a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  if ! command -v ffmpeg >/dev/null 2>&1 || ! command -v espeak-ng >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq ffmpeg espeak-ng >/dev/null
  fi
else
  echo "note: not root or no apt-get: install ffmpeg and espeak-ng yourself, or their tests skip" >&2
fi
python -m pip install -q torch==2.13.0
python -m pip install -q -e '.[data,test,classic]'
python -m pip install -q --no-deps spatialaudiometrics || echo "note: spatialaudiometrics (SONICOM heads) not installed; its tests skip" >&2
python -m pytest -p no:cacheprovider "$@"
