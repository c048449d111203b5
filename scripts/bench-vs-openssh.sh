#!/usr/bin/env bash
# bench-vs-openssh.sh — keygate side by side with OpenSSH sshd on one machine.
#
#   sudo ./scripts/bench-vs-openssh.sh            # full run: 1k and 1M keys (< 10 min)
#   sudo QUICK=1 ./scripts/bench-vs-openssh.sh    # 1k and 10k keys, shorter runs
#
# Runs as root: it installs what is missing (apt-get: openssh-server, git,
# sqlite3, curl; Go from go.dev at go.mod's version into /usr/local/go if no
# go is on PATH — Debian's golang-go is too old), runs OpenSSH sshd on a
# loopback high port as the current (root) user and keeps its state in a
# root-owned cache directory (sshd refuses an AuthorizedKeysCommand below a
# world-writable directory such as /tmp).
#
# For each key count it seeds a keygate keystore (keygate-load seed; cached),
# then drives, with keygate-load run (same concurrency, same duration, one
# ed25519 key, connect + key exchange + auth, then close):
#   keygate             the seeded keystore, index in memory
#   sshd file           OpenSSH, AuthorizedKeysFile holding the same keys
#                       (the client's key in the middle of the file)
#   sshd command        OpenSSH, AuthorizedKeysCommand: an indexed SQLite
#                       lookup by fingerprint, as GitLab's
#                       gitlab-shell-authorized-keys-check does over its API
# and prints handshakes/s, p99 latency, server CPU per handshake (utime +
# stime of the server from /proc, for sshd including every reaped child:
# sshd forks and re-execs per connection) and server RSS (for sshd, summed
# over its process tree in mid-run). Then: git clone throughput of a
# ~100 MB repository of random blobs through keygate and through OpenSSH
# sshd + git-upload-pack (the same bare repository), and the RSS cost of
# 5,000 idle authenticated connections to keygate.
#
# Clone storms (keygate-load storm): N identical `git clone --no-checkout`
# started at once (the clients and the server sharing every CPU, as a CI
# fleet would a small server) of two repositories — "history", ~REPO_MB of
# history (a random binary added and a large text file edited per commit)
# and "small", tens of thousands of small text objects (where pack-objects'
# delta search and compression dominate) — against OpenSSH sshd +
# git-upload-pack, keygate with its pack cache off (as before it had one)
# and keygate; each keygate run starts on an empty cache. Reported: wall
# time to the last clone, server CPU seconds (the server and every child it
# reaped) and bytes the server wrote to disk (write_bytes less
# cancelled_write_bytes of /proc/PID/io, children included). Then the same
# at the protocol level (keygate-load storm --mode upload-pack: packs read
# and dropped, no client-side indexing) for STORM_PROTO_N clients.
#
# Environment:
#   QUICK=1                 10k instead of 1M keys, 5 s runs, 1,000 idle connections, 30 MB repo
#   KEYGATE_BENCH_CACHE     cache dir (default /var/cache/keygate-bench): seeds, repo, binaries
#   BENCH_DURATION          seconds per load run (default 10; QUICK 5)
#   BENCH_CONCURRENCY       keygate-load workers (default 4)
#   BENCH_IDLE_CONNS        idle connections (default 5000; QUICK 1000)
#   BENCH_REPO_MB           repository size (default 100; QUICK 30)
#   BENCH_BIG_FILE=0        skip OpenSSH with a big AuthorizedKeysFile (1M lines)
#   BENCH_PIN=0             do not pin (default on 2+ CPUs: every server, and
#                           what it forks, runs on CPU 0; keygate-load and the
#                           git client on the other CPUs)
#   STORM=0                 skip the clone storms; STORM_ONLY=1: only them
#   STORM_N                 clones per storm (default "1 20")
#   STORM_PROTO_N           protocol-level clients (default 50; 0: skip)
#
# Pinning: keygate-load spends about as much CPU per handshake as keygate
# itself (the client side of the same key exchange and signatures), so on a
# small machine sharing all CPUs between them measures the load generator as
# much as the server; OpenSSH, at ~20x the CPU per login, would not be held
# back the same way. With the server on its own CPU, handshakes/s is the
# capacity of one CPU of each server.
set -euo pipefail

