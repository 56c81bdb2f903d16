#!/usr/bin/env bash
# peers.sh starts and stops the external brokers the benchmark harness compares
# sluice with: a Redis server (streams, AOF with appendfsync always) and a
# RabbitMQ server (quorum queues), both from Debian's packages, both listening on
# 127.0.0.1 only, with their data in a scratch directory.
#
#   bench/peers.sh start [redis|rabbitmq]   # installs what is missing, starts, waits until ready
#   bench/peers.sh stop [redis|rabbitmq]    # stops what this script started
#   bench/peers.sh status [redis|rabbitmq]
#
# Without a name, every peer. Each verb can be repeated: start leaves a running
# peer alone, stop a stopped one. Installing needs root (apt-get).
#
# Settings (environment):
#   SLUICE_PEERS_DIR       scratch directory (default: $TMPDIR/sluice-peers); the
#                          servers' data, logs, configuration and pid files
#   SLUICE_PEERS_REDIS_PORT     default 6379
#   SLUICE_PEERS_RABBITMQ_PORT  default 5672; Erlang's distribution listens on
#                               this + 20000 and its port mapper (epmd) on this + 9000,
#                               both on 127.0.0.1
#
# The harness finds the peers through SLUICE_BENCH_REDIS and SLUICE_BENCH_RABBITMQ;
# `start` and `status` print the lines to export.
set -euo pipefail

dir=${SLUICE_PEERS_DIR:-${TMPDIR:-/tmp}/sluice-peers}
redis_port=${SLUICE_PEERS_REDIS_PORT:-6379}
rabbit_port=${SLUICE_PEERS_RABBITMQ_PORT:-5672}
rabbit_dist_port=$((rabbit_port + 20000))
rabbit_epmd_port=$((rabbit_port + 9000))
rabbit_user=sluice
rabbit_pass=sluice
rabbit_bin=/usr/lib/rabbitmq/bin

