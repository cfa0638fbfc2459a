#!/usr/bin/env bash
# Test services for `make test`: a Redis and an Elasticsearch 8.19 of the project's own,
# on loopback, on ports no default install uses. No Docker.
#
#   scripts/testenv.sh [up]   start whatever does not answer yet (idempotent; instant when both answer)
#   scripts/testenv.sh down   stop the project's Redis and Elasticsearch
#   scripts/testenv.sh status say whether each answers (exit 0 only when both do)
#
# Environment (all optional):
#   READSIDE_TEST_STATE                 state dir                        (/var/lib/readside)
#   READSIDE_TEST_REDIS_PORT            Redis port                       (6391)
#   READSIDE_TEST_ES_PORT               Elasticsearch HTTP port          (9251)
#   READSIDE_TEST_ES_TRANSPORT_PORT     Elasticsearch transport port     (HTTP port + 100)
#   READSIDE_TEST_ES_VERSION            Elasticsearch version to fetch   (8.19.14, falling back to lower 8.19.x)
#   READSIDE_TEST_ES_JAVA_HOME          JDK for Elasticsearch            (OpenJDK 17)
#
# Starting services needs root (apt-get, useradd, runuser): Elasticsearch refuses to run as root,
# so it runs as the system user readside-es. The warm path (both answer) needs nothing.
set -euo pipefail

STATE=${READSIDE_TEST_STATE:-/var/lib/readside}
REDIS_PORT=${READSIDE_TEST_REDIS_PORT:-6391}
ES_PORT=${READSIDE_TEST_ES_PORT:-9251}
ES_TRANSPORT_PORT=${READSIDE_TEST_ES_TRANSPORT_PORT:-$((ES_PORT + 100))}
ES_VERSION=${READSIDE_TEST_ES_VERSION:-8.19.14}
ES_USER=readside-es
ES_CLUSTER=readside-test
ES_WAIT_SECONDS=180
ES_ARTIFACT=org.elasticsearch.distribution.integ-test-zip:elasticsearch
MVN_DEP_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.8.1

ES_DATA=$STATE/es-data
ES_LOGS=$STATE/es-logs
ES_PIDFILE=$STATE/es.pid
ES_TMP=$STATE/es-tmp # ES_TMPDIR; by default it leaves a /tmp/elasticsearch-* behind per start
ES_START_LOG=$STATE/es-start.log
REDIS_PIDFILE=$STATE/redis.pid
REDIS_LOG=$STATE/redis.log

