#!/usr/bin/env bash
# Test services for `make test`, all on loopback, on ports no default install uses. No Docker.
#
#   redis          one Redis                                   127.0.0.1:6391
#   elasticsearch  one Elasticsearch 8.19 node                 http://127.0.0.1:9251
#   redis-cluster  a Redis Cluster, 3 masters + 3 replicas     127.0.0.1:7101..7106 (node timeout 3 s)
#   es-cluster     an Elasticsearch cluster of 2 nodes         http://127.0.0.1:9261 (master+data),
#                  "readside-test-cluster"                     http://127.0.0.1:9262 (data only: tests stop it)
#
#   scripts/testenv.sh [up [PIECE...]] start or repair the pieces named (redis, elasticsearch, redis-cluster,
#                                      es-cluster; all by default) that are not healthy (idempotent;
#                                      instant when they are). A cluster node that a test killed or stopped
#                                      is started again; a Redis Cluster that cannot be repaired is made
#                                      anew. The Elasticsearch nodes start in parallel (~1-2 min cold).
#                                      `up` also installs the tools tests run when missing: Debian's
#                                      chromium (headless: the status page's browser test) and promtool
#                                      (apt-get prometheus: the alert rules' checks).
#   scripts/testenv.sh down [PIECE...] stop the pieces named, all by default; their data stays
#   scripts/testenv.sh status          say how each piece is (exit 0 only when all are healthy)
#
# Environment (all optional):
#   READSIDE_TEST_STATE                  state dir                              (/var/lib/readside)
#   READSIDE_TEST_REDIS_PORT             Redis port                             (6391)
#   READSIDE_TEST_ES_PORT                Elasticsearch HTTP port                (9251)
#   READSIDE_TEST_ES_TRANSPORT_PORT      Elasticsearch transport port           (HTTP port + 100)
#   READSIDE_TEST_REDIS_CLUSTER_PORT     first Redis Cluster port (6 in a row)  (7101)
#   READSIDE_TEST_ES_CLUSTER_PORT        HTTP port of ES cluster node 1 (node 2: +1)       (9261)
#   READSIDE_TEST_ES_CLUSTER_TRANSPORT_PORT  transport port of node 1 (node 2: +1)     (HTTP port + 100)
#   READSIDE_TEST_ES_CLUSTER_HEAP        heap of each ES cluster node           (384m)
#   READSIDE_TEST_ES_VERSION             Elasticsearch version to fetch         (8.19.14, falling back to lower 8.19.x)
#   READSIDE_TEST_ES_JAVA_HOME           JDK for Elasticsearch                  (OpenJDK 17)
#
# State under READSIDE_TEST_STATE: redis-cluster/PORT/ (nodes-PORT.conf, redis.pid, redis.log),
# esc-N/ (config/, data/, logs/, es.pid, start.log) for the cluster nodes, es-*/ and redis.* for the
# single ones, elasticsearch-8.19.x/ (the unpacked integ-test zip all three nodes run from).
#
# Starting services needs root (apt-get, useradd, runuser): Elasticsearch refuses to run as root,
# so it runs as the system user readside-es. The warm path (all healthy) needs nothing.
set -euo pipefail

STATE=${READSIDE_TEST_STATE:-/var/lib/readside}
REDIS_PORT=${READSIDE_TEST_REDIS_PORT:-6391}
ES_PORT=${READSIDE_TEST_ES_PORT:-9251}
ES_TRANSPORT_PORT=${READSIDE_TEST_ES_TRANSPORT_PORT:-$((ES_PORT + 100))}
ES_VERSION=${READSIDE_TEST_ES_VERSION:-8.19.14}
ES_USER=readside-es
ES_CLUSTER=readside-test
ES_WAIT_SECONDS=240 # three JVMs starting at once on 2 cores
ES_ARTIFACT=org.elasticsearch.distribution.integ-test-zip:elasticsearch
MVN_DEP_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.8.1

ES_DATA=$STATE/es-data
ES_LOGS=$STATE/es-logs
ES_PIDFILE=$STATE/es.pid
ES_TMP=$STATE/es-tmp # ES_TMPDIR; by default it leaves a /tmp/elasticsearch-* behind per start
ES_START_LOG=$STATE/es-start.log
REDIS_PIDFILE=$STATE/redis.pid
REDIS_LOG=$STATE/redis.log

RC_PORT=${READSIDE_TEST_REDIS_CLUSTER_PORT:-7101}
RC_PORTS=()
for ((i = 0; i < 6; i++)); do RC_PORTS+=($((RC_PORT + i))); done
RC_DIR=$STATE/redis-cluster
RC_NODE_TIMEOUT=3000
RC_REPAIR_SECONDS=60 # how long a restarted node may take to rejoin before the cluster is made anew

ESC_PORT=${READSIDE_TEST_ES_CLUSTER_PORT:-9261}
ESC_TRANSPORT_PORT=${READSIDE_TEST_ES_CLUSTER_TRANSPORT_PORT:-$((ESC_PORT + 100))}
ESC_HEAP=${READSIDE_TEST_ES_CLUSTER_HEAP:-384m}
ESC_CLUSTER=readside-test-cluster

