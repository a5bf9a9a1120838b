/* SPDX-License-Identifier: MIT */
/*
 * tools.sh's hostile network for the listener (no Python in tests):
 *
 *   netflood flood PORT SECONDS ADDRS HOLD RATE [speak]
 *	idle TCP connections to 127.0.0.1:PORT, RATE a second, from ADDRS
 *	loopback addresses in turn (127.0.0.2 up: 127.0.0.2-127.0.1.145 for
 *	400), at most HOLD of them held (the oldest closed), for SECONDS or
 *	until the port refuses; says "flood: N connections" on stderr.  With
 *	speak, each sends a TLS record's 5-byte header and stalls (audit7).
 *   netflood hold PORT ADDRS COUNT SECONDS
 *	COUNT idle connections from ADDRS addresses in turn, all made before
 *	it prints COUNT; held SECONDS.
 *   netflood relay LPORT PORT MS
 *	a one-connection relay, 127.0.0.1:LPORT to 127.0.0.1:PORT, that holds
 *	each chunk MS ms each way (a WAN's latency; no netem needed); prints
 *	"relay ready on LPORT" once it listens (LPORT 0: a port the kernel
 *	picks, free for certain).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static struct sockaddr_in loopback(unsigned host, unsigned port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };

	a.sin_addr.s_addr = htonl(0x7f000000u | host);
	return a;
}

/* Up to want descriptors for this process, if the hard limit allows; how many it may hold. */
static unsigned fd_room(unsigned want)
{
	struct rlimit rl;

	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < want + 32) {
		rl.rlim_cur = rl.rlim_max < want + 32 ? rl.rlim_max : want + 32;
		setrlimit(RLIMIT_NOFILE, &rl);
		if (rl.rlim_cur < want + 32)
			want = rl.rlim_cur > 64 ? rl.rlim_cur - 32 : 32;
	}
	return want;
}

static int hold(unsigned port, unsigned addrs, unsigned count, unsigned secs)
{
	struct sockaddr_in to = loopback(1, port);
	unsigned n = 0;

	count = fd_room(count);
	for (unsigned i = 0; i < count; i++) {
		struct sockaddr_in from = loopback(2 + i % addrs, 0);
		int fd = socket(AF_INET, SOCK_STREAM, 0);

		if (fd < 0 || bind(fd, (struct sockaddr *)&from, sizeof(from)) ||
		    connect(fd, (struct sockaddr *)&to, sizeof(to)))
			return perror("hold"), 1;
		n++;
	}
	printf("%u\n", n);
	fflush(stdout);
	sleep(secs);
	return 0;
}

static int flood(unsigned port, double secs, unsigned addrs, unsigned keep, double rate,
		 int speak)
{
	static const unsigned char hdr[5] = { 0x16, 0x03, 0x01, 0x02, 0x00 };	/* a handshake record */
	struct sockaddr_in to = loopback(1, port);
	double start = now_s(), end = start + secs;
	unsigned long n = 0;
	int *held;
	unsigned head = 0, count = 0;

	keep = fd_room(keep);
	held = calloc(keep, sizeof(*held));
	if (!held)
		return 1;
	while (now_s() < end) {
		struct sockaddr_in from = loopback(2 + n % addrs, 0);
		double due = start + n / rate, t = now_s();
		int fd;

		if (due > t) {
			struct timespec d = { 0, (long)((due - t) * 1e9) };

			nanosleep(&d, NULL);
		}
		fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);

		if (fd < 0)
			return perror("socket"), 1;
		if (bind(fd, (struct sockaddr *)&from, sizeof(from)) ||
		    (connect(fd, (struct sockaddr *)&to, sizeof(to)) && errno != EINPROGRESS)) {
			int e = errno;

			close(fd);
			if (e == ECONNREFUSED)	/* the listener is gone: done */
				break;
			continue;
		}
		if (speak) {	/* loopback: connected by now, or the bytes are simply lost */
			struct pollfd pf = { fd, POLLOUT, 0 };

			if (poll(&pf, 1, 5) == 1 && send(fd, hdr, sizeof(hdr), MSG_NOSIGNAL) < 0)
				errno = 0;
		}
		if (count == keep) {	/* a ring of the held ones: the oldest goes */
			close(held[head]);
			head = (head + 1) % keep;
			count--;
		}
		held[(head + count++) % keep] = fd;
		n++;
	}
	fprintf(stderr, "flood: %lu connections\n", n);
	return 0;
}

struct pipe_arg {
	int from, to;
	unsigned ms;
};

/*
 * One direction, each chunk held ms.  Its end is passed on as a half-close
 * only: the other direction's chunks still in flight are delivered (a
 * client's last TLS record must reach the server after the client closed;
 * shutting both directions lost it).
 */
static void *pipe_one(void *arg)
{
	struct pipe_arg *p = arg;
	char buf[65536];
	ssize_t k;

	signal(SIGPIPE, SIG_IGN);
	while ((k = read(p->from, buf, sizeof(buf))) > 0) {
		struct timespec d = { p->ms / 1000, (p->ms % 1000) * 1000000L };

		nanosleep(&d, NULL);
		for (ssize_t o = 0, w; o < k; o += w)
			if ((w = write(p->to, buf + o, k - o)) <= 0)
				goto out;
	}
out:
	shutdown(p->to, SHUT_WR);
	shutdown(p->from, SHUT_RD);
	return NULL;
}

static int relay(unsigned lport, unsigned port, unsigned ms)
{
	struct sockaddr_in la = loopback(1, lport), ua = loopback(1, port);
	int one = 1, l = socket(AF_INET, SOCK_STREAM, 0), c, u;
	struct pipe_arg down, up;
	pthread_t t;

	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(l, (struct sockaddr *)&la, sizeof(la)) || listen(l, 1))
		return perror("relay: listen"), 1;
	if (getsockname(l, (struct sockaddr *)&la, &(socklen_t){ sizeof(la) }))
		return perror("relay: getsockname"), 1;
	printf("relay ready on %u\n", ntohs(la.sin_port));
	fflush(stdout);
	c = accept(l, NULL, NULL);
	u = socket(AF_INET, SOCK_STREAM, 0);
	if (c < 0 || connect(u, (struct sockaddr *)&ua, sizeof(ua)))
		return perror("relay: connect"), 1;
	down = (struct pipe_arg){ u, c, ms };
	up = (struct pipe_arg){ c, u, ms };
	pthread_create(&t, NULL, pipe_one, &down);
	pipe_one(&up);
	pthread_join(t, NULL);
	return 0;
}

int main(int argc, char **argv)
{
	if ((argc == 7 || (argc == 8 && !strcmp(argv[7], "speak"))) && !strcmp(argv[1], "flood"))
		return flood(atoi(argv[2]), atof(argv[3]), atoi(argv[4]), atoi(argv[5]), atof(argv[6]),
			     argc == 8);
	if (argc == 6 && !strcmp(argv[1], "hold"))
		return hold(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
	if (argc == 5 && !strcmp(argv[1], "relay"))
		return relay(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]));
	fprintf(stderr, "usage: netflood flood PORT SECONDS ADDRS HOLD RATE [speak] | hold PORT ADDRS COUNT SECONDS | relay LPORT PORT MS\n");
	return 2;
}
