#!/usr/bin/env bash
# Per-stage overhead of the Slurm executor against the local one. One command:
#
#   bash bench/slurm-overhead/run.sh
#
# Runs the same generated recipe of STAGES (default 100) trivial command stages in a chain (each reads
# its predecessor's artifact and writes one small file), in a fresh workspace each time:
#   local   `executor local`
#   slurm   `executor slurm`
#   sbatch  the same chain without yiflow: a shell loop that submits each job with `sbatch` and polls
#           `squeue` every 50 ms until it is gone, then submits the next: what Slurm itself costs.
# and prints a table: totals, per-stage times, the overhead of slurm over local per stage, and how much
# of it is Slurm's (the sbatch loop) and how much yiflow's (the rest: writing the job script and
# journal, sbatch/squeue/scontrol calls, the poll interval, committing).
#
# Needs the Slurm cluster of scripts/slurm-up.sh (started here, and stopped again, when run as root and
# none is reachable). Settings: STAGES (100), YIFLOW (the yiflow binary; default: built with
# `cargo build --release -p yiflow`), RUNS (1; the table shows the median of RUNS runs).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
stages="${STAGES:-100}"
runs="${RUNS:-1}"
# The workspace must be on a filesystem Slurm's nodes share: the repository, not /tmp.
out="$root/bench/out/slurm-overhead"

if [[ -z ${YIFLOW:-} ]]; then
    cargo build --quiet --release -p yiflow
    YIFLOW="$root/target/release/yiflow"
fi
[[ -x $YIFLOW ]] || { echo "run.sh: $YIFLOW is not an executable" >&2; exit 1; }

if ! sinfo -h >/dev/null 2>&1; then
    if [[ $EUID -eq 0 ]]; then
        trap 'scripts/slurm-down.sh >/dev/null || true' EXIT
        scripts/slurm-up.sh
    else
        echo "run.sh: no Slurm cluster is reachable; start one with scripts/slurm-up.sh (as root)" >&2
        exit 1
    fi
fi

rm -rf "$out"
mkdir -p "$out"

# recipe EXECUTOR FILE: the chain.
recipe() {
    {
        echo "recipe chain {"
        echo "    workspace \"ws\""
        echo "    executor $1"
        echo "}"
        echo "stage s1 kind=command { run \"echo 1 > \$YIFLOW_OUT/n\" }"
        for ((i = 2; i <= stages; i++)); do
            echo "stage s$i kind=command { input s$((i - 1)); run \"echo $i | cat \$YIFLOW_IN_s$((i - 1))/n - > \$YIFLOW_OUT/n\" }"
        done
    } >"$2"
}

now() { date +%s.%N; }

# time_yiflow NAME: runs NAME.kdl in a fresh workspace; prints the seconds it took.
time_yiflow() {
    local dir="$out/$1" start end
    rm -rf "$dir/ws"
    start=$(now)
    "$YIFLOW" run "$dir/recipe.kdl" -j 1 >"$dir/run.log" 2>&1 || {
        echo "run.sh: yiflow run $1 failed; see $dir/run.log" >&2
        exit 1
    }
    end=$(now)
    grep -q "^$stages ran" "$dir/run.log" || { echo "run.sh: not every stage ran; see $dir/run.log" >&2; exit 1; }
    awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f\n", e - s }'
}

# time_sbatch: the chain as bare sbatch jobs, each waited for with squeue every 50 ms.
time_sbatch() {
    local dir="$out/sbatch" start end id i
    rm -rf "$dir"
    mkdir -p "$dir"
    echo 0 >"$dir/n0"
    start=$(now)
    for ((i = 1; i <= stages; i++)); do
        id=$(sbatch --parsable --job-name=bench --output="$dir/job.log" --open-mode=append --chdir="$dir" \
            --nodes=1 --ntasks=1 --no-requeue --wrap="echo $i | cat n$((i - 1)) - > n$i")
        while [[ -n $(squeue -h -j "$id" -o %i 2>/dev/null) ]]; do
            sleep 0.05
        done
    done
    end=$(now)
    [[ -s $dir/n$stages ]] || { echo "run.sh: the sbatch chain did not finish; see $dir/job.log" >&2; exit 1; }
    awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f\n", e - s }'
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

for name in local slurm; do
    mkdir -p "$out/$name"
    recipe "$name" "$out/$name/recipe.kdl"
done
: >"$out/times"
for ((r = 1; r <= runs; r++)); do
    echo "run $r of $runs: local, slurm, sbatch ($stages stages each)" >&2
    echo "local $(time_yiflow local)" >>"$out/times"
    echo "slurm $(time_yiflow slurm)" >>"$out/times"
    echo "sbatch $(time_sbatch)" >>"$out/times"
done
local_s=$(awk '$1 == "local" { print $2 }' "$out/times" | median)
slurm_s=$(awk '$1 == "slurm" { print $2 }' "$out/times" | median)
sbatch_s=$(awk '$1 == "sbatch" { print $2 }' "$out/times" | median)
sched=$(scontrol show config | awk -F' = ' '/^SchedulerParameters/ { print $2 }')

awk -v n="$stages" -v l="$local_s" -v s="$slurm_s" -v b="$sbatch_s" -v runs="$runs" -v sched="$sched" \
    -v cpus="$(nproc)" -v bin="$YIFLOW" 'BEGIN {
    printf "\n%d chained command stages, median of %d run(s); %d CPUs; yiflow %s\n", n, runs, cpus, bin
    printf "Slurm: one-node cluster of scripts/slurm-up.sh, SchedulerParameters=%s\n\n", sched
    printf "| run | total | per stage |\n|---|---:|---:|\n"
    printf "| yiflow, executor local | %.2f s | %.0f ms |\n", l, 1000 * l / n
    printf "| yiflow, executor slurm | %.2f s | %.0f ms |\n", s, 1000 * s / n
    printf "| bare sbatch + squeue every 50 ms, no yiflow | %.2f s | %.0f ms |\n", b, 1000 * b / n
    over = (s - l) / n
    printf "\nper-stage overhead of slurm over local: %.0f ms, of which Slurm (bare sbatch chain, less the local stage) %.0f ms and yiflow %.0f ms\n",
        1000 * over, 1000 * (b - l) / n, 1000 * (s - b) / n
}'