say() { printf 'testenv: %s\n' "$*"; }
die() { printf 'testenv: error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- probes (bash /dev/tcp for the single nodes)

redis_answers() { # PING gets +PONG
	# shellcheck disable=SC2016 # the inner script expands its own arguments
	timeout 2 bash -c '
		exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
		printf "PING\r\n" >&3
		IFS= read -r line <&3 && [[ $line == "+PONG"* ]]
	' _ "$REDIS_PORT" 2>/dev/null
}

http_get() { # PORT PATH: prints the raw HTTP response from an Elasticsearch port, or nothing
	# shellcheck disable=SC2016
	timeout 4 bash -c '
		exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
		printf "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nConnection: close\r\n\r\n" "$2" "$1" >&3
		cat <&3
	' _ "$1" "$2" 2>/dev/null || true
}

health_ok() { # RESPONSE: 200 and yellow or green
	[[ $1 == "HTTP/1."?" 200"* && $1 =~ \"status\":\"(green|yellow)\" ]]
}

es_health() { http_get "$ES_PORT" '/_cluster/health?wait_for_status=yellow&timeout=1s'; }
es_answers() { health_ok "$(es_health)"; }

esc_health() { # [PORT]: health of the 2-node cluster, asked of node 1 (or PORT)
	http_get "${1:-$ESC_PORT}" '/_cluster/health?wait_for_nodes=2&wait_for_status=yellow&timeout=1s'
}
esc_answers() { health_ok "$(esc_health)"; }

pid_is_es() { # PID: a live Elasticsearch server process
	[[ $1 =~ ^[0-9]+$ && -r /proc/$1/cmdline ]] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -q 'org\.elasticsearch\.bootstrap\.Elasticsearch'
}

# ---------------------------------------------------------------- setup helpers

need_root() { [[ $EUID -eq 0 ]] || die "$1 needs root (run as root, or start the services another way)"; }

apt_updated=
apt_install() { # PACKAGE... (quietly; apt's output is shown only when it fails)
	need_root "installing $*"
	export DEBIAN_FRONTEND=noninteractive
	local out
	out=$(mktemp)
	if [[ -z $apt_updated ]]; then
		say "apt-get update"
		apt-get update -qq >"$out" 2>&1 || { cat "$out" >&2; rm -f "$out"; die "apt-get update failed"; }
		apt_updated=1
	fi
	say "apt-get install $*"
	apt-get install -y -qq --no-install-recommends "$@" >"$out" 2>&1 </dev/null ||
		{ cat "$out" >&2; rm -f "$out"; die "apt-get install $* failed"; }
	rm -f "$out"
}

need_redis() { # redis-server and redis-cli (Debian's redis-server brings redis-tools)
	if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then apt_install redis-server redis-tools; fi
}

lock() { # GROUP...: serialize concurrent `up`/`down` per group (es: both Elasticsearch pieces and the
	# unpacked distribution, fd 8; redis: both Redis pieces, fd 9), so restarting a Redis node need not
	# wait for an Elasticsearch start. Groups are taken in that order. fds 8 and 9 must not leak into daemons.
	mkdir -p "$STATE"
	command -v flock >/dev/null || return 0
	local g
	for g in es redis; do
		[[ " $* " == *" $g "* ]] || continue
		case $g in
		es) exec 8>"$STATE/.testenv-es.lock" && flock -w 600 8 ;;
		redis) exec 9>"$STATE/.testenv-redis.lock" && flock -w 600 9 ;;
		esac || die "could not lock $STATE/.testenv-$g.lock"
	done
}

# ---------------------------------------------------------------- Redis

redis_up() {
	if redis_answers; then
		say "redis: answers on 127.0.0.1:$REDIS_PORT"
		return
	fi
	need_redis
	say "redis: starting on 127.0.0.1:$REDIS_PORT (no persistence)"
	redis-server --bind 127.0.0.1 --port "$REDIS_PORT" \
		--save '' --appendonly no \
		--daemonize yes --pidfile "$REDIS_PIDFILE" --logfile "$REDIS_LOG" --dir "$STATE" \
		</dev/null >/dev/null 2>&1 8>&- 9>&- || true
	local i
	for ((i = 0; i < 100; i++)); do
		redis_answers && { say "redis: ready"; return; }
		sleep 0.1
	done
	[[ -r $REDIS_LOG ]] && tail -n 20 "$REDIS_LOG" >&2
	die "redis did not answer on 127.0.0.1:$REDIS_PORT (log: $REDIS_LOG)"
}

redis_down() {
	if ! redis_answers; then
		say "redis: not running on 127.0.0.1:$REDIS_PORT"
		return
	fi
	say "redis: shutting down 127.0.0.1:$REDIS_PORT"
	if command -v redis-cli >/dev/null; then
		redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
	else
		# shellcheck disable=SC2016
		timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" && printf "SHUTDOWN NOSAVE\r\n" >&3' _ "$REDIS_PORT" 2>/dev/null || true
	fi
	local i
	for ((i = 0; i < 50; i++)); do
		redis_answers || { rm -f "$REDIS_PIDFILE"; return; }
		sleep 0.1
	done
	die "redis on 127.0.0.1:$REDIS_PORT still answers after shutdown"
}

# ---------------------------------------------------------------- Redis Cluster

rc_cli() { # PORT ARG...: a command to one cluster node (raw output, nothing when it does not answer)
	local p=$1
	shift
	command -v redis-cli >/dev/null || return 1
	timeout 3 redis-cli -h 127.0.0.1 -p "$p" "$@" 2>/dev/null </dev/null
}

rnode_answers() { [[ $(rc_cli "$1" ping) == PONG ]]; }

rnode_pid() { # PORT: prints the pid of our live redis-server on PORT (from its pidfile)
	local pid
	[[ -r $RC_DIR/$1/redis.pid ]] || return 1
	pid=$(<"$RC_DIR/$1/redis.pid")
	[[ $pid =~ ^[0-9]+$ && -r /proc/$pid/cmdline ]] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "redis-server.*:$1\b" || return 1
	printf '%s\n' "$pid"
}

rnode_start() { # PORT: start one node; an existing nodes-PORT.conf makes it rejoin its cluster
	local d=$RC_DIR/$1
	mkdir -p "$d"
	redis-server --bind 127.0.0.1 --port "$1" \
		--cluster-enabled yes --cluster-config-file "nodes-$1.conf" --cluster-node-timeout "$RC_NODE_TIMEOUT" \
		--cluster-replica-validity-factor 0 \
		--save '' --appendonly no \
		--daemonize yes --pidfile "$d/redis.pid" --logfile "$d/redis.log" --dir "$d" \
		</dev/null >/dev/null 2>&1 8>&- 9>&- || true
}

rnode_stop() { # PORT
	local pid i
	if pid=$(rnode_pid "$1"); then
		kill "$pid" 2>/dev/null || true
		for ((i = 0; i < 50; i++)); do
			rnode_pid "$1" >/dev/null || break
			sleep 0.1
		done
		rnode_pid "$1" >/dev/null && kill -KILL "$pid" 2>/dev/null
	elif rnode_answers "$1"; then # ours without a pidfile
		rc_cli "$1" shutdown nosave >/dev/null || true
	fi
	for ((i = 0; i < 50; i++)); do
		rnode_answers "$1" || { rm -f "$RC_DIR/$1/redis.pid"; return; }
		sleep 0.1
	done
	die "redis-cluster: 127.0.0.1:$1 still answers after shutdown"
}

rnode_view() { # PORT: the "id address" of every node that PORT knows, sorted
	rc_cli "$1" cluster nodes | awk 'NF >= 8 { split($2, a, "[@,]"); print $1, a[1] }' | sort
}

rnode_problem() { # PORT: prints what is wrong with the cluster as PORT sees it; fails when something is
	local p=$1 out
	out=$(printf 'CLUSTER INFO\nCLUSTER NODES\n' | timeout 3 redis-cli -h 127.0.0.1 -p "$p" 2>/dev/null) || out=
	awk -v p="127.0.0.1:$p" '
		{ sub(/\r$/, "") }
		/^cluster_[a-z_]+:/ { split($0, kv, ":"); info[kv[1]] = kv[2]; next }
		NF < 8 { next }
		{
			n++; split($2, a, "[@,]"); nf = split($3, f, ",")
			for (i = 1; i <= nf; i++)
				if (f[i] == "fail" || f[i] == "fail?" || f[i] == "handshake" || f[i] == "noaddr") bad = bad ", " a[1] " is " $3
			if ($8 != "connected") bad = bad ", " a[1] " is " $8
			if ($3 ~ /master/ && NF > 8) masters[$1] = a[1]
			if ($3 ~ /slave/) { replicas++; of[$4]++ }
		}
		END {
			if (!("cluster_state" in info)) { print p " does not answer"; exit 1 }
			if (info["cluster_state"] != "ok") { print p " says cluster_state:" info["cluster_state"]; exit 1 }
			if (info["cluster_slots_ok"] != 16384) { print p ": " info["cluster_slots_ok"] " of 16384 slots ok"; exit 1 }
			if (n != 6) { print p " knows " n " nodes, not 6"; exit 1 }
			if (bad != "") { print p " sees " substr(bad, 3); exit 1 }
			m = 0
			for (id in masters) { m++; if (!(id in of)) { print p ": master " masters[id] " has no replica"; exit 1 } }
			if (m != 3 || replicas != 3) { print p " sees " m " masters with slots and " replicas " replicas, not 3 and 3"; exit 1 }
		}' <<<"$out"
}

rcluster_problem() { # prints the first thing wrong with the cluster; succeeds when it is healthy
	local p
	for p in "${RC_PORTS[@]}"; do rnode_problem "$p" || return 1; done
}

rcluster_wait() { # SECONDS: until healthy; prints the last problem and fails when time runs out
	local deadline=$((SECONDS + $1)) problem
	while :; do
		problem=$(rcluster_problem) && return 0
		((SECONDS < deadline)) || { printf '%s\n' "$problem"; return 1; }
		sleep 0.2
	done
}

rcluster_wait_answer() { # until all 6 answer PING
	local p i
	for p in "${RC_PORTS[@]}"; do
		for ((i = 0; i < 100; i++)); do
			rnode_answers "$p" && continue 2
			sleep 0.1
		done
		[[ -r $RC_DIR/$p/redis.log ]] && tail -n 20 "$RC_DIR/$p/redis.log" >&2
		die "redis-cluster: 127.0.0.1:$p did not answer (log: $RC_DIR/$p/redis.log)"
	done
}

rcluster_create() { # all 6 answer and are empty: make them one cluster
	local p addrs=()
	for p in "${RC_PORTS[@]}"; do addrs+=("127.0.0.1:$p"); done
	say "redis-cluster: creating 3 masters + 3 replicas on ${addrs[*]}"
	redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes \
		</dev/null >"$RC_DIR/create.log" 2>&1 8>&- 9>&- ||
		{ tail -n 20 "$RC_DIR/create.log" >&2; die "redis-cli --cluster create failed (log: $RC_DIR/create.log)"; }
	local problem
	problem=$(rcluster_wait 30) || die "redis-cluster: not healthy 30 s after creating it: $problem"
	say "redis-cluster: ready"
}

rcluster_recreate() { # REASON
	say "redis-cluster: $1; making it anew"
	local p
	for p in "${RC_PORTS[@]}"; do rnode_stop "$p"; done
	for p in "${RC_PORTS[@]}"; do
		rm -rf "${RC_DIR:?}/$p"
		rnode_start "$p"
	done
	rcluster_wait_answer
	rcluster_create
}

rcluster_up() {
	local problem
	if problem=$(rcluster_problem); then
		say "redis-cluster: healthy on 127.0.0.1:${RC_PORTS[0]}-${RC_PORTS[5]}"
		return
	fi
	need_redis
	mkdir -p "$RC_DIR"
	local p started=()
	for p in "${RC_PORTS[@]}"; do
		rnode_answers "$p" && continue
		rnode_pid "$p" >/dev/null && continue # starting (daemonized, loading)
		rnode_start "$p"
		started+=("$p")
	done
	rcluster_wait_answer
	if ((${#started[@]})); then
		say "redis-cluster: started ${started[*]}"
		problem=$(rcluster_problem) && { say "redis-cluster: ready"; return; }
	fi

	# Six fresh nodes get created; six that share one nodes.conf view get time to heal (a restarted
	# master rejoins as a replica, a failover completes); anything else is made anew.
	local fresh=0 first='' same=1 info view
	for p in "${RC_PORTS[@]}"; do
		info=$(rc_cli "$p" cluster info) || true
		[[ $info == *cluster_known_nodes:1[^0-9]* && $info == *cluster_slots_assigned:0[^0-9]* ]] && fresh=$((fresh + 1))
		view=$(rnode_view "$p")
		[[ -z $first ]] && first=$view
		[[ $view == "$first" && $(wc -l <<<"$view") -eq 6 && $view == *" 127.0.0.1:$p"* ]] || same=0
	done
	if ((fresh == 6)); then
		rcluster_create
		return
	fi
	if ((same == 0)); then
		rcluster_recreate "its nodes do not describe one cluster of these 6 (nodes.conf from another run?)"
		return
	fi
	say "redis-cluster: waiting for it to heal ($problem)"
	if problem=$(rcluster_wait "$RC_REPAIR_SECONDS"); then
		say "redis-cluster: ready"
		return
	fi
	rcluster_recreate "still unhealthy after ${RC_REPAIR_SECONDS}s ($problem)"
}

rcluster_down() {
	local p any=
	for p in "${RC_PORTS[@]}"; do
		if rnode_pid "$p" >/dev/null || rnode_answers "$p"; then
			any=1
			rnode_stop "$p"
		fi
	done
	if [[ -n $any ]]; then say "redis-cluster: stopped 127.0.0.1:${RC_PORTS[0]}-${RC_PORTS[5]}"; else say "redis-cluster: not running"; fi
}

rcluster_status() {
	local problem p role ok=0 line=''
	if problem=$(rcluster_problem); then
		say "redis-cluster 127.0.0.1:${RC_PORTS[0]}-${RC_PORTS[5]}: healthy (3 masters, 3 replicas, 16384 slots)"
	else
		say "redis-cluster 127.0.0.1:${RC_PORTS[0]}-${RC_PORTS[5]}: NOT healthy: $problem"
		ok=1
	fi
	for p in "${RC_PORTS[@]}"; do
		role=$(rc_cli "$p" role | head -n 1) || role=
		line+=" $p:${role:-down}"
	done
	say "  nodes:$line"
	return "$ok"
}

# ---------------------------------------------------------------- Elasticsearch nodes

# Nodes: "single" (the single node at ES_PORT), "esc1" and "esc2" (the 2-node cluster).
# es_node KEY sets N_* for one of them.
es_node() {
	case $1 in
	single)
		N_LABEL=elasticsearch N_NAME=$ES_CLUSTER N_CLUSTER=$ES_CLUSTER
		N_HTTP=$ES_PORT N_TRANSPORT=$ES_TRANSPORT_PORT N_HEAP=512m
		N_DIR=$STATE N_CONF='' N_DATA=$ES_DATA N_LOGS=$ES_LOGS N_TMP=$ES_TMP
		N_PIDFILE=$ES_PIDFILE N_START_LOG=$ES_START_LOG
		;;
	esc1 | esc2)
		local n=${1#esc}
		N_LABEL="es-cluster node $n" N_NAME=readside-esc-$n N_CLUSTER=$ESC_CLUSTER
		N_HTTP=$((ESC_PORT + n - 1)) N_TRANSPORT=$((ESC_TRANSPORT_PORT + n - 1)) N_HEAP=$ESC_HEAP
		N_DIR=$STATE/esc-$n N_CONF=$STATE/esc-$n/config N_DATA=$STATE/esc-$n/data N_LOGS=$STATE/esc-$n/logs
		N_TMP=$STATE/esc-$n/tmp N_PIDFILE=$STATE/esc-$n/es.pid N_START_LOG=$STATE/esc-$n/start.log
		;;
	*) die "unknown Elasticsearch node $1" ;;
	esac
}

node_ready() { # KEY
	es_node "$1"
	case $1 in
	single) es_answers ;;
	*) health_ok "$(esc_health "$N_HTTP")" ;;
	esac
}

