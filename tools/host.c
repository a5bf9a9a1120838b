/* SPDX-License-Identifier: MIT */
/* The KVM host check and its report. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "host.h"
#include "util.h"
#include "xc.h"

/* Whether this tool runs from a checkout of sr (tests/box.sh up to three levels above it). */
static bool from_checkout(void)
{
	char dir[PATH_MAX], box[PATH_MAX + 16];
	ssize_t n = readlink("/proc/self/exe", dir, sizeof(dir) - 1);

	if (n <= 0)
		return false;
	dir[n] = 0;
	for (int up = 0; up < 3; up++) {
		char *slash = strrchr(dir, '/');

		if (!slash)
			return false;
		*slash = 0;
		snprintf(box, sizeof(box), "%s/tests/box.sh", dir);
		if (!access(box, X_OK))
			return true;
	}
	return false;
}

static void probe(struct xc_host *h)
{
	struct xc_probe_opts o = { .sysfs = getenv("SR_PROBE_SYSFS"), .dev = getenv("SR_PROBE_DEV") };
	size_t len;

	xc_host_probe(h, &o);
	/* The nested box is in a checkout, not in what make install installs. */
	len = strlen(h->why);
	if (!h->usable && h->other_host && from_checkout())
		snprintf(h->why + len, sizeof(h->why) - len, "; the box gives one: tests/box.sh");
}

bool host_check(char *why, size_t len)
{
	struct xc_host h;

	probe(&h);
	if (!h.usable)
		snprintf(why, len, "%s", h.why);
	return h.usable;
}

void host_check_or_die(void)
{
	struct xc_host h;

	probe(&h);
	if (!h.usable)
		die(EXIT_NO_KVM, "%s", h.why);
}

static void report_text(const struct xc_host *h)
{
	printf("module:       %s%s\n", xc_kvm_flavour_name(h->flavour),
	       h->pvm_loaded && h->flavour != XC_KVM_PVM ? " (kvm_pvm is loaded too)" : "");
	if (h->dev_present)
		printf("/dev/kvm:     opened, KVM API %d\n", h->api_version);
	else
		printf("/dev/kvm:     %s\n", h->dev_msg);
	printf("capabilities:");
	for (unsigned i = 0; i < h->ncaps; i++) {
		if (i % 4 == 0 && i)
			printf("\n             ");
		printf(" %s=%s%s", h->caps[i].name,
		       h->caps[i].value < 0 ? "?" : h->caps[i].value ? "yes" : "no",
		       h->caps[i].required ? "" : "*");
	}
	printf("\n              (* optional: sr uses it where present)\n");
	printf("probe guest:  %s: %s\n", h->guest_ran ? "ran" : "did not run", h->guest_msg);
	if (h->usable)
		printf("verdict:      sr's guests can run here (%s)\n", xc_kvm_flavour_name(h->flavour));
	else
		printf("verdict:      sr's guests cannot run here: %s\n", h->why);
}

static void report_json(const struct xc_host *h)
{
	printf("{\"module\":\"%s\",\"pvm_loaded\":%s,\"dev_present\":%s,\"dev_error\":",
	       xc_kvm_flavour_name(h->flavour), h->pvm_loaded ? "true" : "false",
	       h->dev_present ? "true" : "false");
	if (h->dev_present)
		printf("null");
	else
		json_str(h->dev_msg, sizeof(h->dev_msg));
	printf(",\"api_version\":%d,\"caps\":{", h->api_version);
	for (unsigned i = 0; i < h->ncaps; i++)
		printf("%s\"%s\":{\"value\":%d,\"required\":%s}", i ? "," : "", h->caps[i].name,
		       h->caps[i].value, h->caps[i].required ? "true" : "false");
	printf("},\"guest_runs\":%s,\"guest\":", h->guest_ran ? "true" : "false");
	json_str(h->guest_msg, sizeof(h->guest_msg));
	printf(",\"probe_us\":%u,\"usable\":%s,\"why\":", h->probe_us, h->usable ? "true" : "false");
	if (h->usable)
		printf("null");
	else
		json_str(h->why, sizeof(h->why));
	printf("}\n");
}

int host_report(bool json)
{
	struct xc_host h;

	probe(&h);
	if (json)
		report_json(&h);
	else
		report_text(&h);
	return h.usable ? 0 : EXIT_NO_KVM;
}
