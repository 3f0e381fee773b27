#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for trying the SLURM launcher
# (conf/hydra/launcher/slurm.yaml) and the pre-emption / requeue / time-limit paths without a
# real cluster.
#
#   scripts/local_slurm.sh start    # install (apt) if needed, configure, start, wait until idle
#   scripts/local_slurm.sh status   # each daemon running or not, then sinfo (exit 0: all up, 3: not)
#   scripts/local_slurm.sh stop     # cancel the cluster's jobs, stop the daemons
#
# Both start and stop are idempotent. Needs root (apt-get, daemons running as root).
#
# What it runs: munged, a private MariaDB (datadir under the cluster folder, 127.0.0.1 only),
# slurmdbd (so that `sacct` works: submitit polls job states with it), slurmctld and slurmd.
# The node is this machine as `slurmd -C` sees it at start time (CPUs, RealMemory), no GPUs.
# Partitions: `local` (default) and `urgent` (same node, higher PriorityTier): a job in `urgent`
# that needs the node pre-empts (requeues, PreemptMode=REQUEUE) jobs of `local`.
#
# Environment (all optional):
#   CLAMP_SLURM_DIR         cluster folder: config, state, spool, logs, database  [/var/tmp/clamp-slurm]
#   CLAMP_SLURM_ACCOUNTING  1: slurmdbd + MariaDB (sacct works); 0: no accounting         [1]
#   CLAMP_SLURM_KILLWAIT    seconds between SIGTERM and SIGKILL when a job is stopped      [30]
#   CLAMP_SLURM_CLUSTER     ClusterName                                                    [clamp]
#   CLAMP_SLURM_DB_PORT     TCP port of the private MariaDB on 127.0.0.1                   [6833]
#   CLAMP_SLURM_TIMEOUT     seconds start waits for the node to become idle                [60]
#   CLAMP_SLURM_CRED_EXPIRE AuthInfo=cred_expire: also the least time a requeued job waits
#                           before it may start again (Slurm's default, on real clusters: 120) [10]
#   CLAMP_SLURM_KEEP_JOBS   1: stop leaves jobs alone (they survive a daemon restart)      [0]
#
# Client commands (sinfo, sbatch, sacct, ...) read /etc/slurm/slurm.conf, which start makes a
# link to the generated config; when that file exists and is not ours, start leaves it and you
# must `export SLURM_CONF=$CLAMP_SLURM_DIR/etc/slurm.conf`.
set -euo pipefail

ROOT=${CLAMP_SLURM_DIR:-/var/tmp/clamp-slurm}
ACCOUNTING=${CLAMP_SLURM_ACCOUNTING:-1}
KILLWAIT=${CLAMP_SLURM_KILLWAIT:-30}
CLUSTER=${CLAMP_SLURM_CLUSTER:-clamp}
DB_PORT=${CLAMP_SLURM_DB_PORT:-6833}
TIMEOUT=${CLAMP_SLURM_TIMEOUT:-60}
CRED_EXPIRE=${CLAMP_SLURM_CRED_EXPIRE:-10}
KEEP_JOBS=${CLAMP_SLURM_KEEP_JOBS:-0}

ETC=$ROOT/etc
RUN=$ROOT/run
LOG=$ROOT/log
CONF=$ETC/slurm.conf
DBD_CONF=$ETC/slurmdbd.conf
DB_DIR=$ROOT/mariadb
DB_SOCK=$RUN/mariadb.sock
MARKER="# Written by scripts/local_slurm.sh (CLAMP local cluster)"
export SLURM_CONF=$CONF

say() { echo "[local_slurm] $*"; }
die() { echo "[local_slurm] ERROR: $*" >&2; exit 1; }
now_ms() { date +%s%3N; }

# step NAME FUNCTION [ARGS...]: run FUNCTION and print how long it took.
step() {
    local name=$1 t0 t1
    shift
    t0=$(now_ms)
    "$@"
    t1=$(now_ms)
    printf '[local_slurm] %-28s %6.1f s\n' "$name" "$(awk "BEGIN{print ($t1-$t0)/1000}")"
}

