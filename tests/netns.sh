# Sourced by the migration tests and bench-peer: two "hosts" on one machine.
# This network namespace is "near" (10.77.0.1, fd77::1); netns_up starts
# "far" (10.77.0.2, fd77::2), a network namespace held by a sleeping process,
# joined to near by a veth pair (sr-near here, sr-far there).  far CMD runs a
# command there, with SR_RUN_DIR=$netns_dir/far: its own runner directory, as
# another host would have.  Needs root, iproute2 and the veth module.
netns_pid=

far() { nsenter -t "$netns_pid" -n -- env SR_RUN_DIR="$netns_dir/far" "$@"; }

# netns_up DIR: brings far up (once); 0 when far answers a ping, else 1 with
# what failed in DIR/net.out.
netns_up() {
	netns_dir=$1
	[ -n "$netns_pid" ] && kill -0 "$netns_pid" 2>/dev/null && return 0
	mkdir -p "$netns_dir/far" && chmod 0700 "$netns_dir/far"
	# Double-forked: no child of the caller's shell, so its bare "wait"s do not wait for it.
	netns_pid=$( (unshare --net sleep 1000000 </dev/null >/dev/null 2>&1 & echo $!) )
	for _ in $(seq 1 100); do
		[ "$(readlink /proc/$netns_pid/ns/net 2>/dev/null)" != "$(readlink /proc/self/ns/net)" ] && break
		sleep 0.05
	done
	ip link del sr-near 2>/dev/null
	{ ip link add sr-near type veth peer name sr-far && ip link set sr-far netns "$netns_pid" &&
	  ip addr add 10.77.0.1/24 dev sr-near && ip -6 addr add fd77::1/64 dev sr-near nodad &&
	  ip link set sr-near up && far ip link set lo up &&
	  far ip addr add 10.77.0.2/24 dev sr-far && far ip -6 addr add fd77::2/64 dev sr-far nodad &&
	  far ip link set sr-far up && busybox ping -c1 -W2 10.77.0.2; } >"$netns_dir/net.out" 2>&1
}

netns_down() {
	[ -z "$netns_pid" ] || kill "$netns_pid" 2>/dev/null
	ip link del sr-near 2>/dev/null
	netns_pid=
}
