#!/usr/bin/env bash
# rehearse.sh [--quick] [--link "TC QDISC"] [-- MOEYARD ARGS...]: two machines on this one Linux host, each with a network stack, a /dev/shm
# and a host name of its own (network, mount and UTS namespaces, joined by a veth pair), and the
# README's "Across real machines" checklist run between them as a user would run it: the launch
# lines name the other machine by its address, not by loopback, and no machine name is given, so
# the ranks tell the machines apart as they do on real ones.
#
# Steps: rendezvous-check --cluster (rendezvous, machines, links), bench --procs 2 --machines 2
# (verified), layer-example, and a machine that dies mid-run (kill -9 of every process of machine
# 1), and one that stops answering (SIGSTOP of all of them): machine 0 must fail, naming one of
# machine 1's ranks, within the default timeout (10 s). After every step each machine's /dev/shm
# must hold no moeyard file. --quick runs the first two steps only. MOEYARD, when set, is the
# command that runs moeyard (the tests point it at their own build); else the launcher here.
#
# --link shapes the link between the machines both ways with a tc queueing discipline (e.g. "tbf
# rate 10gbit burst 4mb latency 50ms"; "netem delay 25us" where the kernel has netem), for figures
# nearer a cluster's than a virtual Ethernet's memory copies. With "-- ARGS",
# no checklist: both machines run moeyard ARGS, the word MACHINE in them standing for the
# --machines 2 --machine-rank I --master-addr --master-port flags, and machine 0's output is
# printed (e.g. `-- bench --procs 2 MACHINE --tokens 512`).
#
# Needs root (ip netns, unshare, mount); exits 3 when the host does not allow it, so that callers
# can tell "cannot rehearse here" from a failure. Every namespace and link is removed on exit.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
quick=0 link="" run=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1; shift ;;
    --link) link=$2; shift 2 ;;
    --) shift; run=("$@"); break ;;
    *) echo "rehearse: unknown option $1 (want --quick, --link SPEC, -- ARGS)" >&2; exit 2 ;;
  esac
done