# pid_alive PIDFILE COMM: the pid in PIDFILE runs and its command name is COMM.
pid_alive() {
    local pid
    [[ -s $1 ]] || return 1
    pid=$(<"$1")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ -r /proc/$pid/comm ]] || return 1
    [[ $(</proc/"$pid"/comm) == "$2" ]]
}

munge_pidfile() { echo /run/munge/munged.pid; }
munge_ok() { command -v munge >/dev/null && munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
db_ok() { mariadb --no-defaults -S "$DB_SOCK" -u root -e 'SELECT 1' >/dev/null 2>&1; }

# ---------------------------------------------------------------------------------------------
# start
# ---------------------------------------------------------------------------------------------

install_packages() {
    local need=(slurmctld slurmd sbatch sacct munged)
    local pkgs=(slurm-wlm munge)
    if [[ $ACCOUNTING == 1 ]]; then
        need+=(slurmdbd mariadbd mariadb mariadb-install-db)
        # The -core packages: the server binaries without a system service that starts on install.
        pkgs+=(slurmdbd mariadb-server-core mariadb-client-core)
    fi
    local missing=()
    for b in "${need[@]}"; do
        command -v "$b" >/dev/null 2>&1 || [[ -x /usr/sbin/$b ]] || missing+=("$b")
    done
    if ((${#missing[@]} == 0)); then
        # Not `sinfo --version`: without a readable slurm.conf, Slurm commands look for a
        # configless controller through DNS SRV records and hang for a minute on this network.
        say "packages already installed (slurm $(dpkg-query -W -f='${Version}' slurm-client 2>/dev/null || echo '?'))"
        return
    fi
    [[ $(id -u) == 0 ]] || die "missing ${missing[*]}; run as root to install ${pkgs[*]}"
    say "installing ${pkgs[*]} (missing: ${missing[*]})"
    export DEBIAN_FRONTEND=noninteractive
    local apt=(apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confold)
    if ! "${apt[@]}" "${pkgs[@]}" >"$LOG/apt.log" 2>&1; then
        say "apt-get install failed, updating the package lists and retrying"
        apt-get update -q >>"$LOG/apt.log" 2>&1 || die "apt-get update failed, see $LOG/apt.log"
        "${apt[@]}" "${pkgs[@]}" >>"$LOG/apt.log" 2>&1 || die "apt-get install failed, see $LOG/apt.log"
    fi
}

make_dirs() {
    mkdir -p "$ETC" "$RUN" "$LOG" "$ROOT/state/ctld" "$ROOT/state/slurmd"
    chmod 755 "$ROOT"
}

start_munge() {
    if munge_ok; then
        say "munged already running"
        return
    fi
    local key=/etc/munge/munge.key
    mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge
    if [[ ! -s $key ]]; then
        say "creating munge key $key"
        if command -v mungekey >/dev/null; then
            mungekey --create --keyfile="$key"
        else
            dd if=/dev/urandom of="$key" bs=1024 count=1 status=none
        fi
    fi
    if id munge >/dev/null 2>&1; then
        chown munge:munge /etc/munge "$key" /var/lib/munge /var/log/munge /run/munge
        chmod 700 /etc/munge /var/lib/munge /var/log/munge
        chmod 755 /run/munge
        chmod 400 "$key"
        runuser -u munge -- munged
    else
        chmod 400 "$key"
        munged --force
    fi
    for _ in $(seq 50); do munge_ok && return; sleep 0.1; done
    die "munged did not start; see /var/log/munge/munged.log"
}

node_line() {
    # `slurmd -C` prints what slurmd detects: NodeName=... CPUs=... RealMemory=...; keep the
    # hardware fields, address the node by the loopback address.
    local host detected
    host=$(hostname -s)
    detected=$(slurmd -C 2>/dev/null | head -1) || true
    [[ $detected == NodeName=* ]] || die "slurmd -C printed nothing usable"
    detected=$(tr ' ' '\n' <<<"$detected" | grep -E '^(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore|RealMemory)=' | tr '\n' ' ')
    echo "NodeName=$host NodeAddr=127.0.0.1 NodeHostname=$host ${detected}State=UNKNOWN"
}

write_slurm_conf() {
    local host node accounting tmp
    host=$(hostname -s)
    node=$(node_line)
    if [[ $ACCOUNTING == 1 ]]; then
        accounting="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819"
    else
        accounting="AccountingStorageType=accounting_storage/none"
    fi
    tmp=$(mktemp "$ETC/slurm.conf.XXXX")
    cat >"$tmp" <<EOF
$MARKER
# Regenerated by every start while the cluster is stopped; edit the script, not this file.
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# cred_expire: a requeued job stays pending (Reason=BeginTime) this long after its old run ended.
AuthInfo=cred_expire=$CRED_EXPIRE
CredType=cred/munge
SlurmctldPort=6817
SlurmdPort=6818

StateSaveLocation=$ROOT/state/ctld
SlurmdSpoolDir=$ROOT/state/slurmd
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info

# No cgroups: processes of a step are found through their parent (slurmstepd).
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
$accounting

SchedulerType=sched/backfill
# Scheduling passes every few seconds instead of 30/60 s, so that a requeued job restarts soon.
SchedulerParameters=bf_interval=5,sched_interval=5
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
MaxArraySize=10001

# Requeue, pre-emption and time limits (the subject of this cluster).
JobRequeue=1
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
KillWait=$KILLWAIT
OverTimeLimit=0
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
MinJobAge=300
MailProg=/bin/true
MessageTimeout=10
Waittime=0

$node
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP PriorityTier=1
PartitionName=urgent Nodes=$host Default=NO MaxTime=INFINITE State=UP PriorityTier=2
EOF
    chmod 644 "$tmp"
    mv "$tmp" "$CONF"
}

link_conf() {
    # Let sinfo/sbatch/sacct (and submitit, which calls them) find the config without SLURM_CONF.
    local sys=/etc/slurm/slurm.conf
    mkdir -p /etc/slurm
    if [[ -L $sys || ! -e $sys ]] || grep -qF "$MARKER" "$sys" 2>/dev/null; then
        ln -sfn "$CONF" "$sys"
    else
        say "WARNING: $sys exists and is not ours; export SLURM_CONF=$CONF to use this cluster"
    fi
}

db_init() {
    if [[ -d $DB_DIR/mysql ]]; then
        return
    fi
    say "initialising MariaDB in $DB_DIR"
    mkdir -p "$DB_DIR"
    mariadb-install-db --no-defaults --datadir="$DB_DIR" --user=root \
        --auth-root-authentication-method=socket --skip-test-db >"$LOG/mariadb-install.log" 2>&1 \
        || die "mariadb-install-db failed, see $LOG/mariadb-install.log"
}

start_mariadb() {
    if db_ok; then
        say "mariadbd already running"
        return
    fi
    db_init
    # Not a system service: private datadir and socket, TCP on 127.0.0.1 only (slurmdbd has no
    # socket option, it connects over TCP).
    setsid mariadbd --no-defaults --user=root --datadir="$DB_DIR" --socket="$DB_SOCK" \
        --pid-file="$RUN/mariadb.pid" --port="$DB_PORT" --bind-address=127.0.0.1 \
        --log-error="$LOG/mariadb.log" --innodb-buffer-pool-size=128M \
        --innodb-lock-wait-timeout=900 --max-connections=50 --skip-name-resolve \
        </dev/null >/dev/null 2>&1 &
    for _ in $(seq 300); do db_ok && break; sleep 0.1; done
    db_ok || die "MariaDB did not start within 30 s; see $LOG/mariadb.log"
}

write_dbd_conf() {
    local pw
    if [[ ! -s $ETC/db.pass ]]; then
        (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$ETC/db.pass")
    fi
    pw=$(<"$ETC/db.pass")
    mariadb --no-defaults -S "$DB_SOCK" -u root <<EOF
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$pw';
ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$pw';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
EOF
    (umask 077; cat >"$DBD_CONF" <<EOF
$MARKER
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$pw
StorageLoc=slurm_acct_db
EOF
    )
}

start_slurmdbd() {
    if pid_alive "$RUN/slurmdbd.pid" slurmdbd; then
        say "slurmdbd already running"
    else
        write_dbd_conf
        slurmdbd
    fi
    for _ in $(seq 300); do
        sacctmgr -n -P list cluster format=cluster >/dev/null 2>&1 && break
        sleep 0.1
    done
    sacctmgr -n -P list cluster format=cluster >/dev/null 2>&1 \
        || die "slurmdbd does not answer within 30 s; see $LOG/slurmdbd.log"
}

register_cluster() {
    if sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
        return
    fi
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
}

start_slurmctld() {
    if pid_alive "$RUN/slurmctld.pid" slurmctld; then
        say "slurmctld already running"
        return
    fi
    slurmctld
}

start_slurmd() {
    if pid_alive "$RUN/slurmd.pid" slurmd; then
        say "slurmd already running"
        return
    fi
    slurmd
}

node_state() { sinfo -h -N -n "$(hostname -s)" -o %T 2>/dev/null | head -1; }

wait_idle() {
    local state="" deadline=$((SECONDS + TIMEOUT))
    while ((SECONDS < deadline)); do
        state=$(node_state) || true
        case $state in
            idle|mixed|allocated|completing) return ;;
        esac
        sleep 0.2
    done
    echo "[local_slurm] ERROR: node not idle after ${TIMEOUT} s (state: '${state:-no answer}')." >&2
    local logs="$LOG/slurmctld.log $LOG/slurmd.log"
    [[ $ACCOUNTING == 1 ]] && logs+=" $LOG/slurmdbd.log $LOG/mariadb.log"
    echo "[local_slurm] Logs: $logs" >&2
    for f in "$LOG"/slurmctld.log "$LOG"/slurmd.log; do
        [[ -f $f ]] && { echo "--- tail $f" >&2; tail -n 15 "$f" >&2; }
    done
    exit 1
}

all_running() {
    munge_ok || return 1
    if [[ $ACCOUNTING == 1 ]]; then
        db_ok && pid_alive "$RUN/slurmdbd.pid" slurmdbd || return 1
    fi
    pid_alive "$RUN/slurmctld.pid" slurmctld && pid_alive "$RUN/slurmd.pid" slurmd
}

cmd_start() {
    local t0
    t0=$(now_ms)
    [[ $(id -u) == 0 ]] || die "start needs root"
    mkdir -p "$LOG"
    if command -v slurmctld >/dev/null && all_running; then
        say "cluster already running"
        step "wait for node" wait_idle
        sinfo
        return
    fi
    step "install packages" install_packages
    step "directories" make_dirs
    step "munged" start_munge
    if ! pid_alive "$RUN/slurmctld.pid" slurmctld; then
        # The config follows the machine (CPUs, memory) and the environment variables above.
        step "slurm.conf" write_slurm_conf
    fi
    step "link /etc/slurm/slurm.conf" link_conf
    if [[ $ACCOUNTING == 1 ]]; then
        step "mariadbd" start_mariadb
        step "slurmdbd" start_slurmdbd
        step "register cluster" register_cluster
    fi
    step "slurmctld" start_slurmctld
    step "slurmd" start_slurmd
    step "wait for node" wait_idle
    sinfo
    printf '[local_slurm] %-28s %6.1f s\n' "start (total)" "$(awk "BEGIN{print ($(now_ms)-$t0)/1000}")"
}

# ---------------------------------------------------------------------------------------------
# stop
# ---------------------------------------------------------------------------------------------

# stop_daemons NAME:PIDFILE:COMM...: SIGTERM to each running one, wait up to 20 s for all to
# exit, then SIGKILL the rest.
stop_daemons() {
    local spec name pidfile comm pid pids=() names=()
    for spec in "$@"; do
        IFS=: read -r name pidfile comm <<<"$spec"
        if pid_alive "$pidfile" "$comm"; then
            pid=$(<"$pidfile")
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
            names+=("$name")
        else
            say "$name not running"
        fi
    done
    ((${#pids[@]})) || return 0
    for _ in $(seq 200); do
        local left=0
        for pid in "${pids[@]}"; do [[ -d /proc/$pid ]] && left=1; done
        ((left)) || break
        sleep 0.1
    done
    for i in "${!pids[@]}"; do
        if [[ -d /proc/${pids[$i]} ]]; then
            say "${names[$i]} (pid ${pids[$i]}) ignores SIGTERM, killing it"
            kill -KILL "${pids[$i]}" 2>/dev/null || true
        else
            say "${names[$i]} stopped"
        fi
    done
}

cancel_jobs() {
    local ids
    pid_alive "$RUN/slurmctld.pid" slurmctld || return 0
    ids=$(squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ') || true
    [[ -n ${ids// /} ]] || return 0
    say "cancelling jobs: $ids"
    # shellcheck disable=SC2086
    scancel $ids 2>/dev/null || true
    for _ in $(seq $(((KILLWAIT + 10) * 5))); do
        [[ -z $(squeue -h -o %A 2>/dev/null) ]] && return 0
        sleep 0.2
    done
    say "WARNING: jobs still listed after $((KILLWAIT + 10)) s: $(squeue -h -o '%A %T' | tr '\n' ' ')"
}

cmd_stop() {
    local t0
    t0=$(now_ms)
    if [[ $KEEP_JOBS != 1 ]]; then
        step "cancel jobs" cancel_jobs
    fi
    # Running jobs' slurmstepd processes outlive slurmd; slurmctld may still report to slurmdbd
    # while it shuts down; everything needs munged.
    step "slurmd, slurmctld" stop_daemons "slurmd:$RUN/slurmd.pid:slurmd" \
        "slurmctld:$RUN/slurmctld.pid:slurmctld"
    step "slurmdbd, mariadbd" stop_daemons "slurmdbd:$RUN/slurmdbd.pid:slurmdbd" \
        "mariadbd:$RUN/mariadb.pid:mariadbd"
    step "munged" stop_daemons "munged:$(munge_pidfile):munged"
    printf '[local_slurm] %-28s %6.1f s\n' "stop (total)" "$(awk "BEGIN{print ($(now_ms)-$t0)/1000}")"
}

# ---------------------------------------------------------------------------------------------
# status
# ---------------------------------------------------------------------------------------------

cmd_status() {
    local ok=0 line
    show() { # NAME PIDFILE COMM
        if pid_alive "$2" "$3"; then
            printf '  %-10s running (pid %s)\n' "$1" "$(<"$2")"
        else
            printf '  %-10s stopped\n' "$1"
            ok=3
        fi
    }
    echo "cluster folder: $ROOT (config $CONF)"
    show munged "$(munge_pidfile)" munged
    if [[ $ACCOUNTING == 1 ]]; then
        show mariadbd "$RUN/mariadb.pid" mariadbd
        show slurmdbd "$RUN/slurmdbd.pid" slurmdbd
    fi
    show slurmctld "$RUN/slurmctld.pid" slurmctld
    show slurmd "$RUN/slurmd.pid" slurmd
    if pid_alive "$RUN/slurmctld.pid" slurmctld && command -v sinfo >/dev/null; then
        sinfo || ok=3
        line=$(squeue -h 2>/dev/null | wc -l) || true
        echo "jobs in queue: ${line:-?}"
    fi
    return $ok
}

case ${1:-} in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
