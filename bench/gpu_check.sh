#!/usr/bin/env bash
# gpu_check.sh: everything to run on a machine with an NVIDIA GPU, in one command.
#
#   bash bench/gpu_check.sh [OUTDIR]        (OUTDIR defaults to $OUT, else ./gpu-check)
#
# 1. builds and installs nanocnn with its CUDA backend, using the machine's own python3 and its
#    installed build tools (no downloads: pip install --no-build-isolation --no-deps .), for the
#    GPU's own architecture unless CUDAARCHS is set;
# 2. checks the extension holds machine code for that architecture (cuobjdump);
# 3. runs the whole test suite, CUDA included (torch with CUDA is the reference; TF32 off);
# 4. runs compute-sanitizer (memcheck, racecheck) over the CUDA op tests, unless NO_SANITIZER=1
#    (each capped at SANITIZER_TIMEOUT seconds, default 150);
# 5. runs the GPU benchmarks (per op, and end to end) against PyTorch;
# and prints a short summary last. Logs and results land in OUTDIR.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-gpu-check}}
mkdir -p "$out"
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
summary=()
note() { summary+=("$1"); echo "== $1"; }

nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d ' .')
export CUDAARCHS=${CUDAARCHS:-$cc}

start=$SECONDS
if NANOCNN_CUDA=ON "$py" -m pip install --no-build-isolation --no-deps -v . >"$out/build.log" 2>&1; then
  note "build: ok in $((SECONDS - start)) s (CUDAARCHS=$CUDAARCHS)"
else
  tail -60 "$out/build.log"
  note "build: FAILED (see build.log)"
  printf '%s\n' "${summary[@]}"
  exit 1
fi

# Run from outside the source tree so the installed package (not ./python) is imported.
so=$(cd /tmp && "$py" -c 'import nanocnn._C as c; print(c.__file__)')
note "CUDA available: $(cd /tmp && "$py" -c 'import nanocnn as nc; print(nc.cuda_available(), nc.cuda_device_count())')"
note "device code in the extension: $(cuobjdump --list-elf "$so" 2>/dev/null | grep -o 'sm_[0-9a-z]*' | sort -u | tr '\n' ' ')"

start=$SECONDS
(cd /tmp && "$py" -m pytest -q -p no:cacheprovider "$OLDPWD/tests" 2>&1) | tee "$out/tests.log" | tail -30
note "tests ($((SECONDS - start)) s): $(grep -E '^[0-9]+ (passed|failed)|(passed|failed|error).* in ' "$out/tests.log" | tail -1)"

if [ "${NO_SANITIZER:-0}" != 1 ] && command -v compute-sanitizer >/dev/null; then
  for tool in memcheck racecheck; do
    start=$SECONDS
    (cd /tmp && timeout "${SANITIZER_TIMEOUT:-150}" compute-sanitizer --tool "$tool" --error-exitcode 99 \
      "$py" -m pytest -q -x -p no:cacheprovider -k cuda "$OLDPWD/tests/test_cuda.py" \
      "$OLDPWD/tests/test_random_shapes.py" 2>&1) >"$out/sanitizer-$tool.log"
    rc=$?
    note "compute-sanitizer $tool (rc $rc, $((SECONDS - start)) s): $(grep -E 'ERROR SUMMARY|passed|failed' "$out/sanitizer-$tool.log" | tail -2 | tr '\n' ' ')"
  done
fi

for kind in ops train; do
  start=$SECONDS
  if "$py" bench/$kind.py --device cuda --out "$out" >"$out/bench-$kind.log" 2>&1; then
    note "bench/$kind.py on the GPU: ok ($((SECONDS - start)) s), table in $kind-cuda.md"
  else
    tail -30 "$out/bench-$kind.log"
    note "bench/$kind.py on the GPU: FAILED (see bench-$kind.log)"
  fi
done

echo
echo "================ summary ================"
printf '%s\n' "${summary[@]}"
for f in "$out/ops-cuda.md" "$out/train-cuda.md"; do if [ -f "$f" ]; then cat "$f"; fi; done
