/* SPDX-License-Identifier: MIT */
/* Inputs as fds, and choices drawn from them, for the libFuzzer targets. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include <xxhash.h>

#include "fuzz_input.h"

void fuzz_draw_init(struct fuzz_draw *d, const uint8_t *data, size_t size)
{
	d->state = XXH3_64bits(data, size);
}

unsigned fuzz_draw(struct fuzz_draw *d, unsigned n)
{
	uint64_t z = (d->state += 0x9e3779b97f4a7c15ull);	/* splitmix64 */

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return (unsigned)((z ^ (z >> 31)) % n);
}

static void *feed(void *arg)
{
	struct fuzz_input *in = arg;
	size_t off = 0;

	while (off < in->size) {
		ssize_t k = write(in->wfd, in->data + off, in->size - off);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;		/* EPIPE: the reader stopped early */
		off += k;
	}
	close(in->wfd);
	return NULL;
}

void fuzz_input_open(struct fuzz_input *in, const uint8_t *data, size_t size,
		     unsigned pipe_bytes)
{
	int p[2];

	in->data = data;
	in->size = size;
	in->wfd = -1;
	if (!pipe_bytes) {
		in->fd = memfd_create("fuzz", MFD_CLOEXEC);
		if (in->fd < 0 || (size && write(in->fd, data, size) != (ssize_t)size))
			abort();
		lseek(in->fd, 0, SEEK_SET);
		return;
	}
	signal(SIGPIPE, SIG_IGN);
	if (pipe2(p, O_CLOEXEC))
		abort();
	fcntl(p[1], F_SETPIPE_SZ, pipe_bytes);	/* the kernel rounds it up to a page or more */
	in->fd = p[0];
	in->wfd = p[1];
	if (pthread_create(&in->feeder, NULL, feed, in))
		abort();
}

void fuzz_input_close(struct fuzz_input *in)
{
	close(in->fd);
	if (in->wfd >= 0)
		pthread_join(in->feeder, NULL);
}
