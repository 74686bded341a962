#!/usr/bin/env bash
# Starts a one-node Slurm cluster on localhost for yiflow's Slurm executor tests: munged, slurmctld and
# slurmd, as root, without systemd. Stop it with scripts/slurm-down.sh.
#
#   scripts/slurm-up.sh                  # state, logs, pid files under /tmp/yiflow-slurm
#   YIFLOW_SLURM_DIR=/x scripts/slurm-up.sh
#
# Facts (Debian 12, slurm-wlm 22.05.8, munge 0.5.15; measured on a 2-core VM):
# - Install: `apt-get install --no-install-recommends slurm-wlm munge`, ~10 s; without systemd the
#   packages start nothing. munged runs as root with its own key and socket under $dir (the socket's
#   folder must be searchable by all); Slurm finds it through AuthInfo=socket=.
# - Start: 0.05-1.2 s until `sinfo` shows the node idle. Job ids restart at 1 (state is wiped).
# - Scheduling: the first job after a start waits ~3 s (the scheduler's first pass); later jobs start
#   within ~0.5 s: the scheduler ticks once a second with batch_sched_delay=0,sched_min_interval=0
#   (~2.4 s with Slurm's defaults). sbatch -> COMPLETED of a trivial job: ~0.5-1 s; jobs one after
#   another: ~1 s each. sbatch ~25 ms, squeue ~10 ms, scontrol ~20 ms, scancel ~15 ms a call.
# - Time limits count in whole minutes (--time=0:10 becomes 1:00) and slurmctld checks them about
#   every 30 s: a job with --time=1 is stopped 60-90 s after it started (measured 62-77 s). Then
#   SIGTERM, SIGKILL KillWait (here 2, default 30) s later; OverTimeLimit=0 adds no grace. The job is
#   COMPLETING meanwhile, then TIMEOUT (ExitCode 0:15, or 0:9 when it took SIGKILL), its log ending
#   "*** JOB N ON localhost CANCELLED AT ... DUE TO TIME LIMIT ***".
# - scancel: a job whose process dies on SIGTERM is CANCELLED ~0.3 s later; one whose shell waits on
#   a child, or that ignores SIGTERM, ~3-8 s later (proctrack/pgid polls the group at 1 s, 2 s, 4 s).
#   scancel of an unknown or finished job exits 0.
# - Failure: FAILED with ExitCode CODE:SIGNAL in `scontrol show job` (exit 3 -> 3:0, SIGSEGV ->
#   0:11). A job whose --output folder does not exist: FAILED 0:53, Reason=JobLaunchFailure, no log.
# - GPUs: a job with --gres=gpu:N (or --gpus=N) gets CUDA_VISIBLE_DEVICES from Slurm's gres/gpu plugin
#   even with task/none, plus SLURM_JOB_GPUS (srun: SLURM_STEP_GPUS), GPU_DEVICE_ORDINAL (same
#   indices) and SLURM_GPUS_ON_NODE=N. Indices follow gres.conf (nvidia0, nvidia1). A job without
#   GPUs gets none of these: Slurm even drops a CUDA_VISIBLE_DEVICES inherited from sbatch's
#   environment. Two 1-GPU jobs get 0 and 1; a third waits (Reason=Resources). Every job takes at
#   least 1 CPU, so at most $(nproc) jobs run at once whatever their GPUs.
# - Memory: CR_Core_Memory gives a job without --mem the whole node unless DefMemPerCPU is set
#   (RealMemory/CPUs here). --mem is enforced by polling (see JobAcctGatherParams below).
# - Finished jobs: `squeue` shows them only while COMPLETING, `squeue -t all` and `scontrol show job`
#   for MinJobAge s; `sacct` answers "Slurm accounting storage is disabled" (no slurmdbd).
#   `squeue -j ID` with one unknown id exits 1 ("Invalid job id specified"); with several it omits them.
# - Against a stopped controller every command fails after ~9 s ("Unable to contact slurm controller").
# - From issue 5: ProctrackType=proctrack/pgid and TaskPlugin=task/none need no cgroups
#   (proctrack/linuxproc left orphans after a fast scancel); slurmd wants `-N localhost`; GPUs without
#   a gres.conf File= are dropped (symlinks to /dev/null do); a drained node stays drained across
#   restarts unless the state folder is wiped. Ports 6817 (slurmctld) and 6818 (slurmd).
set -euo pipefail

