#!/usr/bin/env bash
# The long pass of accuracy.py on a GPU, the most telling runs first, for at most SECONDS seconds; every run that
# ends is in RESULTS_DIR (accuracy.py skips those on a rerun). What a run needs: accuracy.py's dependencies and the
# Fashion-MNIST idx files in SOURCE_DIR.
#
#   bash benchmarks/accuracy_gpu.sh RESULTS_DIR SOURCE_DIR SECONDS
set -u
results=$1 source=$2 end=$(($(date +%s) + $3))
batch() {  # one accuracy.py call for the runs named by patterns $1, stopped at the deadline
    local left=$((end - $(date +%s)))
    if [ "$left" -lt 30 ]; then echo "[accuracy_gpu] out of time before: $1"; return; fi
    timeout "$left" python benchmarks/accuracy.py --gpu --passes long --results_dir "$results" \
        --cache_dir "$results/.cache" --source_dir "$source" --runs "$1"
}
for seed in 0 1 2; do
    batch "long-gohsp-s80-seed$seed,long-torch_pruning-s80-seed$seed"
    # every layer_norm= ablation, and Torch-Pruning's recipe inside GOHSP (accuracy.TP_RECIPE) with either layer norm
    batch "long-ablation-layer_norm=*-s80-seed$seed,long-ablation-*importance_steps=1*-s80-seed$seed"
    [ "$seed" = 0 ] && batch "long-gohsp+kd-s80-seed0,long-torch_pruning+kd-s80-seed0"
done
batch "long-control"