log() { printf 'peers: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# port_open PORT succeeds when something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pid_alive FILE succeeds when FILE names a running process.
pid_alive() {
	[[ -s $1 ]] || return 1
	local pid
	pid=$(<"$1")
	[[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null
}

# wait_for DESCRIPTION SECONDS COMMAND... polls COMMAND every 0.2 s.
wait_for() {
	local what=$1 secs=$2
	shift 2
	local deadline=$((SECONDS + secs))
	until "$@"; do
		((SECONDS < deadline)) || return 1
		sleep 0.2
	done
	log "$what"
}

# install PACKAGE... installs Debian packages without letting their maintainer
# scripts start the system-wide services (which would listen on every address
# and use the default ports): a policy-rc.d that denies every start, for the
# length of the install, unless one is already in place.
install() {
	[[ $(id -u) == 0 ]] || die "installing $* needs root"
	local policy=/usr/sbin/policy-rc.d ours=
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod 755 "$policy"
		ours=1
	fi
	log "installing $* (apt-get)"
	local rc=0
	{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"; } >&2 || rc=$?
	[[ -z $ours ]] || rm -f "$policy"
	((rc == 0)) || die "apt-get install $* failed"
}

# ---- Redis -------------------------------------------------------------------

redis_dir=$dir/redis

redis_start() {
	if pid_alive "$redis_dir/redis.pid"; then
		log "redis already running (pid $(<"$redis_dir/redis.pid"))"
		return
	fi
	command -v redis-server >/dev/null || install redis-server
	port_open "$redis_port" && die "127.0.0.1:$redis_port is taken by another process; set SLUICE_PEERS_REDIS_PORT"
	mkdir -p "$redis_dir/data"
	# save "": no RDB snapshots, whose fork would land in the middle of a
	# measurement; the AOF is the durable copy.
	cat >"$redis_dir/redis.conf" <<EOF
bind 127.0.0.1
port $redis_port
protected-mode yes
daemonize yes
pidfile $redis_dir/redis.pid
logfile $redis_dir/redis.log
dir $redis_dir/data
appendonly yes
appendfsync always
save ""
EOF
	redis-server "$redis_dir/redis.conf"
	wait_for "redis ready on 127.0.0.1:$redis_port" 20 redis_ready ||
		die "redis did not start; see $redis_dir/redis.log"
}

redis_ready() { [[ $(redis-cli -h 127.0.0.1 -p "$redis_port" ping 2>/dev/null) == PONG ]]; }

redis_stop() {
	if ! pid_alive "$redis_dir/redis.pid"; then
		log "redis not running"
		return
	fi
	local pid
	pid=$(<"$redis_dir/redis.pid")
	kill -TERM "$pid"
	wait_for "redis stopped" 30 not_alive "$pid" || die "redis (pid $pid) did not stop"
}

redis_status() {
	if pid_alive "$redis_dir/redis.pid"; then
		echo "redis: running, pid $(<"$redis_dir/redis.pid"), 127.0.0.1:$redis_port, data in $redis_dir/data"
		echo "  export SLUICE_BENCH_REDIS=127.0.0.1:$redis_port"
	else
		echo "redis: stopped"
	fi
}

not_alive() { ! kill -0 "$1" 2>/dev/null; }

# ---- RabbitMQ ----------------------------------------------------------------

rabbit_dir=$dir/rabbitmq

# rabbit_env exports the settings of the benchmark's node: everything under
# rabbit_dir (HOME holds the Erlang cookie), AMQP on 127.0.0.1 only, Erlang's
# distribution and port mapper on 127.0.0.1 only, no plugins (so no management
# listener), and the system-wide rabbitmq-env.conf ignored.
rabbit_env() {
	export HOME=$rabbit_dir
	export RABBITMQ_CONF_ENV_FILE=$rabbit_dir/rabbitmq-env.conf
	export RABBITMQ_CONFIG_FILE=$rabbit_dir/rabbitmq.conf
	export RABBITMQ_ENABLED_PLUGINS_FILE=$rabbit_dir/enabled_plugins
	export RABBITMQ_MNESIA_BASE=$rabbit_dir/mnesia
	export RABBITMQ_LOG_BASE=$rabbit_dir/log
	export RABBITMQ_PID_FILE=$rabbit_dir/rabbitmq.pid
	export RABBITMQ_NODENAME=sluicebench@localhost
	export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
	export RABBITMQ_NODE_PORT=$rabbit_port
	export RABBITMQ_DIST_PORT=$rabbit_dist_port
	export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
	export RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
	export ERL_EPMD_ADDRESS=127.0.0.1
	export ERL_EPMD_PORT=$rabbit_epmd_port
}

rabbit_start() {
	if pid_alive "$rabbit_dir/rabbitmq.pid"; then
		log "rabbitmq already running (pid $(<"$rabbit_dir/rabbitmq.pid"))"
		return
	fi
	[[ -x $rabbit_bin/rabbitmq-server ]] || install rabbitmq-server
	port_open "$rabbit_port" && die "127.0.0.1:$rabbit_port is taken by another process; set SLUICE_PEERS_RABBITMQ_PORT"
	mkdir -p "$rabbit_dir/log" "$rabbit_dir/mnesia"
	: >"$rabbit_dir/rabbitmq-env.conf"
	echo '[].' >"$rabbit_dir/enabled_plugins"
	# default_user is created on the node's first boot only; the scratch
	# directory keeps it across restarts.
	cat >"$rabbit_dir/rabbitmq.conf" <<EOF
listeners.tcp.1 = 127.0.0.1:$rabbit_port
default_user = $rabbit_user
default_pass = $rabbit_pass
EOF
	rabbit_env
	rm -f "$rabbit_dir/rabbitmq.pid"
	# A session of its own, so that the terminal's signals do not reach it, and
	# no descriptor of ours held open.
	(cd "$rabbit_dir" && exec setsid "$rabbit_bin/rabbitmq-server") >>"$rabbit_dir/log/console.log" 2>&1 </dev/null &
	disown
	wait_for "rabbitmq ready on 127.0.0.1:$rabbit_port" 180 rabbit_ready ||
		die "rabbitmq did not start within 180 s; see $rabbit_dir/log"
}

rabbit_ready() { pid_alive "$rabbit_dir/rabbitmq.pid" && port_open "$rabbit_port"; }

rabbit_stop() {
	rabbit_env
	if pid_alive "$rabbit_dir/rabbitmq.pid"; then
		local pid
		pid=$(<"$rabbit_dir/rabbitmq.pid")
		# The Erlang VM takes SIGTERM as a request to stop the node cleanly.
		kill -TERM "$pid"
		wait_for "rabbitmq stopped" 60 not_alive "$pid" || die "rabbitmq (pid $pid) did not stop"
	else
		log "rabbitmq not running"
	fi
	# The node started its own port mapper on a port of its own; stop it too.
	if port_open "$rabbit_epmd_port" && command -v epmd >/dev/null; then
		epmd -kill >/dev/null 2>&1 || true
		wait_for "epmd on 127.0.0.1:$rabbit_epmd_port stopped" 10 not_port_open "$rabbit_epmd_port" ||
			log "epmd on 127.0.0.1:$rabbit_epmd_port still running"
	fi
}

not_port_open() { ! port_open "$1"; }

rabbit_status() {
	if pid_alive "$rabbit_dir/rabbitmq.pid"; then
		echo "rabbitmq: running, pid $(<"$rabbit_dir/rabbitmq.pid"), 127.0.0.1:$rabbit_port, data in $rabbit_dir/mnesia"
		echo "  export SLUICE_BENCH_RABBITMQ=amqp://$rabbit_user:$rabbit_pass@127.0.0.1:$rabbit_port/"
	else
		echo "rabbitmq: stopped"
	fi
}

# ---- verbs -------------------------------------------------------------------

verb=${1:-}
which=${2:-all}
case $which in
all) names=(redis rabbit) ;;
redis) names=(redis) ;;
rabbitmq | rabbit) names=(rabbit) ;;
*) die "unknown peer $which (redis, rabbitmq)" ;;
esac
case $verb in
start)
	for n in "${names[@]}"; do "${n}_start"; done
	for n in "${names[@]}"; do "${n}_status"; done
	;;
stop)
	for n in "${names[@]}"; do "${n}_stop"; done
	;;
status)
	for n in "${names[@]}"; do "${n}_status"; done
	;;
*)
	echo "usage: $0 start|stop|status [redis|rabbitmq]" >&2
	exit 2
	;;
esac
