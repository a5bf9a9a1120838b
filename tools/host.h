/* SPDX-License-Identifier: MIT */
/* The KVM host check every VM-creating tool makes first, and sr-ctl host's report. */
#ifndef SR_TOOLS_HOST_H
#define SR_TOOLS_HOST_H

#include <stdbool.h>
#include <stddef.h>

/* Exit status of a tool on a host that cannot run sr's guests. */
#define EXIT_NO_KVM	3

/*
 * Probes /dev/kvm (xc_host_probe); on a host that cannot run sr's guests
 * prints one line naming why and exits EXIT_NO_KVM.  SR_PROBE_SYSFS and
 * SR_PROBE_DEV (testing aids) stand in for /sys and /dev/kvm.
 */
void host_check_or_die(void);
/* The same check, kept for later: true, or false with why (sr-restore --listen). */
bool host_check(char *why, size_t len);

/* sr-ctl host: prints the probe as text or JSON; returns 0 usable, EXIT_NO_KVM not. */
int host_report(bool json);

#endif
