#!/usr/bin/env bash
# A real single-node Slurm on this machine, for testing `neuralscale sweep --executor slurm`:
# Debian's slurm-wlm and munge, a minimal slurm.conf with this host as the only node
# (proctrack/linuxproc, task/none, no accounting), the daemons started directly (no systemd).
#
#   scripts/slurm-local.sh up     install (apt) if needed, configure, start; waits until the node is idle
#   scripts/slurm-local.sh down   stop the daemons and remove the state
#   scripts/slurm-local.sh status sinfo
#
# Everything lives under $SLURM_LOCAL_DIR (default /tmp/neuralscale-slurm); the configuration
# is /etc/slurm/slurm.conf, which Slurm's commands read (a previous one is kept as
# slurm.conf.neuralscale-saved and put back by `down`). Needs root (apt, /etc, the daemons).
set -euo pipefail
dir=${SLURM_LOCAL_DIR:-/tmp/neuralscale-slurm}
conf=/etc/slurm/slurm.conf
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

# Starts a daemon with none of this script's descriptors: a caller that waits for this script by
# a pipe or socket (Foundation's Process does) would otherwise wait for the daemon too.
detached() {
    (
        for fd in $(ls "/proc/$BASHPID/fd"); do
            if [ "$fd" -gt 2 ]; then eval "exec $fd>&-"; fi
        done
        exec $sudo "$@" </dev/null >/dev/null 2>&1
    )
}

install() {
    local missing=()
    for p in slurm-wlm munge; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    if ((${#missing[@]})); then
        echo "installing: ${missing[*]}"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

up() {
    install
    down quiet
    $sudo mkdir -p "$dir"/{spool,state,log} /etc/slurm /run/munge /var/lib/munge /var/log/munge /etc/munge
    # munge: a key, the daemon (as root: no munge user is needed on a test machine).
    if [ ! -s /etc/munge/munge.key ]; then
        $sudo dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    $sudo chmod 400 /etc/munge/munge.key
    detached munged --force --key-file=/etc/munge/munge.key --socket=/run/munge/munge.socket.2 \
        --pid-file="$dir/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge.seed"
    local host cpus memory
    host=$(hostname -s)
    cpus=$(nproc)
    memory=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512 ))
    if [ -f "$conf" ] && [ ! -f "$conf.neuralscale-saved" ] && ! grep -q "neuralscale slurm-local" "$conf"; then
        $sudo cp "$conf" "$conf.neuralscale-saved"
    fi
    $sudo tee "$conf" >/dev/null <<EOF
# neuralscale slurm-local: a single-node test cluster (scripts/slurm-local.sh)
ClusterName=neuralscale-local
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
ReturnToService=2
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmdSpoolDir=$dir/spool
StateSaveLocation=$dir/state
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
MaxArraySize=10001
MinJobAge=600
NodeName=$host CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
    detached slurmctld -c -i
    detached slurmd -c
    for _ in $(seq 1 60); do
        if sinfo -h -o %T 2>/dev/null | grep -qx idle; then
            echo "slurm-local: node $host idle ($(sinfo -h -o '%P %D %c' | head -1) cpus), config $conf, state in $dir"
            return 0
        fi
        sleep 1
    done
    echo "slurm-local: the node did not become idle; see $dir/log" >&2
    sinfo >&2 || true
    return 1
}

down() {
    for f in slurmd slurmctld munged; do
        if [ -f "$dir/$f.pid" ]; then
            $sudo kill "$(cat "$dir/$f.pid")" 2>/dev/null || true
        fi
    done
    $sudo pkill -x slurmd 2>/dev/null || true
    $sudo pkill -x slurmctld 2>/dev/null || true
    sleep 1
    $sudo rm -rf "$dir"
    if [ -f "$conf.neuralscale-saved" ]; then
        $sudo mv "$conf.neuralscale-saved" "$conf"
    elif [ -f "$conf" ] && grep -q "neuralscale slurm-local" "$conf"; then
        $sudo rm -f "$conf"
    fi
    [ "${1:-}" = quiet ] || echo "slurm-local: stopped"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) sinfo ;;
    *) echo "usage: $0 up|down|status" >&2; exit 64 ;;
esac
