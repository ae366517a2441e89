#!/bin/bash
# The project's GPU session in one command (at most 8 minutes on one H100 with the defaults below):
#   1. tools/bench/throughput.py on the GPU: images/s of the encoder alone, the full training step and an epoch
#      through the data path, fp32 / bf16 / bf16 + channels_last, for digits, fashion_mnist.yaml's encoder and a
#      CIFAR-shaped ResNet-18 (docs/scale.md's table, GPU rows);
#   2. tools/bench/gpu_check.py (the other GPU-only paths: fp16 with its scaler, a short train_isl.py, kNN on the GPU);
#   3. a short Fashion-MNIST ISL schedule with ResNet-18 at the native 28 px (fashion_mnist.yaml's schedule: 10 + 6
#      epochs, 1 GAN/mining round), seed 0, eval.val_fraction=0.1, the miners of VARIANTS side by side on the one
#      GPU, each printing its kNN, linear probe, NMI and ACC.
# Results land in $OUT (console.log, throughput.json, runs.tgz without checkpoints); docs/results/
# fashion_mnist_resnet18_gpu/ holds the committed copy of an earlier session.
#
#   bash tools/bench/gpu_session.sh                          # data from Debian's dataset-fashion-mnist package
#   FM_FROM=DIR OUT=/tmp/out bash tools/bench/gpu_session.sh # a folder with the four IDX files (.gz or not)
# Knobs (environment): THROUGHPUT_S (seconds for part 1; 0 skips it), GPU_CHECK_S (part 2; 0 skips it), STEPS
# (timed steps per setting), RUN_S (seconds each run of part 3 may take), VARIANTS ("gan knn npid"), NW (loader
# workers per run), DEV (cuda), EXTRA (more --set overrides for every run, e.g. "train.epochs_first=24").
export PYTHONUNBUFFERED=1
O=${OUT:-/tmp/out}; mkdir -p "$O"
exec > >(tee "$O/console.log") 2>&1
date; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, torchvision, sklearn; print('torch', torch.__version__, 'tv', torchvision.__version__, 'sklearn', sklearn.__version__, 'cuda', torch.cuda.is_available())"
python3 -c "import faiss" 2>/dev/null && echo "faiss present" || echo "faiss absent"
python3 -c "import pytorch_metric_learning" 2>/dev/null && echo "pml present" || echo "pml absent"
python3 tools/prepare_data.py fashion_mnist --from "${FM_FROM:-/usr/share/datasets/fashion-mnist}" --data-root /tmp/fmroot || exit 1
echo "== throughput $(date +%T)"
[ "${THROUGHPUT_S:-140}" != 0 ] && timeout "${THROUGHPUT_S:-140}" python3 tools/bench/throughput.py --device "${DEV:-cuda}" \
  --steps "${STEPS:-10}" --data-root /tmp/fmroot --json "$O/throughput.json"
echo "throughput rc=$?"
echo "== gpu_check $(date +%T)"
[ "${GPU_CHECK_S:-60}" != 0 ] && timeout "${GPU_CHECK_S:-60}" python3 tools/bench/gpu_check.py --steps "${STEPS:-10}"
echo "gpu_check rc=$?"
echo "== fashion_mnist resnet18 ($(date +%T))"
COMMON="model.arch=resnet18 data.image_size=0 data.num_workers=${NW:-4} train.device=${DEV:-cuda} eval.val_fraction=0.1 seed=0 experiment=fashion_mnist_resnet18_short ${EXTRA}"
declare -A V=( [gan]="" [knn]="isl.mining.strategy=knn" [npid]="isl.mining.strategy=none" )
pids=()  # wait on the runs alone: a bare `wait` would also wait on the tee above
for v in ${VARIANTS:-gan knn npid}; do
  OMP_NUM_THREADS=4 timeout "${RUN_S:-240}" python3 tools/train_isl.py --cfg fashion_mnist.yaml --data-root /tmp/fmroot \
    --output-root "/tmp/runs/$v" --no-tensorboard --quiet --set $COMMON ${V[$v]} > "/tmp/runs_$v.out" 2>&1 &
  pids+=($!)
done
wait "${pids[@]}"
for v in ${VARIANTS:-gan knn npid}; do echo "-- $v"; tail -3 "/tmp/runs_$v.out"; done
cp /tmp/runs_*.out /tmp/runs/ 2>/dev/null
tar czf "$O/runs.tgz" --exclude='*.pt' --exclude='events.*' -C /tmp runs
date