node_pid() { # KEY: prints the pid from the node's pidfile if it is a live Elasticsearch
	es_node "$1"
	local pid
	[[ -r $N_PIDFILE ]] || return 1
	pid=$(<"$N_PIDFILE")
	pid_is_es "$pid" && printf '%s\n' "$pid"
}

es_java_home() {
	local j
	for j in "${READSIDE_TEST_ES_JAVA_HOME:-}" /usr/lib/jvm/java-17-openjdk-amd64 /usr/lib/jvm/java-17-openjdk-*; do
		[[ -n $j && -x $j/bin/java ]] && { printf '%s\n' "$j"; return; }
	done
	if j=$(command -v java); then
		j=$(readlink -f "$j")
		printf '%s\n' "${j%/bin/java}"
		return
	fi
	die "no JDK found for Elasticsearch (set READSIDE_TEST_ES_JAVA_HOME)"
}

es_home() { # prints an unpacked 8.19.x under the state dir, fetching and unpacking it if needed
	local v dir
	if [[ -x $STATE/elasticsearch-$ES_VERSION/bin/elasticsearch ]]; then
		printf '%s\n' "$STATE/elasticsearch-$ES_VERSION"
		return
	fi
	# Adopt any 8.19.x already unpacked (newest first) before going to the network.
	dir=$(find "$STATE" -maxdepth 1 -type d -name 'elasticsearch-8.19.*' 2>/dev/null | sort -V -r | while read -r d; do
		[[ -x $d/bin/elasticsearch ]] && { printf '%s\n' "$d"; break; }
	done)
	if [[ -n $dir ]]; then
		printf '%s\n' "$dir"
		return
	fi

	local zip="" candidates=("$ES_VERSION")
	# Fall back to lower patches of the same minor if the pinned one does not resolve.
	if [[ $ES_VERSION =~ ^8\.19\.([0-9]+)$ ]]; then
		local p
		for ((p = BASH_REMATCH[1] - 1; p >= 0 && p >= BASH_REMATCH[1] - 6; p--)); do candidates+=("8.19.$p"); done
	fi
	mkdir -p "$STATE/dist"
	for v in "${candidates[@]}"; do
		local m2=${HOME:-/root}/.m2/repository/org/elasticsearch/distribution/integ-test-zip/elasticsearch/$v/elasticsearch-$v.zip
		if [[ -s $STATE/dist/elasticsearch-$v.zip ]]; then
			zip=$STATE/dist/elasticsearch-$v.zip
		elif [[ -s $m2 ]]; then
			zip=$m2
		else
			say "elasticsearch: fetching $ES_ARTIFACT:$v:zip from Maven Central" >&2
			command -v mvn >/dev/null || die "mvn not found (needed to fetch Elasticsearch)"
			local tmp
			tmp=$(mktemp -d "$STATE/dist/.fetch.XXXXXX")
			if (cd "$tmp" && mvn -B -q -Dstyle.color=never "$MVN_DEP_PLUGIN:copy" -Dartifact="$ES_ARTIFACT:$v:zip" \
				-DoutputDirectory="$tmp" </dev/null >"$tmp/mvn.log" 2>&1) && [[ -s $tmp/elasticsearch-$v.zip ]]; then
				mv "$tmp/elasticsearch-$v.zip" "$STATE/dist/elasticsearch-$v.zip"
				zip=$STATE/dist/elasticsearch-$v.zip
			else
				say "elasticsearch: $v did not resolve" >&2
				grep -m 1 'ERROR' "$tmp/mvn.log" | cut -c1-300 >&2 || true
			fi
			rm -rf "$tmp"
		fi
		[[ -n $zip ]] && break
	done
	[[ -n $zip ]] || die "could not fetch any of Elasticsearch ${candidates[*]} from Maven Central"

	command -v unzip >/dev/null || apt_install unzip >&2
	say "elasticsearch: unpacking $(basename "$zip")" >&2
	local tmp
	tmp=$(mktemp -d "$STATE/.unpack.XXXXXX")
	unzip -q "$zip" -d "$tmp"
	[[ -x $tmp/elasticsearch-$v/bin/elasticsearch ]] || { rm -rf "$tmp"; die "unexpected layout in $zip"; }
	mv "$tmp/elasticsearch-$v" "$STATE/elasticsearch-$v"
	rm -rf "$tmp"
	printf '%s\n' "$STATE/elasticsearch-$v"
}

