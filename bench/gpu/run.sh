#!/usr/bin/env bash
# Measure ausweep's GPU paths in one call (see bench/gpu/run.py for the parts and the budget).
#
#   bench/gpu/run.sh --out results/              # on a lent GPU machine, with bench/gpu/wheels carried
#   bench/gpu/run.sh --cpu --tiny --out tmp/     # anywhere: every part on the CPU at tiny sizes (CI)
#
# When bench/gpu/wheels (from bench/gpu/wheels.sh) holds wheels and this Python is the 3.12 they were
# collected for, they are installed offline (--no-deps --no-index) into bench/gpu/.site, which goes
# in front of the system's packages on PYTHONPATH (torch and the rest stay the machine's own).
# transformers and huggingface_hub are an upgrade: if transformers does not import with them, they
# are removed again and the machine's own are used (said on stderr and in results.json).
# AUSWEEP_GPU_WHEELS=0 skips the wheels; PYTHON picks the interpreter (default: python3 or python, whichever
# imports torch).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PY=${PYTHON:-}
if [ -z "$PY" ]; then  # the interpreter that has torch (a lent machine's may be python or python3)
  for candidate in python3 python; do
    if command -v "$candidate" >/dev/null && "$candidate" -c "import torch" 2>/dev/null; then PY=$candidate; break; fi
  done
  PY=${PY:-python3}
fi
WHEELS=$HERE/wheels
SITE=$HERE/.site

install() {  # install TARGET WHEEL...: pip if there is one, else unpack (a wheel is a site-packages tree)
  local target=$1
  shift
  if "$PY" -m pip --version >/dev/null 2>&1; then
    "$PY" -m pip install --quiet --no-deps --no-index --no-compile --target "$target" "$@"
  else
    for w in "$@"; do "$PY" -m zipfile -e "$w" "$target"; done
  fi
}

if [ "${AUSWEEP_GPU_WHEELS:-1}" != 0 ] && compgen -G "$WHEELS/*.whl" >/dev/null; then
  if [ "$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" != 3.12 ]; then
    echo "run.sh: the carried wheels are for Python 3.12, this is $("$PY" -V 2>&1); using this environment's packages" >&2
  else
    stamp=$(cd "$WHEELS" && ls ./*.whl | sha256sum | cut -c1-16)
    if [ "$(cat "$SITE/.stamp" 2>/dev/null)" != "$stamp" ]; then
      rm -rf "$SITE"
      mkdir -p "$SITE"
      core=()
      for w in "$WHEELS"/*.whl; do
        case $(basename "$w") in transformers-* | huggingface_hub-*) ;; *) core+=("$w") ;; esac
      done
      install "$SITE" "${core[@]}"
      # the upgrade set apart, so that it can be taken back
      mkdir -p "$SITE/.upgrade"
      upgrade=("$WHEELS"/transformers-*.whl "$WHEELS"/huggingface_hub-*.whl)
      install "$SITE/.upgrade" "${upgrade[@]}"
      if PYTHONPATH="$SITE/.upgrade:$SITE${PYTHONPATH:+:$PYTHONPATH}" "$PY" -c "import transformers, transformers.models.qwen2" 2>"$SITE/upgrade.err"; then
        (cd "$SITE/.upgrade" && cp -r . "$SITE/")
      else
        echo "run.sh: the carried transformers does not import here ($(tail -1 "$SITE/upgrade.err")); using the machine's own" >&2
      fi
      rm -rf "$SITE/.upgrade"
      echo "$stamp" >"$SITE/.stamp"
    fi
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  fi
fi

exec "$PY" "$HERE/run.py" "$@"
