#!/usr/bin/env bash
# The GPU benchmark as one command a machine with a CUDA GPU runs as it is, in at most five
# minutes: scripts/bench_gpu.py (genlab against a plain PyTorch loop on the same device, for
# conv_ae, dcgan, vae and pix2pix, plus one MNIST epoch of conv_ae), with the repository's
# .venv/bin/python where there is one, else python3 (python). Every argument goes through to
# bench_gpu.py (--help lists them); without --json it writes bench/gpu.json, which
# `scripts/bench_table.py bench/gpu.json` turns into the README's GPU table.
#
#   bash scripts/bench_gpu.sh
#   bash scripts/bench_gpu.sh --models conv_ae,dcgan --compile --json bench/gpu_compiled.json
#   BENCH_GPU_TIMEOUT=600 bash scripts/bench_gpu.sh --repeats 5
#
# BENCH_GPU_TIMEOUT (seconds, default 300) is the hard limit; bench_gpu.py itself starts no
# further repeat after --budget seconds (default 240), and writes its JSON after each model,
# so a run the limit stops keeps what it had measured.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -x "$root/.venv/bin/python" ]]; then
    python="$root/.venv/bin/python"
elif command -v python3 >/dev/null 2>&1; then
    python="$(command -v python3)"
else
    python="$(command -v python)" || {
        echo "bench_gpu.sh: no .venv/bin/python, python3 or python found" >&2
        exit 127
    }
fi
limit="${BENCH_GPU_TIMEOUT:-300}"

args=("$@")
wants_json=1
for arg in "$@"; do
    case "$arg" in
        --json | --json=*) wants_json=0 ;;
        -h | --help) wants_json=0 ;;
    esac
done
if ((wants_json)); then
    args+=(--json "$root/bench/gpu.json")
fi

# genlab importable for a python without it installed; relative paths stay the caller's.
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
status=0
# --kill-after: a process that ignores SIGTERM (stuck in a CUDA call) is killed 10 s later.
timeout --kill-after=10 "$limit" "$python" "$root/scripts/bench_gpu.py" "${args[@]}" || status=$?
if ((status == 124 || status == 137)); then
    echo "bench_gpu.sh: stopped after the ${limit}-second limit (BENCH_GPU_TIMEOUT);" \
        "the JSON holds the models measured before it" >&2
fi
exit "$status"