es_write_config() { # KEY HOME
	es_node "$1"
	local yml=${N_CONF:-$2/config}/elasticsearch.yml
	{
		if [[ $1 == single ]]; then
			cat <<EOF
# Written by scripts/testenv.sh: a single loopback node for tests. Edits are overwritten.
discovery.type: single-node
EOF
		else
			# Node 1 is the only master-eligible node, so stopping node 2 keeps a quorum.
			cat <<EOF
# Written by scripts/testenv.sh: $N_LABEL of a 2-node loopback cluster for tests. Edits are overwritten.
discovery.seed_hosts: ["127.0.0.1:$ESC_TRANSPORT_PORT", "127.0.0.1:$((ESC_TRANSPORT_PORT + 1))"]
cluster.initial_master_nodes: [readside-esc-1]
node.roles: $([[ $1 == esc1 ]] && echo '[master, data, ingest]' || echo '[data, ingest]')
EOF
		fi
		cat <<EOF
cluster.name: $N_CLUSTER
node.name: $N_NAME
network.host: 127.0.0.1
http.port: $N_HTTP
transport.port: $N_TRANSPORT
path.data: $N_DATA
path.logs: $N_LOGS
xpack.security.enabled: false
cluster.routing.allocation.disk.watermark.low: 1b
cluster.routing.allocation.disk.watermark.high: 1b
cluster.routing.allocation.disk.watermark.flood_stage: 1b
indices.breaker.total.use_real_memory: false
action.destructive_requires_name: false
EOF
	} >"$yml"
}

