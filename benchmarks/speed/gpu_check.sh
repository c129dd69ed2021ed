#!/usr/bin/env bash
# The GPU checks of stage 2 (speed, precision) and stage 1 (throughput) as one prepared
# run, for a session that is lent a CUDA machine (device tool: run it from the repository
# root, e.g.
#   bash benchmarks/speed/gpu_check.sh            # everything, ~9 min on one H200 (estimated)
#   bash benchmarks/speed/gpu_check.sh tests step # only some parts
#   bash benchmarks/speed/gpu_check.sh host inat  # a second call: host-memory features, iNat shape
#   bash benchmarks/speed/gpu_check.sh tf32       # with carry runs/panel/{fm-ce-r500,fm-digits,emb-c100-d512}
# ). Each part writes its table to $OUT (the device tool's folder that comes back) or
# runs/gpu, and has its own time limit, so one slow part cannot eat the others.
#
# Parts: tests  the gpu-marked tests (estimator, 10 bases x depth 0/1, precision,
#               selection, save/load across devices, stage-1 epochs) on cuda
#        step   one flow-filter step vs a bare step, fp32/tf32/bf16, torch.compile
#        stage2 stage 2 at ImageNet-LT shape, paper preset, fp32 and bf16
#        host   the same with the training features kept in host memory (features_on)
#        inat   stage 2 at iNaturalist-2018 shape (437,513 x 2048, 8,142 classes), bf16
#        tf32   accuracy and fit time of tf32 against fp32 on three panel sets x 3 seeds
#               (needs carry: runs/panel/fm-ce-r500 runs/panel/fm-digits
#               runs/panel/emb-c100-d512, 25 MB): evidence for a tf32 default on CUDA
#        train  dlsa train throughput, ResNet-50 at 224 px, bf16, vs a bare loop
set -u -o pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
out="${OUT:-runs/gpu}"
dev="${DEVICE:-cuda}"  # DEVICE=cpu: a smoke run of the script itself on a CPU machine
mkdir -p "$out"
parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(tests step stage2 train)
python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name() \
    if torch.cuda.is_available() else 'no CUDA device')" | tee "$out/device.txt"

for part in "${parts[@]}"; do
    start=$SECONDS
    case "$part" in
    tests)
        timeout 180 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_devices.py \
            2>&1 | tail -n 30 | tee "$out/tests.log" ;;
    step)
        timeout 120 python3 -m benchmarks.speed.bench_filter_step --device "$dev" --compile \
            --shapes 512,500,256 2048,500,128 2048,500,1024 2>&1 | tee "$out/filter_step.md" ;;
    stage2)
        timeout 240 python3 -m benchmarks.speed.bench_stage2 --device "$dev" --shape imagenet-lt \
            --precision fp32 bf16 2>&1 | tee "$out/stage2.md" ;;
    host)
        timeout 240 python3 -m benchmarks.speed.bench_stage2 --device "$dev" --shape imagenet-lt \
            --precision fp32 --features-on host 2>&1 | tee "$out/stage2_host.md" ;;
    inat)
        timeout 590 python3 -m benchmarks.speed.bench_stage2 --device "$dev" --shape inat18 \
            --precision bf16 2>&1 | tee "$out/stage2_inat.md" ;;
    tf32)
        timeout 400 python3 -m benchmarks.speed.bench_precision --panel runs/panel --device "$dev" \
            --precision tf32 --sets fm-ce-r500 fm-digits emb-c100-d512 \
            2>&1 | tee "$out/precision_tf32.md" ;;
    train)
        timeout 120 python3 -m benchmarks.speed.bench_train --arch resnet50 --size 224 \
            --image-side 320 --n-images 2048 --batch-size 128 --workers 8 --device "$dev" \
            --epochs 2 --bf16 2>&1 | tee "$out/train.md" ;;
    *)
        echo "unknown part: $part (tests, step, stage2, host, inat, tf32, train)" >&2
        exit 2 ;;
    esac
    echo "[$part: $((SECONDS - start)) s, exit ${PIPESTATUS[0]}]"
done
