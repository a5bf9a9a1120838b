/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <locale.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <wchar.h>
#include <wctype.h>

#include "util.h"

const char *sr_prog = "sr";

void sr_set_prog(const char *argv0)
{
	const char *s = strrchr(argv0, '/');

	sr_prog = s ? s + 1 : argv0;
}

static void vmsg(const char *kind, const char *fmt, va_list ap)
{
	fprintf(stderr, "%s: %s", sr_prog, kind);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

void pr_err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vmsg("", fmt, ap);
	va_end(ap);
}

void pr_warn(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vmsg("warning: ", fmt, ap);
	va_end(ap);
}

void pr_info(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static void (*die_hook)(const char *msg);

void die_set_hook(void (*hook)(const char *msg))
{
	die_hook = hook;
}

void die(int status, const char *fmt, ...)
{
	va_list ap;

	if (die_hook) {
		char msg[1024];

		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
		die_hook(msg);
	}
	va_start(ap, fmt);
	vmsg("", fmt, ap);
	va_end(ap);
	exit(status);
}

const char *fmt_bytes(uint64_t n, char *buf, size_t len)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)n;
	unsigned u = 0;

	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%llu B", (unsigned long long)n);
	else
		snprintf(buf, len, "%.1f %s", v, unit[u]);
	return buf;
}