dir=${YIFLOW_SLURM_DIR:-/tmp/yiflow-slurm}
gpus=2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

say() { printf 'slurm-up: %s\n' "$*"; }
started=0
die() {
    printf 'slurm-up: error: %s\n' "$*" >&2
    # Leave nothing half-started behind.
    if ((started)); then
        YIFLOW_SLURM_DIR=$dir "$here/slurm-down.sh" >/dev/null 2>&1 || true
    fi
    exit 1
}

# Whether the pid in FILE is alive and is the program NAME (guards against a recycled pid).
alive() {
    local file=$1 name=$2 pid
    [[ -s $file ]] || return 1
    pid=$(<"$file")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$name" ]]
}

# Client commands read /etc/slurm/slurm.conf unless SLURM_CONF says otherwise: point it at ours when
# nothing else lives there (or an older cluster of this script), so `sbatch` works in any shell.
etc_conf=/etc/slurm/slurm.conf
link_conf() {
    if [[ ! -e $etc_conf && ! -L $etc_conf ]] ||
        [[ -L $etc_conf && $(readlink "$etc_conf") == */etc/slurm.conf ]]; then
        mkdir -p /etc/slurm
        ln -sfn "$conf" "$etc_conf"
        say "$etc_conf -> $conf, so Slurm's commands find it in any shell"
    else
        say "$etc_conf belongs to another cluster: export SLURM_CONF=$conf"
    fi
}

