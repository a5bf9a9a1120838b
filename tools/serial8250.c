/* SPDX-License-Identifier: MIT */
/*
 * 8250/16550A UART model.  Transmission is instant, so the transmitter is
 * always empty; the THRE interrupt follows the 8250 rules Linux probes for:
 * raised when THR empties or when IER enables it, cleared by reading IIR
 * (when THRE is the reported cause) or by writing THR.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "console.h"
#include "serial8250.h"

_Static_assert(sizeof(struct serial_state) == 272, "DEVICE serial8250 v1 layout (docs/format.md)");

#define IER_RDI		0x01
#define IER_THRI	0x02
#define IIR_NONE	0x01
#define IIR_THRI	0x02
#define IIR_RDI		0x04
#define IIR_FIFO	0xc0
#define LCR_DLAB	0x80
#define LSR_DR		0x01
#define LSR_THRE	0x20
#define LSR_TEMT	0x40
#define MCR_LOOP	0x10

struct serial {
	struct serial_state st;
	struct console *out;
	int level;
	void (*irq)(void *arg, int level);
	void *arg;
	pthread_mutex_t lock;
};

struct serial *serial_new(struct console *out, void (*irq)(void *arg, int level), void *arg)
{
	struct serial *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->out = out;
	s->irq = irq;
	s->arg = arg;
	s->st.lsr = LSR_THRE | LSR_TEMT;
	s->st.msr = 0xb0;		/* DCD, DSR, CTS */
	pthread_mutex_init(&s->lock, NULL);
	return s;
}

void serial_free(struct serial *s)
{
	if (!s)
		return;
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static uint8_t iir(const struct serial *s)
{
	uint8_t fifo = s->st.fcr & 1 ? IIR_FIFO : 0;

	if ((s->st.ier & IER_RDI) && (s->st.lsr & LSR_DR))
		return IIR_RDI | fifo;
	if ((s->st.ier & IER_THRI) && s->st.iir_thre_pending)
		return IIR_THRI | fifo;
	return IIR_NONE | fifo;
}

/* Under lock: drive the IRQ line from the state. */
static void update_irq(struct serial *s)
{
	int level = !(iir(s) & IIR_NONE);

	if (level != s->level) {
		s->level = level;
		s->irq(s->arg, level);
	}
}

void serial_io(struct serial *s, unsigned off, bool is_write, uint8_t *val)
{
	struct serial_state *st = &s->st;

	pthread_mutex_lock(&s->lock);
	if (is_write) {
		uint8_t v = *val;

		switch (off) {
		case 0:
			if (st->lcr & LCR_DLAB) {
				st->dll = v;
				break;
			}
			if (!(st->mcr & MCR_LOOP))
				console_write(s->out, &v, 1);	/* never blocks the vCPU */
			st->iir_thre_pending = 1;	/* sent at once: THR is empty again */
			break;
		case 1:
			if (st->lcr & LCR_DLAB) {
				st->dlm = v;
				break;
			}
			if ((v & IER_THRI) && !(st->ier & IER_THRI))
				st->iir_thre_pending = 1;
			st->ier = v & 0x0f;
			break;
		case 2:
			st->fcr = v & 0xc9;
			if (v & 0x02) {			/* clear the receive FIFO */
				st->rx_count = 0;
				st->lsr &= ~LSR_DR;
			}
			break;
		case 3: st->lcr = v; break;
		case 4: st->mcr = v & 0x1f; break;
		case 7: st->scr = v; break;
		}
	} else {
		switch (off) {
		case 0:
			if (st->lcr & LCR_DLAB) {
				*val = st->dll;
				break;
			}
			*val = 0;
			if (st->rx_count) {
				*val = st->rx[st->rx_head];
				st->rx_head = (st->rx_head + 1) % SERIAL_RX_MAX;
				st->rx_count--;
			}
			if (!st->rx_count)
				st->lsr &= ~LSR_DR;
			break;
		case 1: *val = st->lcr & LCR_DLAB ? st->dlm : st->ier; break;
		case 2:
			*val = iir(s);
			if ((*val & 0x0f) == IIR_THRI)
				st->iir_thre_pending = 0;
			break;
		case 3: *val = st->lcr; break;
		case 4: *val = st->mcr; break;
		case 5: *val = st->lsr; break;
		case 6: *val = st->mcr & MCR_LOOP ? (st->mcr & 0x0f) << 4 : st->msr; break;
		case 7: *val = st->scr; break;
		}
	}
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
}

unsigned serial_input(struct serial *s, const uint8_t *buf, unsigned len)
{
	unsigned n = 0;

	pthread_mutex_lock(&s->lock);
	for (; n < len && s->st.rx_count < SERIAL_RX_MAX; n++) {
		s->st.rx[(s->st.rx_head + s->st.rx_count) % SERIAL_RX_MAX] = buf[n];
		s->st.rx_count++;
	}
	if (s->st.rx_count)
		s->st.lsr |= LSR_DR;
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
	return n;
}

void serial_save(struct serial *s, struct serial_state *st)
{
	pthread_mutex_lock(&s->lock);
	*st = s->st;
	pthread_mutex_unlock(&s->lock);
}

int serial_restore(struct serial *s, const struct serial_state *st)
{
	if (st->rx_head >= SERIAL_RX_MAX || st->rx_count > SERIAL_RX_MAX)
		return -1;
	pthread_mutex_lock(&s->lock);
	s->st = *st;
	s->level = -1;			/* drive the line to the restored level */
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

int serial_restore_device(struct serial *s, const char *name, uint32_t version, uint32_t instance,
			  const void *data, size_t len, struct xc_error *err)
{
	struct serial_state st;

	if (strcmp(name, "serial8250") || !s)
		return xc_set_error(err, 0, "DEVICE \"%s\" has no model here", name);
	if (version != 1 || instance != 0 || len != sizeof(st))
		return xc_set_error(err, 0, "DEVICE serial8250: version %u instance %u, %zu bytes; "
				    "this sr reads version 1, instance 0, %zu bytes", version,
				    instance, len, sizeof(st));
	memcpy(&st, data, sizeof(st));
	if (serial_restore(s, &st))
		return xc_set_error(err, 0, "DEVICE serial8250: receive buffer out of range");
	return 0;
}