say() { printf 'testenv: %s\n' "$*"; }
die() { printf 'testenv: error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- probes (bash /dev/tcp: no curl or redis-cli needed)

redis_answers() { # PING gets +PONG
	# shellcheck disable=SC2016 # the inner script expands its own arguments
	timeout 2 bash -c '
		exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
		printf "PING\r\n" >&3
		IFS= read -r line <&3 && [[ $line == "+PONG"* ]]
	' _ "$REDIS_PORT" 2>/dev/null
}

http_get() { # PATH: prints the raw HTTP response from the Elasticsearch port, or nothing
	# shellcheck disable=SC2016
	timeout 4 bash -c '
		exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
		printf "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nConnection: close\r\n\r\n" "$2" "$1" >&3
		cat <&3
	' _ "$ES_PORT" "$1" 2>/dev/null || true
}

es_health() { http_get '/_cluster/health?wait_for_status=yellow&timeout=1s'; }

es_answers() { # cluster health reached yellow or green
	local r
	r=$(es_health)
	[[ $r == "HTTP/1."?" 200"* && $r =~ \"status\":\"(green|yellow)\" ]]
}

pid_is_es() { # PID: a live Elasticsearch server process
	[[ $1 =~ ^[0-9]+$ && -r /proc/$1/cmdline ]] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -q 'org\.elasticsearch\.bootstrap\.Elasticsearch'
}

es_pid() { # prints the pid from the pidfile if it is a live Elasticsearch
	local pid
	[[ -r $ES_PIDFILE ]] || return 1
	pid=$(<"$ES_PIDFILE")
	pid_is_es "$pid" && printf '%s\n' "$pid"
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

lock() { # serialize concurrent `up`/`down` on one state dir; fd 9 must not leak into daemons
	mkdir -p "$STATE"
	exec 9>"$STATE/.testenv.lock"
	if command -v flock >/dev/null; then
		flock -w 600 9 || die "could not lock $STATE/.testenv.lock"
	fi
}

# ---------------------------------------------------------------- Redis

redis_up() {
	if redis_answers; then
		say "redis: answers on 127.0.0.1:$REDIS_PORT"
		return
	fi
	command -v redis-server >/dev/null || apt_install redis-server
	say "redis: starting on 127.0.0.1:$REDIS_PORT (no persistence)"
	redis-server --bind 127.0.0.1 --port "$REDIS_PORT" \
		--save '' --appendonly no \
		--daemonize yes --pidfile "$REDIS_PIDFILE" --logfile "$REDIS_LOG" --dir "$STATE" \
		</dev/null >/dev/null 2>&1 9>&- || true
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

# ---------------------------------------------------------------- Elasticsearch

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

es_write_config() { # ES_HOME
	cat >"$1/config/elasticsearch.yml" <<EOF
# Written by scripts/testenv.sh: a single loopback node for tests. Edits are overwritten.
cluster.name: $ES_CLUSTER
node.name: $ES_CLUSTER
discovery.type: single-node
network.host: 127.0.0.1
http.port: $ES_PORT
transport.port: $ES_TRANSPORT_PORT
path.data: $ES_DATA
path.logs: $ES_LOGS
xpack.security.enabled: false
cluster.routing.allocation.disk.watermark.low: 1b
cluster.routing.allocation.disk.watermark.high: 1b
cluster.routing.allocation.disk.watermark.flood_stage: 1b
indices.breaker.total.use_real_memory: false
action.destructive_requires_name: false
EOF
}

es_fail() { # MESSAGE: says why, with the end of Elasticsearch's console output (stack frames left out)
	printf 'testenv: error: %s\n' "$1" >&2
	local f
	for f in "$ES_START_LOG" "$ES_LOGS/$ES_CLUSTER.log"; do
		if [[ -s $f ]]; then
			printf -- '--- end of %s (stack frames omitted) ---\n' "$f" >&2
			grep -v '^[[:space:]]' "$f" | tail -n 30 | cut -c1-400 >&2
			break
		fi
	done
	printf 'testenv: full log: %s\n' "$ES_LOGS/$ES_CLUSTER.log" >&2
	exit 1
}

es_up() {
	if es_answers; then
		say "elasticsearch: answers on http://127.0.0.1:$ES_PORT"
		return
	fi
	local pid cli='' cli_done='' deadline=$((SECONDS + ES_WAIT_SECONDS))
	if pid=$(es_pid); then
		say "elasticsearch: already starting (pid $pid), waiting for it"
	else
		need_root "starting Elasticsearch"
		local home java_home
		home=$(es_home)
		java_home=$(es_java_home)
		if ! id -u "$ES_USER" >/dev/null 2>&1; then
			say "elasticsearch: creating system user $ES_USER"
			useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$ES_USER"
		fi
		rm -rf "$ES_TMP"
		mkdir -p "$ES_DATA" "$ES_LOGS" "$ES_TMP"
		es_write_config "$home"
		chown "$ES_USER" "$STATE" # it writes its pidfile here
		chown -R "$ES_USER" "$home" "$ES_DATA" "$ES_LOGS" "$ES_TMP"
		rm -f "$ES_PIDFILE"
		runuser -u "$ES_USER" -- test -x "$home/bin/elasticsearch" -a -w "$STATE" ||
			die "user $ES_USER cannot reach $home (is a parent directory private?)"
		say "elasticsearch: starting $(basename "$home") on http://127.0.0.1:$ES_PORT (java: $java_home); takes ~30-60 s"
		(cd "$home" && exec runuser -u "$ES_USER" -- env ES_JAVA_HOME="$java_home" ES_TMPDIR="$ES_TMP" ES_JAVA_OPTS="-Xms512m -Xmx512m" \
			bin/elasticsearch -d -p "$ES_PIDFILE") </dev/null >"$ES_START_LOG" 2>&1 9>&- &
		cli=$!
	fi
	while :; do
		es_answers && { say "elasticsearch: ready"; return; }
		if [[ -n $cli && -z $cli_done ]] && ! kill -0 "$cli" 2>/dev/null; then
			cli_done=1
			local rc=0
			wait "$cli" || rc=$?
			((rc == 0)) || es_fail "elasticsearch exited with status $rc while starting"
		fi
		# Once the launcher has detached (or for an adopted start), the server must stay alive.
		if [[ -z $cli || -n $cli_done ]] && ! es_pid >/dev/null; then
			es_fail "elasticsearch is not running"
		fi
		((SECONDS < deadline)) || es_fail "elasticsearch did not reach yellow on http://127.0.0.1:$ES_PORT within ${ES_WAIT_SECONDS}s"
		sleep 1
	done
}

es_down() {
	local pid i
	if ! pid=$(es_pid); then
		if es_answers; then
			say "elasticsearch: http://127.0.0.1:$ES_PORT answers but $ES_PIDFILE names no live process; not stopping it"
		else
			say "elasticsearch: not running"
		fi
		rm -f "$ES_PIDFILE"
		return
	fi
	say "elasticsearch: stopping pid $pid"
	kill "$pid" 2>/dev/null || true
	for ((i = 0; i < 600; i++)); do
		pid_is_es "$pid" || { rm -f "$ES_PIDFILE"; return; }
		sleep 0.1
	done
	say "elasticsearch: pid $pid still alive after 60 s, killing it"
	kill -KILL "$pid" 2>/dev/null || true
	rm -f "$ES_PIDFILE"
}

# ---------------------------------------------------------------- commands

cmd_up() {
	# Warm path: nothing to do, touch nothing.
	if redis_answers && es_answers; then
		say "redis 127.0.0.1:$REDIS_PORT and elasticsearch http://127.0.0.1:$ES_PORT already answer"
		return
	fi
	lock
	redis_up
	es_up
}

cmd_down() {
	lock
	redis_down
	es_down
}

cmd_status() {
	local ok=0 r
	if redis_answers; then
		say "redis 127.0.0.1:$REDIS_PORT: answers"
	else
		say "redis 127.0.0.1:$REDIS_PORT: not answering"
		ok=1
	fi
	r=$(es_health)
	if [[ $r =~ \"status\":\"([a-z]+)\" && $r == "HTTP/1."?" 200"* ]]; then
		say "elasticsearch http://127.0.0.1:$ES_PORT: answers (${BASH_REMATCH[1]})"
	elif [[ -n $r ]]; then
		say "elasticsearch http://127.0.0.1:$ES_PORT: answers but not healthy: $(head -n 1 <<<"$r" | tr -d '\r')"
		ok=1
	elif pid=$(es_pid); then
		say "elasticsearch http://127.0.0.1:$ES_PORT: not answering (pid $pid is running, maybe starting)"
		ok=1
	else
		say "elasticsearch http://127.0.0.1:$ES_PORT: not answering"
		ok=1
	fi
	return "$ok"
}

case ${1:-up} in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
-h | --help | help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" ;;
*) die "unknown command '$1' (use up, down or status)" ;;
esac