es_fail() { # MESSAGE KEY...: says why, with the end of each node's console output (stack frames left out)
	printf 'testenv: error: %s\n' "$1" >&2
	shift
	local key f
	for key in "$@"; do
		es_node "$key"
		for f in "$N_START_LOG" "$N_LOGS/$N_CLUSTER.log"; do
			if [[ -s $f ]]; then
				printf -- '--- %s: end of %s (stack frames omitted) ---\n' "$N_LABEL" "$f" >&2
				grep -v '^[[:space:]]' "$f" | tail -n 30 | cut -c1-400 >&2
				break
			fi
		done
		printf 'testenv: %s: full log: %s\n' "$N_LABEL" "$N_LOGS/$N_CLUSTER.log" >&2
	done
	exit 1
}

declare -A ES_CLI=()      # KEY -> pid of its launcher (bin/elasticsearch -d), while it runs
declare -A ES_CLI_RC=()   # KEY -> launcher exit status, once it has exited
ES_WAITING=()             # nodes es_launch_all started or found starting

es_launch() { # KEY: start a node in the background (its launcher detaches once the node is up)
	es_node "$1"
	need_root "starting Elasticsearch"
	local home java_home
	home=$(es_home)
	java_home=$(es_java_home)
	es_node "$1"
	if ! id -u "$ES_USER" >/dev/null 2>&1; then
		say "elasticsearch: creating system user $ES_USER"
		useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$ES_USER"
	fi
	rm -rf "$N_TMP"
	mkdir -p "$N_DATA" "$N_LOGS" "$N_TMP"
	if [[ -n $N_CONF && ! -r $N_CONF/jvm.options ]]; then # its own copy of the distribution's config/
		rm -rf "$N_CONF"
		cp -r "$home/config" "$N_CONF"
		rm -f "$N_CONF/elasticsearch.keystore" # each node creates its own
	fi
	es_write_config "$1" "$home"
	chown "$ES_USER" "$STATE" # the single node writes its pidfile here
	chown -R "$ES_USER" "$home" "$N_DATA" "$N_LOGS" "$N_TMP"
	[[ -n $N_CONF ]] && chown -R "$ES_USER" "$N_DIR"
	rm -f "$N_PIDFILE"
	runuser -u "$ES_USER" -- test -x "$home/bin/elasticsearch" -a -w "$N_DIR" ||
		die "user $ES_USER cannot reach $home (is a parent directory private?)"
	say "$N_LABEL: starting $(basename "$home") on http://127.0.0.1:$N_HTTP (heap $N_HEAP)"
	local conf=()
	[[ -n $N_CONF ]] && conf=(ES_PATH_CONF="$N_CONF")
	# setsid: a session of its own, so the node outlives whatever started it
	# (a test restoring the cluster, a shell whose process group is ended).
	(cd "$home" && exec setsid runuser -u "$ES_USER" -- env "${conf[@]}" ES_JAVA_HOME="$java_home" ES_TMPDIR="$N_TMP" \
		ES_JAVA_OPTS="-Xms$N_HEAP -Xmx$N_HEAP" bin/elasticsearch -d -p "$N_PIDFILE") </dev/null >"$N_START_LOG" 2>&1 8>&- 9>&- &
	ES_CLI[$1]=$!
}

