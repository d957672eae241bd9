#!/usr/bin/env bash
# accuracy.py's runs on one GPU, side by side: one process per run, all started at once (these models are small:
# on an H100, six or seven runs of the long pass at once took 2.3-3.3 min each, one alone 2.6 min). Each is
# stopped after SECONDS; every run that ends is in RESULTS_DIR (accuracy.py skips those on a rerun), and the logs
# in RESULTS_DIR/.cache/gpu-logs/. What a run needs: accuracy.py's dependencies and the Fashion-MNIST idx files
# in SOURCE_DIR. A RUN is a name or pattern of `accuracy.py --passes PASS --list`.
#
#   bash benchmarks/accuracy_gpu.sh RESULTS_DIR SOURCE_DIR SECONDS PASS RUN [RUN...]
#   bash benchmarks/accuracy_gpu.sh benchmarks/results/accuracy_h100_dense data/fmnist-idx 450 long \
#       long-gohsp-s80-seed2 long-torch_pruning-s80-seed2 'long-ablation-layer_norm=*-s80-seed2'
set -u
if [ $# -lt 5 ]; then
    echo "usage: bash benchmarks/accuracy_gpu.sh RESULTS_DIR SOURCE_DIR SECONDS PASS RUN [RUN...]" >&2
    exit 2
fi
results=$1 source=$2 seconds=$3 pass=$4
shift 4
run() {  # accuracy.py on the GPU for the runs named by pattern $1, stopped after SECONDS
    timeout "$seconds" "${PYTHON:-python3}" benchmarks/accuracy.py --gpu --passes "$pass" --results_dir "$results" \
        --cache_dir "$results/.cache" --source_dir "$source" --runs "$1"
}
logs=$results/.cache/gpu-logs
mkdir -p "$logs" && rm -f "$logs"/*.log
# the dense model first, alone: if it is not cached yet, one process trains it (the others would each train it)
run "*dense" || exit 1
pids=() index=0
for pattern in "$@"; do
    index=$((index + 1))
    OMP_NUM_THREADS=2 run "$pattern" > "$logs/$index.log" 2>&1 &
    pids+=($!)
    echo "[accuracy_gpu] $index: $pattern"
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
grep -h "^\[accuracy\]" "$logs"/*.log
exit $status