[[ $EUID -eq 0 ]] || die "must run as root (the daemons run as root, without systemd)"
[[ $dir == /* ]] || die "YIFLOW_SLURM_DIR must be an absolute path, got '$dir'"

conf=$dir/etc/slurm.conf
run=$dir/run
export SLURM_CONF=$conf

# Already up: every daemon alive and the controller answering.
if alive "$run/munged.pid" munged && alive "$run/slurmctld.pid" slurmctld && alive "$run/slurmd.pid" slurmd; then
    if sinfo -h >/dev/null 2>&1; then
        say "already running (munged $(<"$run/munged.pid"), slurmctld $(<"$run/slurmctld.pid"), slurmd $(<"$run/slurmd.pid"))"
        link_conf
        exit 0
    fi
fi
# Partly up (a daemon died, or a previous start failed half-way): stop what is left, start afresh.
if [[ -d $run ]]; then
    YIFLOW_SLURM_DIR=$dir "$here/slurm-down.sh" >/dev/null
fi
# Another Slurm (another YIFLOW_SLURM_DIR, or a real one) holding the ports would make ours exit.
for port in 6817 6818; do
    if (: </dev/tcp/127.0.0.1/$port) 2>/dev/null; then
        die "port $port is taken (another Slurm runs here?); stop it first (slurm-down.sh with its YIFLOW_SLURM_DIR)"
    fi
done

# --- install -------------------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null ||
    ! command -v munged >/dev/null; then
    say "installing slurm-wlm and munge (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-cache show slurm-wlm >/dev/null 2>&1; then
        apt-get update -qq
    fi
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >"${TMPDIR:-/tmp}/yiflow-slurm-apt.log" 2>&1 ||
        die "apt-get install slurm-wlm munge failed; see ${TMPDIR:-/tmp}/yiflow-slurm-apt.log"
fi

# --- folders -------------------------------------------------------------------------------------
# State is wiped on every start: slurmctld remembers a drained node across restarts otherwise.
rm -rf "$dir/state" "$run"
mkdir -p "$dir/etc" "$dir/state/slurmctld" "$dir/state/slurmd" "$dir/log" "$dir/dev" "$run" "$dir/munge"
# munged wants its socket folder (and the folders above) searchable by all, its key private.
chmod 0755 "$dir" "$run"
chmod 0700 "$dir/munge"
for log in "$dir"/log/*.log; do
    [[ -e $log ]] && mv -f "$log" "$log.old"
done
if [[ ! -s $dir/munge/munge.key ]]; then
    mungekey --create --keyfile="$dir/munge/munge.key"
fi

# Fake GPUs: gres.conf needs a File= per GPU (GPUs without one are dropped); /dev/null symlinks do.
for ((i = 0; i < gpus; i++)); do
    ln -sfn /dev/null "$dir/dev/nvidia$i"
done

# --- configuration -------------------------------------------------------------------------------
# The node's hardware as slurmd sees it (CPUs, sockets, cores, threads, RealMemory), under our name.
hw=$(slurmd -C | head -n1 | sed -e 's/^NodeName=[^ ]* //')
cpus=$(sed -n 's/.*\bCPUs=\([0-9]*\).*/\1/p' <<<"$hw")
mem=$(sed -n 's/.*\bRealMemory=\([0-9]*\).*/\1/p' <<<"$hw")
[[ -n $cpus && -n $mem ]] || die "could not read CPUs and RealMemory from 'slurmd -C': $hw"
# Without a default, a job that asks for no memory gets the whole node and jobs never share it.
def_mem=$((mem / cpus))

cat >"$conf" <<EOF
# Written by yiflow's scripts/slurm-up.sh; rewritten on every start.
ClusterName=yiflow-test
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$run/munge.socket.2
StateSaveLocation=$dir/state/slurmctld
SlurmdSpoolDir=$dir/state/slurmd
SlurmctldPidFile=$run/slurmctld.pid
SlurmdPidFile=$run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups here: pgid tracking kills a job's whole process group (linuxproc left orphans).
ProctrackType=proctrack/pgid
TaskPlugin=task/none
# Memory requests are enforced by polling (no cgroups): a job over its --mem is killed (SIGKILL) within
# a second, ends FAILED with ExitCode 0:9 and "Exceeded job memory limit" in its log; OUT_OF_MEMORY
# itself needs cgroups.
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=1
JobAcctGatherParams=OverMemoryKill
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$def_mem
GresTypes=gpu
ReturnToService=2
MailProg=/bin/true
# Finished jobs stay visible to squeue/scontrol for 10 minutes.
MinJobAge=600
# A job past its time limit gets SIGTERM, then SIGKILL KillWait seconds later.
KillWait=2
OverTimeLimit=0
InactiveLimit=0
NodeName=localhost NodeAddr=127.0.0.1 $hw Gres=gpu:$gpus State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF

{
    echo "# Written by yiflow's scripts/slurm-up.sh; rewritten on every start."
    echo "AutoDetect=off"
    for ((i = 0; i < gpus; i++)); do
        echo "NodeName=localhost Name=gpu File=$dir/dev/nvidia$i"
    done
} >"$dir/etc/gres.conf"

# --- start ---------------------------------------------------------------------------------------
start=$(date +%s.%N)
started=1
munged --socket="$run/munge.socket.2" --key-file="$dir/munge/munge.key" --pid-file="$run/munged.pid" \
    --log-file="$dir/log/munged.log" --seed-file="$dir/munge/munged.seed" ||
    die "munged did not start; see $dir/log/munged.log"
slurmctld -f "$conf" || die "slurmctld did not start; see $dir/log/slurmctld.log"
slurmd -f "$conf" -N localhost || die "slurmd did not start; see $dir/log/slurmd.log"

# Wait for the node to come up idle (a daemon that dies on a bad config is reported with its log).
state=
for ((i = 0; i < 300; i++)); do
    state=$(sinfo -h -N -n localhost -o %T 2>/dev/null || true)
    [[ $state == idle ]] && break
    if ((i > 5)); then
        for d in slurmctld slurmd; do
            alive "$run/$d.pid" "$d" || die "$d exited; last lines of $dir/log/$d.log:
$(tail -n 20 "$dir/log/$d.log" 2>/dev/null)"
        done
    fi
    sleep 0.1
done
[[ $state == idle ]] || die "node 'localhost' is '${state:-unknown}', not idle, after 30 s; see $dir/log/"
took=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.2f", e - s }')

say "started in ${took} s: munged $(<"$run/munged.pid"), slurmctld $(<"$run/slurmctld.pid"), slurmd $(<"$run/slurmd.pid")"
say "node localhost: $cpus CPUs, ${mem} MB, $gpus fake GPUs (gpu:$gpus); partition debug; cluster yiflow-test"
say "config $conf, logs $dir/log/"
link_conf
