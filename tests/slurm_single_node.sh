#!/bin/bash
# A one-node Slurm for tests (this host is controller and compute node, CPU
# only), from Debian's packages, as root. Installs them if missing, starts
# munge (unless one runs), slurmctld and slurmd, and prints the PIDs of what it
# started on its last line: "pids: N N N"; on failure it stops them itself. Adapted from ../shared/tools/slurm-single-node.sh.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  apt-get update -qq
  apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
fi
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
fi
install -d -o munge -g munge -m 755 /run/munge /var/log/munge /var/lib/munge
started=()
pid_of() {  # a daemon writes its pid file a moment after it forks
  for i in $(seq 50); do [ -s "$1" ] && break; sleep 0.2; done
  cat "$1"
}
stop_started() { [ ${#started[@]} -eq 0 ] || kill "${started[@]}" 2>/dev/null; }
trap 'stop_started; tail -n 20 /var/log/slurm/slurmctld.log >&2 2>/dev/null; sinfo >&2 2>/dev/null' ERR
if ! pgrep -x munged >/dev/null; then  # one munged per host: reuse a running one
  rm -f /run/munge/munged.pid
  su -s /bin/sh munge -c /usr/sbin/munged
  started+=("$(pid_of /run/munge/munged.pid)")
fi
host=$(hostname -s)
node=$(slurmd -C | head -1)  # before the config is rewritten: slurmd -C reads it
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=test
SlurmctldHost=${host}
SlurmUser=slurm
AuthType=auth/munge
StateSaveLocation=/var/spool/slurm-test/ctld
SlurmdSpoolDir=/var/spool/slurm-test/d
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
KillWait=30
${node} State=UNKNOWN
PartitionName=debug Nodes=${host} Default=YES MaxTime=INFINITE State=UP
CONF
# State of its own: another cluster's (another ClusterName) stops slurmctld.
install -d -o slurm -g slurm /var/spool/slurm-test/ctld /var/log/slurm
install -d /var/spool/slurm-test/d
# -c: no jobs or node states left from an earlier cluster on this host.
rm -f /run/slurmctld.pid /run/slurmd.pid
/usr/sbin/slurmctld -c
started+=("$(pid_of /run/slurmctld.pid)")
/usr/sbin/slurmd
started+=("$(pid_of /run/slurmd.pid)")
for i in $(seq 60); do sinfo -h -o %T 2>/dev/null | grep -q idle && break; sleep 1; done
sinfo -h -o %T | grep -q idle
echo "pids: ${started[*]}"
