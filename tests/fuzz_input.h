/* SPDX-License-Identifier: MIT */
/*
 * What the libFuzzer targets share besides the mutator: an input as the fd
 * a reader takes (a memfd, or a pipe that a thread fills, as sr-restore's
 * stdin or a migration's socket would be), and choices drawn from a hash of
 * the input, so one input always reads the same way and a crash reproduces
 * from its file alone.
 */
#ifndef SR_FUZZ_INPUT_H
#define SR_FUZZ_INPUT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/* Choices drawn from the input's hash. */
struct fuzz_draw {
	uint64_t state;
};
void fuzz_draw_init(struct fuzz_draw *d, const uint8_t *data, size_t size);
/* A number in 0..n-1. */
unsigned fuzz_draw(struct fuzz_draw *d, unsigned n);

struct fuzz_input {
	int fd;				/* what the reader reads */
	int wfd;			/* a pipe's write end, owned by the feeder */
	pthread_t feeder;
	const uint8_t *data;
	size_t size;
};

/*
 * pipe_bytes 0: data in a memfd; else a pipe of that capacity (at least a
 * page: reads return what the feeder has written so far, a readv at most
 * pipe_bytes), filled by a thread.  Aborts when the fd cannot be made.
 */
void fuzz_input_open(struct fuzz_input *in, const uint8_t *data, size_t size,
		     unsigned pipe_bytes);
/* Closes the fd; a feeder still writing gets EPIPE and is joined. */
void fuzz_input_close(struct fuzz_input *in);

#endif
