#!/usr/bin/env bash
# Stops the test cluster that scripts/slurm-up.sh started: cancels its jobs, then stops exactly the
# munged, slurmctld and slurmd whose pid files it wrote (nothing else). Safe to run when nothing runs.
# State and logs stay under YIFLOW_SLURM_DIR (default /tmp/yiflow-slurm) for reading afterwards.
set -euo pipefail

dir=${YIFLOW_SLURM_DIR:-/tmp/yiflow-slurm}
run=$dir/run
conf=$dir/etc/slurm.conf
export SLURM_CONF=$conf

say() { printf 'slurm-down: %s\n' "$*"; }

# Prints the pid in FILE when it is alive and is the program NAME (guards against a recycled pid).
live_pid() {
    local file=$1 name=$2 pid
    [[ -s $file ]] || return 1
    pid=$(<"$file")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$name" ]] || return 1
    echo "$pid"
}

# Stops the daemons named in "NAME:PIDFILE" arguments together: SIGTERM, then SIGKILL after 10 s.
stop() {
    local entry name file pid i
    local -a names=() pids=()
    for entry in "$@"; do
        name=${entry%%:*} file=${entry#*:}
        if pid=$(live_pid "$file" "$name"); then
            kill -TERM "$pid" 2>/dev/null || true
            names+=("$name") pids+=("$pid")
        fi
        rm -f "$file"
    done
    if ((${#pids[@]} == 0)); then
        say "no daemon of this cluster was running"
        return
    fi
    for ((i = 0; i < 100; i++)); do
        alive=0
        for pid in "${pids[@]}"; do
            [[ -d /proc/$pid ]] && alive=1
        done
        ((alive)) || break
        sleep 0.1
    done
    for i in "${!pids[@]}"; do
        if [[ -d /proc/${pids[i]} ]]; then
            kill -KILL "${pids[i]}" 2>/dev/null || true
            say "${names[i]} (${pids[i]}) ignored SIGTERM for 10 s: killed"
        else
            say "stopped ${names[i]} (${pids[i]})"
        fi
    done
}

[[ $EUID -eq 0 ]] || {
    echo "slurm-down: error: must run as root (the daemons run as root)" >&2
    exit 1
}

# Jobs first, while the controller still answers: slurmd leaves running job steps behind otherwise.
if live_pid "$run/slurmctld.pid" slurmctld >/dev/null && live_pid "$run/slurmd.pid" slurmd >/dev/null; then
    mapfile -t jobs < <(squeue -h -o %A 2>/dev/null || true)
    if ((${#jobs[@]})); then
        scancel "${jobs[@]}" 2>/dev/null || true
        for ((i = 0; i < 150; i++)); do
            [[ -z $(squeue -h -o %A 2>/dev/null) ]] && break
            sleep 0.1
        done
        left=$(squeue -h -o %A 2>/dev/null | tr '\n' ' ')
        if [[ -n $left ]]; then
            say "jobs still ending after 15 s: $left"
        else
            say "cancelled ${#jobs[@]} job(s): ${jobs[*]}"
        fi
    fi
fi

stop "slurmd:$run/slurmd.pid" "slurmctld:$run/slurmctld.pid" "munged:$run/munged.pid"

# The /etc/slurm/slurm.conf link that slurm-up.sh made, if it still points at this cluster.
etc_conf=/etc/slurm/slurm.conf
if [[ -L $etc_conf && $(readlink "$etc_conf") == "$conf" ]]; then
    rm -f "$etc_conf"
fi
say "down ($dir)"