QUICK=${QUICK:-0}
CACHE=${KEYGATE_BENCH_CACHE:-/var/cache/keygate-bench}
if [[ $QUICK == 1 ]]; then
	BIG=10000 DUR=${BENCH_DURATION:-5} IDLE=${BENCH_IDLE_CONNS:-1000} REPO_MB=${BENCH_REPO_MB:-30}
else
	BIG=1000000 DUR=${BENCH_DURATION:-10} IDLE=${BENCH_IDLE_CONNS:-5000} REPO_MB=${BENCH_REPO_MB:-100}
fi
CONC=${BENCH_CONCURRENCY:-4}
NCPU=$(nproc)
SERVER_PIN=() LOAD_PIN=() PINNING="no pinning"
if [[ ${BENCH_PIN:-1} == 1 && $NCPU -ge 2 ]]; then
	SERVER_CPU=0 LOAD_CPUS="1-$((NCPU - 1))"
	SERVER_PIN=(taskset -c "$SERVER_CPU") LOAD_PIN=(taskset -c "$LOAD_CPUS")
	PINNING="servers pinned to CPU $SERVER_CPU, keygate-load and git clients to CPU $LOAD_CPUS"
fi
BIG_FILE=${BENCH_BIG_FILE:-1}
STORM=${STORM:-1} STORM_ONLY=${STORM_ONLY:-0} STORM_N=${STORM_N:-1 20} STORM_PROTO_N=${STORM_PROTO_N:-50}
[[ $STORM_ONLY == 1 ]] && STORM=1
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# Ports below Linux's ephemeral range (32768-60999), which the load runs use up.
KPORT=${BENCH_KEYGATE_PORT:-22222} HPORT=${BENCH_HTTP_PORT:-28080} SPORT=${BENCH_SSHD_PORT:-22022}
TOKEN=kgpat-bench-admin-token-0123456789
START=$(date +%s)