tag="my$$"
ns0="moeyard-$tag-0" ns1="moeyard-$tag-1"
addr0=10.213.$(($$ % 250)).1 addr1=10.213.$(($$ % 250)).2
work="$(mktemp -d /tmp/moeyard-rehearse.XXXXXX)"
cleanup() {
  for ns in "$ns0" "$ns1"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 143' TERM INT HUP # the namespaces go on exit, also when stopped

if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null || ! command -v unshare >/dev/null; then
  echo "rehearse: needs root, ip and unshare; not rehearsing here" >&2
  exit 3
fi
# a machine is a network namespace running commands with a /dev/shm and a host name of their own
# (as on() does): a host that allows only part of it (namespaces, but no mounts in them) cannot rehearse
if ! { ip netns add "$ns0" && ip netns add "$ns1" \
    && ip link add "v$tag-0" netns "$ns0" type veth peer name "v$tag-1" netns "$ns1" \
    && ip -n "$ns0" addr add "$addr0/24" dev "v$tag-0" && ip -n "$ns1" addr add "$addr1/24" dev "v$tag-1" \
    && ip -n "$ns0" link set "v$tag-0" up && ip -n "$ns1" link set "v$tag-1" up \
    && ip -n "$ns0" link set lo up && ip -n "$ns1" link set lo up \
    && ip netns exec "$ns0" unshare --mount --uts -- sh -c 'mount -t tmpfs -o size=1m tmpfs /dev/shm && hostname probe'; \
    } 2>"$work/setup.err"; then
  echo "rehearse: this host does not allow the namespaces a machine needs ($(head -c 300 "$work/setup.err")); not rehearsing here" >&2
  exit 3
fi

if [ -n "$link" ]; then
  if ! command -v tc >/dev/null || ! { tc -n "$ns0" qdisc add dev "v$tag-0" root $link \
      && tc -n "$ns1" qdisc add dev "v$tag-1" root $link; } 2>"$work/tc.err"; then
    echo "rehearse: cannot shape the link with '$link': $(head -c 300 "$work/tc.err")" >&2
    exit 3
  fi
  echo "rehearse: link between the machines shaped both ways: $link"
fi

moeyard="${MOEYARD:-$root/moeyard}"
# the launcher must not build inside a machine: build once here
"$moeyard" --help >/dev/null || { echo "rehearse: $moeyard --help failed" >&2; exit 1; }

# on M (0 or 1): a fresh /dev/shm and host name, the command, then that /dev/shm's leftovers
on() {
  local m=$1 ns
  shift
  ns=$([ "$m" = 0 ] && echo "$ns0" || echo "$ns1")
  ip netns exec "$ns" unshare --mount --uts -- bash -c '
    mount -t tmpfs -o size=512m tmpfs /dev/shm || exit 97
    hostname "rehearsal-machine-$0"
    MOEYARD_NO_BUILD=1 "$@"
    rc=$?
    left=$(ls /dev/shm | grep moeyard)
    [ -n "$left" ] && { echo "LEFTOVER in machine $0: $left"; [ $rc = 0 ] && rc=98; }
    exit $rc' "$m" "$@"
}

port=$((20000 + $$ % 20000))
failed=0
# the moeyard args for machine M, the word MACHINE standing for its --machine-rank and store flags
args() {
  local m=$1
  shift
  for a in "$@"; do
    if [ "$a" = MACHINE ]; then printf '%s\n' --machines 2 --machine-rank "$m" --master-addr "$addr0" --master-port "$port"
    else printf '%s\n' "$a"; fi
  done
}
# step NAME CHECK ARGS...: both machines run moeyard ARGS; machine 0's output must contain CHECK
step() {
  local name=$1 want=$2
  shift 2
  port=$((port + 1))
  local t0=$SECONDS a0 a1
  mapfile -t a0 < <(args 0 "$@")
  mapfile -t a1 < <(args 1 "$@")
  on 1 "$moeyard" "${a1[@]}" >"$work/$name.1" 2>&1 &
  local p1=$!
  on 0 "$moeyard" "${a0[@]}" >"$work/$name.0" 2>&1
  local rc0=$? rc1
  wait "$p1"; rc1=$?
  if [ "$rc0" = 0 ] && [ "$rc1" = 0 ] && grep -q -- "$want" "$work/$name.0" && ! grep -q LEFTOVER "$work/$name.0" "$work/$name.1"; then
    echo "rehearse: $name ok ($((SECONDS - t0)) s)"
  else
    echo "rehearse: $name FAILED (machine 0 exit $rc0, machine 1 exit $rc1; wanted '$want')"
    sed 's/^/  m0| /' "$work/$name.0" | tail -40
    sed 's/^/  m1| /' "$work/$name.1" | tail -40
    failed=1
  fi
}

if [ ${#run[@]} -gt 0 ]; then
  port=$((port + 1))
  mapfile -t a0 < <(args 0 "${run[@]}")
  mapfile -t a1 < <(args 1 "${run[@]}")
  on 1 "$moeyard" "${a1[@]}" >"$work/run.1" 2>&1 &
  p1=$!
  on 0 "$moeyard" "${a0[@]}"
  rc0=$?
  wait "$p1"; rc1=$?
  [ "$rc1" != 0 ] && { echo "rehearse: machine 1 exited $rc1:"; tail -20 "$work/run.1"; }
  [ "$rc0" != 0 ] && exit "$rc0"
  exit "$rc1"
fi

step rendezvous "links ok" launch --nprocs 2 MACHINE -- rendezvous-check --cluster
step bench "verified: yes" bench --procs 2 MACHINE --tokens 64 --hidden 256 --experts 16 --topk 4 --iters 3 --warmup 0
if [ "$quick" = 0 ]; then
  step layer-example "ok (bf16 rounding)" launch --nprocs 2 MACHINE -- layer-example

  # machine 1 fails mid-run, by SIG (KILL: it dies; STOP: it goes silent): machine 0 must fail,
  # naming one of machine 1's ranks (2 or 3), within the default timeout
  fail_machine1() {
    local name=$1 sig=$2 p0 rc0 took running=0
    port=$((port + 1))
    mapfile -t a0 < <(args 0 bench --procs 2 MACHINE --tokens 64 --hidden 256 --experts 16 --topk 4 --iters 1000000 --warmup 0)
    mapfile -t a1 < <(args 1 bench --procs 2 MACHINE --tokens 64 --hidden 256 --experts 16 --topk 4 --iters 1000000 --warmup 0)
    on 1 "$moeyard" "${a1[@]}" >"$work/$name.1" 2>&1 &
    on 0 "$moeyard" "${a0[@]}" >"$work/$name.0" 2>&1 &
    p0=$!
    for _ in $(seq 1 240); do grep -q "timing" "$work/$name.0" 2>/dev/null && break; sleep 0.25; done
    sleep 2
    local t0
    t0=$(date +%s.%N)
    # a machine 0 that already ended (or never began timing) failed on its own: that proves nothing
    grep -q "timing" "$work/$name.0" 2>/dev/null && kill -0 "$p0" 2>/dev/null && running=1
    for p in $(ip netns pids "$ns1"); do kill "-$sig" "$p" 2>/dev/null; done
    # machine 0 must end by itself within the timeout; 30 s is a hang, and ends it
    for _ in $(seq 1 120); do kill -0 "$p0" 2>/dev/null || break; sleep 0.25; done
    if kill -0 "$p0" 2>/dev/null; then
      echo "machine 0 still running 30 s after machine 1 was stopped: a hang" >>"$work/$name.0"
      for p in $(ip netns pids "$ns0"); do kill -9 "$p" 2>/dev/null; done
    fi
    wait "$p0"; rc0=$?
    took=$(echo "$(date +%s.%N) - $t0" | bc)
    for p in $(ip netns pids "$ns1"); do kill -9 "$p" 2>/dev/null; done
    if [ "$running" = 1 ] && [ "$rc0" != 0 ] && grep -Eq "rank [23]" "$work/$name.0" && ! grep -q LEFTOVER "$work/$name.0" && [ "$(echo "$took < 11" | bc)" = 1 ]; then
      printf 'rehearse: %s ok (machine 0 exit %s after %.1f s: %s)\n' "$name" "$rc0" "$took" "$(grep -Eo "rank [23][^;]{0,100}" "$work/$name.0" | head -1)"
    else
      printf 'rehearse: %s FAILED (machine 0 exit %s after %.1f s%s)\n' "$name" "$rc0" "$took" \
        "$([ "$running" = 1 ] || echo "; it was not timing when machine 1 was stopped")"
      sed 's/^/  m0| /' "$work/$name.0" | tail -30
      failed=1
    fi
  }
  fail_machine1 machine-killed KILL
  fail_machine1 machine-stopped STOP
fi
[ "$failed" = 0 ] && echo "rehearse: all steps passed"
exit "$failed"