void json_str(const char *s, size_t max)
{
	putchar('"');
	for (size_t i = 0; i < max && s[i]; i++) {
		unsigned char c = s[i];

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

/*
 * Printable to iswprint, but they change what the text around them shows,
 * or show nothing.  Unicode's Default_Ignorable_Code_Point set
 * (DerivedCoreProperties.txt, unchanged since Unicode 14): U+00AD (soft
 * hyphen), U+034F (combining grapheme joiner), U+061C (Arabic letter mark),
 * U+115F-U+1160, U+3164, U+FFA0 (Hangul fillers, blank letters),
 * U+17B4-U+17B5 (Khmer inherent vowels), U+180B-U+180F (Mongolian variation
 * selectors, vowel separator), U+200B-U+200F (zero-width space, joiners,
 * LRM, RLM), U+202A-U+202E (bidi embeddings and overrides), U+2060-U+206F
 * (word joiner, invisible operators, bidi isolates, deprecated format
 * controls), U+FE00-U+FE0F and U+E0100-U+E01EF (variation selectors),
 * U+FEFF (BOM), U+FFF0-U+FFF8 (reserved), U+1BCA0-U+1BCA3 (shorthand format
 * controls), U+1D173-U+1D17A (musical format controls), U+E0000-U+E0FFF
 * (tag characters, which can spell hidden ASCII, and reserved); and, beyond
 * it, U+FFF9-U+FFFB (annotation controls).  A name with them can read as
 * another name (CVE-2021-42574's trick).  Also escaped, as they make one
 * text look like another (audit7): the other format characters (Cf:
 * U+0600-U+0605, U+06DD, U+070F, U+0890-U+0891, U+08E2, U+110BD, U+110CD,
 * U+13430-U+1343F), every space but U+0020 (Zs: U+00A0, U+1680,
 * U+2000-U+200A, U+202F, U+205F, U+3000) and the blank U+2800, the
 * enclosing marks (Me) and the overlay marks that strike through their
 * neighbour (U+0334-U+0338, U+20D2-U+20D3, U+20D8-U+20DA, U+20E5-U+20E6,
 * U+20EA-U+20EB), and private use (U+E000-U+F8FF, planes 15 and 16).
 * Other combining marks stay: scripts need them.
 */
static bool invisible(wchar_t w)
{
	static const struct { wchar_t lo, hi; } set[] = {
		{ 0x00ad, 0x00ad }, { 0x034f, 0x034f }, { 0x061c, 0x061c },
		{ 0x115f, 0x1160 }, { 0x17b4, 0x17b5 }, { 0x180b, 0x180f },
		{ 0x200b, 0x200f }, { 0x202a, 0x202e }, { 0x2060, 0x206f },
		{ 0x3164, 0x3164 }, { 0xfe00, 0xfe0f }, { 0xfeff, 0xfeff },
		{ 0xffa0, 0xffa0 }, { 0xfff0, 0xfffb }, { 0x1bca0, 0x1bca3 },
		{ 0x1d173, 0x1d17a }, { 0xe0000, 0xe0fff },
		/* format characters, look-alike spaces, marks drawn over others, private use */
		{ 0x00a0, 0x00a0 }, { 0x0334, 0x0338 }, { 0x0488, 0x0489 }, { 0x0600, 0x0605 },
		{ 0x06dd, 0x06dd }, { 0x070f, 0x070f }, { 0x0890, 0x0891 }, { 0x08e2, 0x08e2 },
		{ 0x1680, 0x1680 }, { 0x1abe, 0x1abe }, { 0x2000, 0x200a }, { 0x202f, 0x202f },
		{ 0x205f, 0x205f }, { 0x20d2, 0x20d3 }, { 0x20d8, 0x20da }, { 0x20dd, 0x20e0 },
		{ 0x20e2, 0x20e6 }, { 0x20ea, 0x20eb }, { 0x2800, 0x2800 }, { 0x3000, 0x3000 },
		{ 0xa670, 0xa672 }, { 0xe000, 0xf8ff }, { 0x110bd, 0x110bd }, { 0x110cd, 0x110cd },
		{ 0x13430, 0x1343f }, { 0xf0000, 0x10ffff },
	};

	for (size_t i = 0; i < sizeof(set) / sizeof(set[0]); i++)
		if (w >= set[i].lo && w <= set[i].hi)
			return true;
	return false;
}

static locale_t utf8;

/*
 * Loaded before main, with the conversion a first mbrtowc loads: both open
 * files, and str_escape runs on threads whose sandbox list opens none (the
 * listen thread names the source it authenticated).
 */
static void __attribute__((constructor)) escape_locale_load(void)
{
	char buf[16];

	utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
	str_escape(buf, sizeof(buf), "\xc3\xa9", 2);
}

char *str_escape(char *buf, size_t len, const char *s, size_t max)
{
	locale_t old = 0;
	mbstate_t st;
	size_t o = 0;

	if (utf8)
		old = uselocale(utf8);
	memset(&st, 0, sizeof(st));
	for (size_t i = 0; i < max && s[i] && o + 5 < len;) {
		unsigned char c = s[i];
		size_t k = 1;
		wchar_t w;

		if (c >= 0x20 && c < 0x7f && c != '\\') {
			buf[o++] = c;
		} else if (c == '\\') {
			buf[o++] = '\\';
			buf[o++] = '\\';
		} else if (c >= 0x80 && utf8 && (k = mbrtowc(&w, s + i, max - i, &st)) >= 2 &&
			   k <= 4 && iswprint(w) && !invisible(w) && o + k < len) {
			memcpy(buf + o, s + i, k);
			o += k;
		} else {
			memset(&st, 0, sizeof(st));
			k = 1;
			o += snprintf(buf + o, len - o, "\\x%02x", c);
		}
		i += k;
	}
	if (len)
		buf[o < len ? o : len - 1] = 0;
	if (utf8)
		uselocale(old);
	return buf;
}

uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

int poll_until(struct pollfd *p, uint64_t deadline_ns)
{
	for (;;) {
		uint64_t now = mono_ns();
		int ms = !deadline_ns ? -1 : deadline_ns > now ? (int)((deadline_ns - now + 999999) / 1000000) : 0;
		int rc = poll(p, 1, ms);

		if (rc >= 0 || errno != EINTR)
			return rc;
	}
}

unsigned threads_default(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n < 1 ? 1 : n > 64 ? 64 : (unsigned)n;
}

unsigned long long mem_available_mib(void)
{
	FILE *f = fopen("/proc/meminfo", "r");
	unsigned long long kib = 0;
	char line[128];

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1)
			break;
	if (f)
		fclose(f);
	return kib ? kib >> 10 : ~0ull;
}

bool test_hooks_built(void)
{
#ifdef SR_TEST_HOOKS
	return true;
#else
	return false;
#endif
}

const char *test_env(const char *name)
{
#ifdef SR_TEST_HOOKS
	const char *v = getenv(name);

	return v && *v ? v : NULL;
#else
	(void)name;
	return NULL;
#endif
}

void test_pause(const char *point)
{
	const char *at = test_env("SR_TEST_PAUSE_AT"), *ms_env = test_env("SR_TEST_PAUSE_MS");
	long ms = ms_env ? atol(ms_env) : 2000;
	struct timespec end;

	if (!at || strcmp(at, point))
		return;
	fprintf(stderr, "sr test hook: at %s\n", point);
	/* The whole hold, whatever signal arrives: a fault test times its fault into it. */
	clock_gettime(CLOCK_MONOTONIC, &end);
	end.tv_sec += ms / 1000;
	end.tv_nsec += ms % 1000 * 1000000;
	if (end.tv_nsec >= 1000000000) {
		end.tv_sec++;
		end.tv_nsec -= 1000000000;
	}
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &end, NULL) == EINTR)
		;
}