log() { printf '[%4ds] %s\n' $(($(date +%s) - START)) "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $(id -u) == 0 ]] || die "run as root (sudo): it installs packages and runs sshd"

# --- processes we start, stopped on exit (by pid, never by name) ---
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

# --- install what is missing ---
need=()
[[ -x /usr/sbin/sshd ]] || need+=(openssh-server)
command -v git >/dev/null || need+=(git)
command -v sqlite3 >/dev/null || need+=(sqlite3)
command -v ssh >/dev/null || need+=(openssh-client)
command -v curl >/dev/null || need+=(curl)
export PATH=$PATH:/usr/local/go/bin
if ((${#need[@]})); then
	log "installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Debian's package starts its own sshd on port 22; that one is left alone.
if ! command -v go >/dev/null; then
	gov=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$ROOT/go.mod")
	arch=$(dpkg --print-architecture)
	log "installing Go $gov into /usr/local/go"
	curl -fsSL "https://go.dev/dl/go$gov.linux-$arch.tar.gz" | tar -C /usr/local -xz
fi

mkdir -p "$CACHE"
chmod 755 "$CACHE"
W=$CACHE/run
rm -rf "$W"
mkdir -p "$W"
chmod 755 "$W"
BIN=$CACHE/bin
log "building keygate and keygate-load"
(cd "$ROOT" && go build -o "$BIN/keygate" ./cmd/keygate && go build -o "$BIN/keygate-load" ./cmd/keygate-load)

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
HZ=$(getconf CLK_TCK)

# --- helpers ---
# cpu_ticks PID [children]: utime+stime (+ cutime+cstime of reaped children).
cpu_ticks() {
	local f
	read -ra f < <(sed 's/^.*) //' "/proc/$1/stat")
	# after the "(comm) " field: f[0]=state ... utime=f[11] stime=f[12] cutime=f[13] cstime=f[14]
	if [[ ${2:-} == children ]]; then
		echo $((f[11] + f[12] + f[13] + f[14]))
	else
		echo $((f[11] + f[12]))
	fi
}
# tree_pids PID: PID and all its descendants.
tree_pids() {
	local p=$1 c
	echo "$p"
	for c in $(cat /proc/"$p"/task/*/children 2>/dev/null); do tree_pids "$c"; done
}
# rss_kib PID...: summed VmRSS.
rss_kib() {
	local sum=0 p v
	for p in "$@"; do
		v=$(awk '/^VmRSS:/{print $2}' "/proc/$p/status" 2>/dev/null || true)
		sum=$((sum + ${v:-0}))
	done
	echo "$sum"
}
json_num() { sed -n "s/.*\"$1\":\([0-9.eE+-]*\).*/\1/p" | head -1; }
wait_port() {
	local i
	for i in $(seq 1 600); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

ROWS=()
# measure NAME KEYS PID MODE(self|children) KEYFILE USER: one load run.
measure() {
	local name=$1 keys=$2 pid=$3 mode=$4 key=$5 user=$6 port=$7
	local c0 c1 out hs hps p99 rss errs mid
	c0=$(cpu_ticks "$pid" "$mode")
	"${LOAD_PIN[@]}" "$BIN/keygate-load" run --addr "127.0.0.1:$port" --user "$user" --key "$key" --host-key-check=false \
		--concurrency "$CONC" --duration "${DUR}s" --timeout 120s --json >"$W/run.json" 2>"$W/run.err" &
	local lp=$!
	PIDS+=("$lp")
	sleep $((DUR / 2))
	# shellcheck disable=SC2046
	rss=$(rss_kib $(tree_pids "$pid"))
	wait "$lp" || true
	sleep 1 # let sshd reap its children
	c1=$(cpu_ticks "$pid" "$mode")
	out=$(cat "$W/run.json")
	hs=$(json_num handshakes <<<"$out")
	hps=$(json_num handshakes_per_s <<<"$out")
	p99=$(json_num p99_ms <<<"$out")
	errs=$(grep -o '"errors":{[^}]*}' <<<"$out" || true)
	[[ ${hs:-0} -gt 0 ]] || { log "$name: no handshakes: $out $(cat "$W/run.err")"; hs=0; }
	local cpu_ms
	cpu_ms=$(awk -v t=$((c1 - c0)) -v hz="$HZ" -v n="${hs:-0}" 'BEGIN{ if (n>0) printf "%.2f", t*1000/hz/n; else print "-" }')
	ROWS+=("$(printf '%-24s %9s %12.1f %9.1f %16s %8.1f' "$name" "$keys" "${hps:-0}" "${p99:-0}" "$cpu_ms" "$(awk -v k="$rss" 'BEGIN{print k/1024}')")")
	log "$name @ $keys keys: $hs handshakes, ${hps} /s, p99 ${p99} ms, ${cpu_ms} ms CPU/handshake, RSS $rss KiB ${errs}"
}

# seed_dir N: a keygate data dir with N seeded users (cached), echoes its path.
seed_dir() {
	local n=$1 d=$CACHE/seed-$1
	if [[ ! -f $d/.seeded ]]; then
		rm -rf "$d"
		mkdir -p "$d"
		log "seeding $n users/keys into $d"
		"$BIN/keygate-load" seed --data-dir "$d" --keys "$n" --write-keys "$d/id" >&2
		touch "$d/.seeded"
	fi
	chmod 600 "$d/id"
	echo "$d"
}

# authorized_keys N DIR: the same keys as an authorized_keys file, the
# benchmark key (user 1) in the middle.
authorized_keys() {
	local n=$1 d=$2 f=$CACHE/authorized_keys-$1
	if [[ ! -f $f ]]; then
		sqlite3 "$d/keygate.db" "SELECT key FROM keys ORDER BY (id <= $((n / 2))), id" >"$f.tmp"
		mv "$f.tmp" "$f"
	fi
	echo "$f"
}

start_keygate() { # DIR SSH_PORT HTTP_PORT [FLAGS...]
	local d=$1
	KEYGATE_ADMIN_TOKEN=$TOKEN "$BIN/keygate" serve --data-dir "$d" --ssh-addr "127.0.0.1:$2" \
		--http-addr "127.0.0.1:$3" --hostname localhost --log-level error \
		--max-connections-per-principal -1 "${@:4}" >"$W/keygate.log" 2>&1 & # hold: thousands with one key
	KG=$!
	PIDS+=("$KG")
	local i
	for i in $(seq 1 600); do
		if curl -sf "http://127.0.0.1:$3/-/readiness" >/dev/null 2>&1; then
			# Started on every CPU (the index loads users and keys in
			# parallel, as a node starting in production would), pinned
			# for the measurements from here on.
			((${#SERVER_PIN[@]} == 0)) || taskset -a -p -c "$SERVER_CPU" "$KG" >/dev/null
			return 0
		fi
		kill -0 "$KG" 2>/dev/null || die "keygate exited: $(cat "$W/keygate.log")"
		sleep 0.1
	done
	die "keygate not ready"
}
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

mkdir -p /run/sshd
SSHD_DIR=$W/sshd
mkdir -p "$SSHD_DIR"
ssh-keygen -q -t ed25519 -N '' -f "$SSHD_DIR/host_ed25519" </dev/null
# start_sshd CONFIG_LINES...: sshd on 127.0.0.1:SPORT with a throwaway config.
start_sshd() {
	{
		echo "Port $SPORT"
		echo "ListenAddress 127.0.0.1"
		echo "HostKey $SSHD_DIR/host_ed25519"
		echo "PidFile none"
		echo "UsePAM no"
		echo "StrictModes no"
		echo "PasswordAuthentication no"
		echo "KbdInteractiveAuthentication no"
		echo "PermitRootLogin prohibit-password"
		echo "MaxStartups 200:30:400"
		echo "LogLevel ERROR"
		printf '%s\n' "$@"
	} >"$SSHD_DIR/config"
	/usr/sbin/sshd -t -f "$SSHD_DIR/config" || die "sshd config rejected"
	"${SERVER_PIN[@]}" /usr/sbin/sshd -D -e -f "$SSHD_DIR/config" 2>>"$W/sshd.log" &
	SSHD=$!
	PIDS+=("$SSHD")
	wait_port "$SPORT" || die "sshd did not start: $(cat "$W/sshd.log")"
}

# The AuthorizedKeysCommand: an indexed lookup by fingerprint.
akc() {
	local db=$1 f
	f=$W/akc-$(basename "$(dirname "$db")")
	cat >"$f" <<EOF
#!/bin/sh
# AuthorizedKeysCommand %f: print the key with this SHA-256 fingerprint.
case "\$1" in SHA256:*) ;; *) exit 0 ;; esac
fp=\$(printf '%s' "\$1" | tr -cd 'A-Za-z0-9+/:=')
exec sqlite3 -cmd ".timeout 5000" "$db" "SELECT key FROM keys WHERE fingerprint_sha256 = '\$fp' AND usage_type <> 'signing'"
EOF
	chmod 755 "$f"
	echo "$f"
}

# --- handshakes ---
ME=$(id -un)
HS_SIZES="1000 $BIG"
[[ $STORM_ONLY == 1 ]] && HS_SIZES=1000
for n in $HS_SIZES; do
	d=$(seed_dir "$n")
	if [[ $n == 1000 ]]; then
		# A fresh copy: this one also gets the clone project.
		cp -a "$d" "$W/seed-1000"
		d=$W/seed-1000
	fi
	log "keygate, $n keys: starting (index load)"
	# The 1k keygate stays up for the clone and idle tests; the big one
	# gets its own ports.
	kp=$KPORT hp=$HPORT
	[[ $n == 1000 ]] || kp=$((KPORT + 1)) hp=$((HPORT + 1))
	t0=$(date +%s.%N)
	start_keygate "$d" "$kp" "$hp"
	log "keygate ready in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s"
	[[ $STORM_ONLY == 1 ]] || measure "keygate" "$n" "$KG" self "$d/id" git "$kp"
	if [[ $n == 1000 ]]; then
		KG1K=$KG
		D1K=$d
	else
		stop "$KG"
	fi
done

for n in 1000 "$BIG"; do
	[[ $STORM_ONLY == 1 ]] && break
	d=$CACHE/seed-$n
	if [[ $n == 1000 || $BIG_FILE == 1 ]]; then
		ak=$(authorized_keys "$n" "$d")
		start_sshd "AuthorizedKeysFile $ak"
		measure "sshd AuthorizedKeysFile" "$n" "$SSHD" children "$d/id" "$ME" "$SPORT"
		stop "$SSHD"
	fi
	start_sshd "AuthorizedKeysFile none" "AuthorizedKeysCommand $(akc "$d/keygate.db") %f" "AuthorizedKeysCommandUser root"
	measure "sshd AuthorizedKeysCmd" "$n" "$SSHD" children "$d/id" "$ME" "$SPORT"
	stop "$SSHD"
done

# --- git clone throughput (keygate with 1k keys still running) ---
REPO=$CACHE/repo-${REPO_MB}mb
if [[ ! -f $REPO/.done ]]; then
	log "generating a ${REPO_MB} MB repository of random blobs"
	rm -rf "$REPO"
	mkdir -p "$REPO"
	git -C "$REPO" init -q -b main
	for i in $(seq 1 "$REPO_MB"); do head -c 1048576 /dev/urandom >"$REPO/blob-$i.bin"; done
	git -C "$REPO" add .
	git -C "$REPO" -c user.name=bench -c user.email=bench@example.com commit -q -m "random blobs"
	git -C "$REPO" gc -q
	touch "$REPO/.done"
fi
API=http://127.0.0.1:$HPORT/api/v4
H="PRIVATE-TOKEN: $TOKEN"
uid=$(curl -sf -H "$H" "$API/users?username=load-user-1" | sed -n 's/^\[{"id":\([0-9]*\).*/\1/p')
[[ -n $uid ]] || die "seeded user load-user-1 not found"
gid=$(curl -sf -H "$H" -X POST "$API/groups" -d name=bench -d path=bench | sed -n 's/^{"id":\([0-9]*\).*/\1/p')
[[ -n $gid ]] || die "could not create group bench"
curl -sf -H "$H" -X POST "$API/groups/$gid/members" -d user_id="$uid" -d access_level=30 >/dev/null
curl -sf -H "$H" -X POST "$API/projects" -d namespace_id="$gid" -d path=big >/dev/null
BARE=$D1K/repositories/bench/big.git
[[ -d $BARE ]] || die "project repository $BARE missing"
git -C "$REPO" push -q "$BARE" main
# One pack, as a served repository has: a push of fewer than 100 objects is
# stored as loose objects, which upload-pack would compress on every clone.
git -C "$BARE" repack -a -d -q
SIZE=$(du -sb "$BARE/objects" | cut -f1)
SSHOPT="-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o IdentitiesOnly=yes -o LogLevel=ERROR -i $D1K/id"
clone_mbps() { # URL PORT: best of 3 clones, MB/s
	local best=0 i t0 t1
	for i in 1 2 3; do
		rm -rf "$W/clone"
		t0=$(date +%s.%N)
		GIT_SSH_COMMAND="ssh $SSHOPT -p $2" "${LOAD_PIN[@]}" git clone -q --no-checkout "$1" "$W/clone" || die "clone $1 failed"
		t1=$(date +%s.%N)
		best=$(awk -v a="$t0" -v b="$t1" -v s="$SIZE" -v best="$best" 'BEGIN{m=s/1e6/(b-a); print (m>best)?m:best}')
	done
	rm -rf "$W/clone"
	printf '%.1f' "$best"
}
K_MBPS=- S_MBPS=-
if [[ $STORM_ONLY != 1 ]]; then
	log "clone through keygate"
	K_MBPS=$(clone_mbps "ssh://git@127.0.0.1:$KPORT/bench/big.git" "$KPORT")
	start_sshd "AuthorizedKeysFile $(authorized_keys 1000 "$D1K")"
	log "clone through OpenSSH sshd + git-upload-pack"
	S_MBPS=$(clone_mbps "ssh://$ME@127.0.0.1:$SPORT$BARE" "$SPORT")
	stop "$SSHD"
fi

# --- clone storms (keygate restarted per run: an empty pack cache) ---
STORM_ROWS=()
if [[ $STORM == 1 ]]; then
	# gen_history DIR: REPO_MB commits, each adding a 1 MiB random file and
	# editing 200 lines of a 2 MiB text file (deltas against the others).
	gen_history() {
		local r=$1 i
		git -C "$r" init -q -b main
		git -C "$r" config gc.auto 0
		seq -f "line %06g: the quick brown fox jumps over the lazy dog, again and again" 1 26000 >"$r/base.txt"
		for i in $(seq 1 "$REPO_MB"); do
			head -c 1048576 /dev/urandom >"$r/bin-$i.bin"
			awk -v c="$i" 'NR>=(c%130)*200 && NR<(c%130)*200+200 {print "commit " c ": " $0; next} {print}' "$r/base.txt" >"$r/text.txt"
			git -C "$r" add -A
			git -C "$r" -c user.name=bench -c user.email=bench@example.com commit -q -m "commit $i"
		done
	}
	# gen_small DIR: 20,000 small text files in 100 directories, then 300
	# commits each appending a line to 100 of them (~50,000 objects).
	gen_small() {
		local r=$1 i
		git -C "$r" init -q -b main
		git -C "$r" config gc.auto 0
		awk -v r="$r" 'BEGIN{ for (f = 0; f < 20000; f++) { d = r "/d" (f % 100); if (f < 100) system("mkdir -p " d);
			p = d "/f" f ".txt"; for (l = 0; l < 20 + f % 40; l++) printf "file %d line %d: some words that repeat, %d\n", f, l, (f * l) % 97 > p; close(p) } }'
		git -C "$r" add -A
		git -C "$r" -c user.name=bench -c user.email=bench@example.com commit -q -m "tree"
		for i in $(seq 1 300); do
			awk -v r="$r" -v c="$i" 'BEGIN{ for (k = 0; k < 100; k++) { f = (c * 7919 + k * 104729) % 20000; p = r "/d" (f % 100) "/f" f ".txt";
				printf "change %d to file %d\n", c, f >> p; close(p) } }'
			git -C "$r" add -A
			git -C "$r" -c user.name=bench -c user.email=bench@example.com commit -q -m "change $i"
		done
	}
	# io_written PID: bytes written to storage by PID and its reaped children.
	io_written() { awk '/^write_bytes/{w=$2} /^cancelled_write_bytes/{c=$2} END{print w-c}' "/proc/$1/io"; }
	# storm_run SERVER REPO N PID MODE ARGS...: one storm, a row.
	storm_run() {
		local name=$1 repo=$2 n=$3 pid=$4 mode=$5 c0 c1 io0 io1 out wall ok
		shift 5
		sync
		c0=$(cpu_ticks "$pid" children) io0=$(io_written "$pid")
		"$BIN/keygate-load" storm --clients "$n" --mode "$mode" --key "$D1K/id" --host-key-check=false --json "$@" \
			>"$W/storm.json" 2>"$W/storm.err" || log "$name $repo N=$n: $(cat "$W/storm.json" "$W/storm.err")"
		sleep 1 # let the servers reap their children
		c1=$(cpu_ticks "$pid" children) io1=$(io_written "$pid")
		out=$(cat "$W/storm.json")
		wall=$(json_num wall_s <<<"$out") ok=$(json_num ok <<<"$out")
		STORM_ROWS+=("$(printf '%-28s %-8s %-12s %5s %9.2f %9.2f %11.1f %5s' "$name" "$repo" "$mode" "$n" "${wall:-0}" \
			"$(awk -v t=$((c1 - c0)) -v hz="$HZ" 'BEGIN{printf "%.2f", t/hz}')" \
			"$(awk -v b=$((io1 - io0)) 'BEGIN{printf "%.1f", b/1e6}')" "${ok:-0}/$n")")
		log "storm: ${STORM_ROWS[-1]}"
	}
	# The projects, the same bare repositories served by both.
	for repo in history small; do
		src=$CACHE/storm2-$repo-${REPO_MB}
		if [[ ! -f $src/.done ]]; then
			log "generating the $repo repository"
			rm -rf "$src"
			mkdir -p "$src"
			"gen_$repo" "$src"
			touch "$src/.done"
		fi
		curl -sf -H "$H" -X POST "$API/projects" -d namespace_id="$gid" -d path="$repo" >/dev/null || die "could not create bench/$repo"
		git -C "$src" push -q "$D1K/repositories/bench/$repo.git" main
		git -C "$D1K/repositories/bench/$repo.git" repack -a -d -q
		log "bench/$repo: $(du -sh "$D1K/repositories/bench/$repo.git/objects" | cut -f1), $(git -C "$src" rev-list --all --objects | wc -l) objects"
	done
	stop "$KG1K"
	# N clients from one address with one key at once: lift the per-source
	# and per-principal limits (the handshake runs' concurrency never needed to).
	STORM_KG=(--max-startups 1000 --per-source-max-startups 1000 --per-source-max-auth-failures -1 --max-git-processes-per-principal -1)
	saved_pin=("${SERVER_PIN[@]}")
	SERVER_PIN=() # the clients and the servers share every CPU
	for repo in history small; do
		for n in $STORM_N; do
			start_sshd "AuthorizedKeysFile $(authorized_keys 1000 "$D1K")"
			storm_run "OpenSSH sshd+git-upload-pack" "$repo" "$n" "$SSHD" clone --url "ssh://$ME@127.0.0.1:$SPORT$D1K/repositories/bench/$repo.git" --dir "$W"
			stop "$SSHD"
			start_keygate "$D1K" "$KPORT" "$HPORT" "${STORM_KG[@]}" --pack-cache-max-bytes 0
			storm_run "keygate, no pack cache" "$repo" "$n" "$KG" clone --url "ssh://git@127.0.0.1:$KPORT/bench/$repo.git" --dir "$W"
			stop "$KG"
			start_keygate "$D1K" "$KPORT" "$HPORT" "${STORM_KG[@]}"
			storm_run "keygate" "$repo" "$n" "$KG" clone --url "ssh://git@127.0.0.1:$KPORT/bench/$repo.git" --dir "$W"
			curl -sf "http://127.0.0.1:$HPORT/metrics" | grep '^keygate_pack_cache_requests_total' | tr '\n' ' ' >&2
			echo >&2
			stop "$KG"
		done
		if ((STORM_PROTO_N > 0)); then
			start_sshd "AuthorizedKeysFile $(authorized_keys 1000 "$D1K")"
			storm_run "OpenSSH sshd+git-upload-pack" "$repo" "$STORM_PROTO_N" "$SSHD" upload-pack --addr "127.0.0.1:$SPORT" --user "$ME" \
				--path "$D1K/repositories/bench/$repo.git"
			stop "$SSHD"
			start_keygate "$D1K" "$KPORT" "$HPORT" "${STORM_KG[@]}"
			storm_run "keygate" "$repo" "$STORM_PROTO_N" "$KG" upload-pack --addr "127.0.0.1:$KPORT" --path "bench/$repo.git"
			stop "$KG"
		fi
	done
	SERVER_PIN=("${saved_pin[@]}")
	start_keygate "$D1K" "$KPORT" "$HPORT"
	KG1K=$KG
fi

# --- idle authenticated connections to keygate ---
[[ $STORM_ONLY == 1 ]] && IDLE=10
log "holding $IDLE idle connections to keygate"
sleep 2
r0=$(rss_kib "$KG1K")
"${LOAD_PIN[@]}" "$BIN/keygate-load" hold --addr "127.0.0.1:$KPORT" --key "$D1K/id" --host-key-check=false \
	--conns "$IDLE" --concurrency 8 --duration 20s --json >"$W/hold.json" 2>"$W/hold.err" &
HP=$!
PIDS+=("$HP")
for _ in $(seq 1 1200); do
	grep -q '^holding' "$W/hold.err" 2>/dev/null && break
	kill -0 "$HP" 2>/dev/null || break
	sleep 0.1
done
sleep 3 # settle (keepalive goroutines start within a second)
r1=$(rss_kib "$KG1K")
g1=$(curl -sf "http://127.0.0.1:$HPORT/metrics" | awk '/^go_goroutines /{print $2}')
wait "$HP" || true
opened=$(json_num opened <"$W/hold.json")
IDLE_KIB=$(awk -v a="$r0" -v b="$r1" -v n="${opened:-0}" 'BEGIN{ if (n>0) printf "%.1f", (b-a)/n; else print "-" }')
log "idle: $opened open, RSS $r0 -> $r1 KiB, goroutines $g1"
stop "$KG1K"

# --- report ---
echo
echo "keygate vs OpenSSH $(/usr/sbin/sshd -V 2>&1 | head -1 | cut -d, -f1) — $(nproc) CPUs, $(date -u +%Y-%m-%dT%H:%MZ), ${DUR}s runs, $CONC workers (keygate-load on the same machine; $PINNING)"
printf '%-24s %9s %12s %9s %16s %8s\n' server keys handshakes/s "p99 ms" "CPU ms/handshake" "RSS MiB"
printf '%s\n' "${ROWS[@]}"
echo
printf 'git clone, %.0f MB of random blobs (best of 3): keygate %s MB/s, OpenSSH sshd + git-upload-pack %s MB/s\n' \
	"$(awk -v s="$SIZE" 'BEGIN{print s/1e6}')" "$K_MBPS" "$S_MBPS"
printf 'idle authenticated connections to keygate: %s open, RSS +%s KiB per connection, %s goroutines in all\n' \
	"${opened:-0}" "$IDLE_KIB" "${g1:-?}"
if ((${#STORM_ROWS[@]})); then
	echo
	echo "clone storms: N identical clones at once, clients and server sharing the CPUs; each keygate run on an empty pack cache"
	printf '%-28s %-8s %-12s %5s %9s %9s %11s %5s\n' server repo mode N "wall s" "CPU s" "written MB" ok
	printf '%s\n' "${STORM_ROWS[@]}"
fi
log "done in $(($(date +%s) - START)) s"
