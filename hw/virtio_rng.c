/* SPDX-License-Identifier: MIT */
/* virtio-rng (device-types/entropy): one queue, no features, no config; getrandom() fills it. */
#include <sys/random.h>

#include "virtio.h"

static uint32_t rng_request(struct virtio_dev *vd, unsigned q, struct virtq_chain *c)
{
	uint32_t done = 0;

	(void)vd;
	(void)q;
	for (unsigned i = c->nr; i < c->nr + c->nw; i++) {
		ssize_t n = getrandom(c->iov[i].iov_base, c->iov[i].iov_len, 0);

		if (n <= 0)
			break;
		done += n;
		if ((size_t)n < c->iov[i].iov_len)
			break;
	}
	return done;
}

static const struct virtio_type rng_type = {
	.name = "virtio-rng", .device_id = VIRTIO_ID_RNG, .class_code = 0x00ff00,
	.nqueues = 1, .request = rng_request,
};

struct virtio_dev *virtio_rng_new(struct hw_bus *b, struct pci_host *h, struct xc_error *err)
{
	struct virtio_dev_config c = { .type = &rng_type };

	return virtio_pci_new(b, h, &c, err);
}
