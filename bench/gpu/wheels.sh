#!/usr/bin/env bash
# Collect the wheels bench/gpu/run.sh installs on a lent GPU machine into bench/gpu/wheels/ (git-ignored).
#
#   bench/gpu/wheels.sh            # then carry bench/gpu/wheels with the source tree
#
# The lent machine has Python 3.12 with torch 2.11 (CUDA), torchaudio, torchvision, timm,
# transformers 5.17, peft, accelerate, scipy and scikit-learn, and no network. It lacks DeepSpeed
# (no wheel on PyPI: built here with `pip wheel --no-deps`, ops not prebuilt, so nothing in it
# depends on this machine's torch or CUDA) and DeepSpeed's own dependencies; ausweep asks for a newer
# transformers than 5.17 (pyproject.toml), and the extraction worker reads audio with soundfile. Part 4 compares
# ausweep's encoders with the papers' reference packages (hear21passt, laion_clap, panns_inference, torchlibrosa).
# Every version is the one installed here, pinned exactly; compiled wheels are the manylinux
# cp312 builds. The tree plus these wheels must fit the 64 MiB a lent machine takes: checked at the end.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
DEST=${1:-$HERE/wheels}
PY=${PYTHON:-python}
LIMIT=$((64 * 1024 * 1024))

version() { "$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$1"; }

# DeepSpeed's requirements (pip show deepspeed) that the lent machine may lack, pydantic's (pydantic_core needs
# typing_extensions >= 4.14.1, newer than torch asks for), soundfile's;
# transformers + huggingface_hub are the upgrade (run.sh falls back to the machine's own if they fail to import).
# The reference packages of part 4 (ausweep.models.reference_equivalence), pure Python, as the unit tests pin them
# (Makefile's REFERENCES): the lent machine has their torchaudio, torchvision, timm, scipy, scikit-learn, tqdm and
# regex. Not carried: librosa (torchlibrosa builds its STFT kernels and mel matrix with it; it needs numba and
# llvmlite, about 45 MB, so the check stands in for its three functions) and matplotlib (imported, unused).
PACKAGES=(pydantic pydantic_core annotated_types typing_inspection typing_extensions hjson py-cpuinfo msgpack ninja einops psutil
          soundfile cffi pycparser transformers huggingface_hub hear21passt laion_clap panns_inference torchlibrosa)
# huggingface_hub: the newest 1.x, which both transformers 5.17 (<2.0) and ausweep's transformers (>=1.31) accept;
# the 2.x installed here would need httpx2, which the lent machine does not have.
HF_HUB_VERSION=1.33.0

rm -rf "$DEST.tmp"
mkdir -p "$DEST.tmp"
echo "deepspeed $(version deepspeed): building a wheel without ops (DS_BUILD_OPS=0)"
# --no-build-isolation: DeepSpeed's setup.py imports torch; this machine's (CPU) torch serves, and
# with no ops built the wheel holds Python only.
DS_BUILD_OPS=0 "$PY" -m pip wheel --quiet --no-deps --no-build-isolation "deepspeed==$(version deepspeed)" -w "$DEST.tmp"

for pkg in "${PACKAGES[@]}"; do
  v=$(version "$pkg")
  [ "$pkg" = huggingface_hub ] && v=$HF_HUB_VERSION
  echo "$pkg $v"
  "$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    -d "$DEST.tmp" "$pkg==$v"
done

(cd "$DEST.tmp" && sha256sum ./*.whl | sed 's#  \./#  #' > SHA256SUMS)
rm -rf "$DEST"
mv "$DEST.tmp" "$DEST"

wheels=$(du -cb "$DEST"/*.whl | tail -1 | cut -f1)
tree=$(git -C "$REPO" archive HEAD | wc -c)
echo
ls -l "$DEST"
echo "wheels: $wheels bytes ($((wheels / 1024)) KiB); tree (git archive HEAD): $tree bytes; together $(((wheels + tree) / 1024)) KiB of $((LIMIT / 1024)) KiB"
if [ $((wheels + tree)) -gt $LIMIT ]; then
  echo "too large for a lent machine's 64 MiB" >&2
  exit 1
fi
