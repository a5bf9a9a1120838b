/* SPDX-License-Identifier: MIT */
/* The guest console: a bounded ring buffer drained by a writer thread. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "console.h"

struct console {
	int fd;
	uint8_t *buf;
	size_t size, head, len;		/* ring: len bytes from head */
	uint64_t dropped, reported;
	bool stop;
	pthread_mutex_t lock;
	pthread_cond_t more, drained;
	pthread_t thread;
	int attached;			/* an attached reader's socket, or -1 */
	uint8_t tail[CONSOLE_TAIL];	/* the last bytes written, for a reader that attaches */
	size_t tail_at, tail_len;
	void (*thread_start)(void *arg);
	void *thread_arg;
};

static void write_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t k = write(fd, p, n);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return;		/* a closed console: nothing more to do */
		p += k;
		n -= k;
	}
}

/* Under the lock: what the attached reader can take now; a reader that failed is let go. */
static void send_attached(struct console *c, const uint8_t *p, size_t n)
{
	while (c->attached >= 0 && n) {
		ssize_t k = send(c->attached, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;		/* a slow reader loses bytes; the log does not */
		if (k <= 0) {
			c->attached = -1;	/* gone: its owner closes it on its EOF */
			return;
		}
		p += k;
		n -= k;
	}
}

static void keep_tail(struct console *c, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		c->tail[(c->tail_at + c->tail_len) % CONSOLE_TAIL] = p[i];
		if (c->tail_len < CONSOLE_TAIL)
			c->tail_len++;
		else
			c->tail_at = (c->tail_at + 1) % CONSOLE_TAIL;
	}
}

void console_attach(struct console *c, int sock)
{
	uint8_t t[CONSOLE_TAIL];

	pthread_mutex_lock(&c->lock);
	c->attached = sock;
	for (size_t i = 0; i < c->tail_len; i++)
		t[i] = c->tail[(c->tail_at + i) % CONSOLE_TAIL];
	send_attached(c, t, c->tail_len);
	pthread_mutex_unlock(&c->lock);
}

void console_detach(struct console *c, int sock)
{
	pthread_mutex_lock(&c->lock);
	if (c->attached == sock)
		c->attached = -1;
	pthread_mutex_unlock(&c->lock);
}

static void *console_thread(void *arg)
{
	struct console *c = arg;
	uint8_t chunk[4096];
	sigset_t all;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, NULL);
	if (c->thread_start)
		c->thread_start(c->thread_arg);
	pthread_mutex_lock(&c->lock);
	for (;;) {
		size_t n;

		while (!c->len && !c->stop)
			pthread_cond_wait(&c->more, &c->lock);
		if (!c->len && c->stop)
			break;
		n = c->len < sizeof(chunk) ? c->len : sizeof(chunk);
		for (size_t i = 0; i < n; i++)
			chunk[i] = c->buf[(c->head + i) % c->size];
		c->head = (c->head + n) % c->size;
		c->len -= n;
		keep_tail(c, chunk, n);
		send_attached(c, chunk, n);
		uint64_t lost = c->dropped - c->reported;

		c->reported = c->dropped;
		pthread_mutex_unlock(&c->lock);
		if (lost) {
			char note[96];
			int k = snprintf(note, sizeof(note), "\n[sr: %llu console bytes dropped: the "
					 "console reader was not keeping up]\n", (unsigned long long)lost);

			write_all(c->fd, (const uint8_t *)note, k);
		}
		write_all(c->fd, chunk, n);
		pthread_mutex_lock(&c->lock);
		if (!c->len)
			pthread_cond_broadcast(&c->drained);
	}
	pthread_cond_broadcast(&c->drained);
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

struct console *console_new(int fd, size_t size, void (*thread_start)(void *arg), void *arg)
{
	struct console *c = calloc(1, sizeof(*c));

	if (!c || !(c->buf = malloc(size))) {
		free(c);
		return NULL;
	}
	c->fd = fd;
	c->attached = -1;
	c->size = size;
	c->thread_start = thread_start;
	c->thread_arg = arg;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->more, NULL);
	pthread_cond_init(&c->drained, NULL);
	if (pthread_create(&c->thread, NULL, console_thread, c)) {
		free(c->buf);
		free(c);
		return NULL;
	}
	return c;
}

void console_write(struct console *c, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < len; i++) {
		if (c->len == c->size) {
			c->dropped += len - i;
			break;
		}
		c->buf[(c->head + c->len++) % c->size] = p[i];
	}
	pthread_cond_signal(&c->more);
	pthread_mutex_unlock(&c->lock);
}

uint64_t console_dropped(struct console *c)
{
	uint64_t n;

	pthread_mutex_lock(&c->lock);
	n = c->dropped;
	pthread_mutex_unlock(&c->lock);
	return n;
}

void console_free(struct console *c, int timeout_ms)
{
	struct timespec until;

	if (!c)
		return;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += timeout_ms / 1000;
	until.tv_nsec += (timeout_ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&c->lock);
	while (c->len)
		if (pthread_cond_timedwait(&c->drained, &c->lock, &until) == ETIMEDOUT)
			break;
	c->stop = true;
	c->len = 0;		/* past the deadline: what is left is dropped */
	pthread_cond_signal(&c->more);
	pthread_mutex_unlock(&c->lock);
	pthread_join(c->thread, NULL);
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->more);
	pthread_cond_destroy(&c->drained);
	free(c->buf);
	free(c);
}
