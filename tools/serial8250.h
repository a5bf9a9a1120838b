/* SPDX-License-Identifier: MIT */
/* An 8250/16550A UART: COM1 at 0x3f8, IRQ 4; output to a fd, input from one. */
#ifndef SR_SERIAL8250_H
#define SR_SERIAL8250_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "xc.h"

#define SERIAL_BASE	0x3f8
#define SERIAL_IRQ	4
#define SERIAL_RX_MAX	256

/* The device state, as carried in DEVICE "serial8250" version 1 (docs/format.md). */
struct serial_state {
	uint8_t ier, iir_thre_pending, lcr, mcr, lsr, msr, scr, dll, dlm, fcr;
	uint8_t rsvd[2];
	uint16_t rx_head, rx_count;
	uint8_t rx[SERIAL_RX_MAX];
};

struct serial;

/* irq(level) is called with the line's new level. */
struct console;
/* Output goes to the console (never blocking); irq raises or lowers IRQ 4. */
struct serial *serial_new(struct console *out, void (*irq)(void *arg, int level), void *arg);
void serial_free(struct serial *s);

/* Port access at SERIAL_BASE + off (0..7); for reads, *val is filled. */
void serial_io(struct serial *s, unsigned off, bool is_write, uint8_t *val);

/* Queues input bytes (from the console); returns how many fit. */
unsigned serial_input(struct serial *s, const uint8_t *buf, unsigned len);

void serial_save(struct serial *s, struct serial_state *st);
/* Returns -1 when st is not a valid state. */
int serial_restore(struct serial *s, const struct serial_state *st);

/*
 * A DEVICE record for the UART (name, version, instance, body as the image
 * has them) into s; s may be NULL (the domain has no UART).  Fails, with
 * err set, for another device or a layout this sr does not read.
 */
int serial_restore_device(struct serial *s, const char *name, uint32_t version, uint32_t instance,
			  const void *data, size_t len, struct xc_error *err);

#endif