es_launch_all() { # KEY...: launch the nodes that are neither healthy nor starting; do not wait
	local key pid
	# A fresh node 1 makes a new cluster that node 2's old data would refuse to join.
	if [[ " $* " == *" esc1 "* ]] && ! node_pid esc1 >/dev/null && ! node_ready esc1; then
		es_node esc1
		if [[ ! -d $N_DATA/_state ]]; then
			es_node esc2
			if [[ -d $N_DATA/_state ]]; then
				say "es-cluster: node 1 has no data: clearing node 2's too"
				es_stop esc2
				rm -rf "${N_DATA:?}"
			fi
		fi
	fi
	for key in "$@"; do
		if node_ready "$key"; then
			say "$N_LABEL: answers on http://127.0.0.1:$N_HTTP"
			continue
		fi
		if pid=$(node_pid "$key"); then
			say "$N_LABEL: already starting (pid $pid), waiting for it"
		else
			es_launch "$key"
		fi
		ES_WAITING+=("$key")
	done
}

es_wait_all() { # wait for every node in ES_WAITING; fail with its log when one dies or time runs out
	local deadline=$((SECONDS + ES_WAIT_SECONDS)) key rc pending
	while ((${#ES_WAITING[@]})); do
		pending=()
		for key in "${ES_WAITING[@]}"; do
			if node_ready "$key"; then
				say "$N_LABEL: ready"
				continue
			fi
			if [[ -n ${ES_CLI[$key]:-} && -z ${ES_CLI_RC[$key]:-} ]] && ! kill -0 "${ES_CLI[$key]}" 2>/dev/null; then
				rc=0
				wait "${ES_CLI[$key]}" || rc=$?
				ES_CLI_RC[$key]=$rc
				((rc == 0)) || es_fail "$N_LABEL exited with status $rc while starting" "$key"
			fi
			# Once the launcher has detached (or for an adopted start), the server must stay alive.
			if [[ -z ${ES_CLI[$key]:-} || -n ${ES_CLI_RC[$key]:-} ]] && ! node_pid "$key" >/dev/null; then
				es_fail "$N_LABEL is not running" "$key"
			fi
			pending+=("$key")
		done
		ES_WAITING=(${pending[@]+"${pending[@]}"})
		((${#ES_WAITING[@]})) || break
		((SECONDS < deadline)) || es_fail "not ready within ${ES_WAIT_SECONDS}s: ${ES_WAITING[*]}" "${ES_WAITING[@]}"
		sleep 1
	done
}

es_stop() { # KEY: SIGTERM, wait for the exit
	local pid i
	es_node "$1"
	if ! pid=$(node_pid "$1"); then
		if health_ok "$(http_get "$N_HTTP" "/_cluster/health?timeout=1s")"; then
			say "$N_LABEL: http://127.0.0.1:$N_HTTP answers but $N_PIDFILE names no live process; not stopping it"
		else
			say "$N_LABEL: not running"
		fi
		rm -f "$N_PIDFILE"
		return
	fi
	say "$N_LABEL: stopping pid $pid"
	kill "$pid" 2>/dev/null || true
	for ((i = 0; i < 600; i++)); do
		pid_is_es "$pid" || { rm -f "$N_PIDFILE"; return; }
		sleep 0.1
	done
	say "$N_LABEL: pid $pid still alive after 60 s, killing it"
	kill -KILL "$pid" 2>/dev/null || true
	rm -f "$N_PIDFILE"
}

es_status() { # KEY: one line; fails when the node is not healthy
	local r pid
	es_node "$1"
	if [[ $1 == single ]]; then r=$(es_health); else r=$(esc_health "$N_HTTP"); fi
	if health_ok "$r"; then
		[[ $r =~ \"status\":\"([a-z]+)\" ]]
		local st=${BASH_REMATCH[1]} nodes=''
		[[ $r =~ \"number_of_nodes\":([0-9]+) ]] && nodes=", ${BASH_REMATCH[1]} node(s)"
		say "$N_LABEL http://127.0.0.1:$N_HTTP: answers ($st$nodes)"
		return 0
	elif [[ -n $r ]]; then
		local why
		why=$(head -n 1 <<<"$r" | tr -d '\r')
		[[ $r =~ \"number_of_nodes\":([0-9]+) ]] && why+=", ${BASH_REMATCH[1]} node(s) in the cluster"
		say "$N_LABEL http://127.0.0.1:$N_HTTP: answers but not healthy: $why"
	elif pid=$(node_pid "$1"); then
		say "$N_LABEL http://127.0.0.1:$N_HTTP: not answering (pid $pid is running, maybe starting)"
	else
		say "$N_LABEL http://127.0.0.1:$N_HTTP: not answering"
	fi
	return 1
}

# ---------------------------------------------------------------- commands

PIECES=(redis elasticsearch redis-cluster es-cluster)

WANT=()
want_pieces() { # PIECE...: sets WANT to the pieces named (all of them when none is)
	local piece
	(($#)) || set -- "${PIECES[@]}"
	for piece in "$@"; do
		[[ " ${PIECES[*]} " == *" $piece "* ]] || die "unknown piece '$piece' (use ${PIECES[*]})"
	done
	WANT=("$@")
}

piece_healthy() { # PIECE
	case $1 in
	redis) redis_answers ;;
	elasticsearch) es_answers ;;
	redis-cluster) rcluster_problem >/dev/null ;;
	es-cluster) esc_answers ;;
	esac
}

# Tools the tests run besides the services, installed when missing (one apt-get for all); instant
# when there: Debian's chromium, headless, for the browser test of the projector's status page, and
# promtool, for deploy/'s checks of the alert rules (Debian's prometheus package ships it).
tools_up() {
	local missing=()
	command -v chromium >/dev/null || missing+=(chromium)
	command -v promtool >/dev/null || missing+=(prometheus)
	((${#missing[@]} == 0)) || apt_install "${missing[@]}"
}

cmd_up() {
	local piece keys=() healthy=1
	tools_up
	want_pieces "$@"
	local want=("${WANT[@]}")
	# Warm path: nothing to do, touch nothing.
	for piece in "${want[@]}"; do piece_healthy "$piece" || { healthy=; break; }; done
	if [[ -n $healthy ]]; then
		local where=()
		for piece in "${want[@]}"; do
			case $piece in
			redis) where+=("redis 127.0.0.1:$REDIS_PORT") ;;
			elasticsearch) where+=("elasticsearch http://127.0.0.1:$ES_PORT") ;;
			redis-cluster) where+=("redis-cluster 127.0.0.1:${RC_PORTS[0]}-${RC_PORTS[5]}") ;;
			es-cluster) where+=("es-cluster http://127.0.0.1:$ESC_PORT,$((ESC_PORT + 1))") ;;
			esac
		done
		local IFS=,
		say "healthy:${where[*]/#/ }"
		return
	fi
	local groups=()
	[[ " ${want[*]} " == *" elasticsearch "* || " ${want[*]} " == *" es-cluster "* ]] && groups+=(es)
	[[ " ${want[*]} " == *" redis "* || " ${want[*]} " == *" redis-cluster "* ]] && groups+=(redis)
	lock "${groups[@]}"
	# Elasticsearch is slow to start: launch its nodes first, set up Redis while they boot.
	[[ " ${want[*]} " == *" es-cluster "* ]] && keys+=(esc1 esc2)
	[[ " ${want[*]} " == *" elasticsearch "* ]] && keys+=(single)
	((${#keys[@]} == 0)) || es_launch_all "${keys[@]}"
	[[ " ${want[*]} " != *" redis "* ]] || redis_up
	[[ " ${want[*]} " != *" redis-cluster "* ]] || rcluster_up
	es_wait_all
}

cmd_down() {
	local piece key
	want_pieces "$@"
	local pieces=("${WANT[@]}")
	lock es redis
	for piece in "${pieces[@]}"; do
		case $piece in
		redis) redis_down ;;
		elasticsearch) es_stop single ;;
		redis-cluster) rcluster_down ;;
		es-cluster) for key in esc2 esc1; do es_stop "$key"; done ;;
		esac
	done
}

cmd_status() {
	local ok=0
	if redis_answers; then
		say "redis 127.0.0.1:$REDIS_PORT: answers"
	else
		say "redis 127.0.0.1:$REDIS_PORT: not answering"
		ok=1
	fi
	es_status single || ok=1
	rcluster_status || ok=1
	es_status esc1 || ok=1
	es_status esc2 || ok=1
	return "$ok"
}

case ${1:-up} in
up) shift; cmd_up "$@" ;;
down) shift; cmd_down "$@" ;;
status) cmd_status ;;
-h | --help | help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" ;;
*) die "unknown command '$1' (use up, down or status)" ;;
esac
