/* SPDX-License-Identifier: MIT */
/* Loading flat guest images and the x86 register state they start in. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "xc.h"
#include "xc_priv.h"

long xc_load_file(struct xc_domain *d, const char *path, uint64_t gpa, uint64_t max,
		  struct xc_error *err)
{
	struct stat st;
	uint8_t *dst;
	long done = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return xc_set_error(err, errno, "opening guest image %s", path);
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		close(fd);
		return xc_set_error(err, 0, "guest image %s is not a regular file", path);
	}
	if (st.st_size == 0 || (uint64_t)st.st_size > max) {
		close(fd);
		return xc_set_error(err, 0, "guest image %s is %lld bytes; it must be 1..%llu",
				    path, (long long)st.st_size, (unsigned long long)max);
	}
	dst = xc_gpa_to_hva(d, gpa, st.st_size);
	if (!dst) {
		close(fd);
		return xc_set_error(err, 0, "guest image %s does not fit in RAM at 0x%llx", path,
				    (unsigned long long)gpa);
	}
	while (done < st.st_size) {
		ssize_t n = read(fd, dst + done, st.st_size - done);

		if (n <= 0) {
			close(fd);
			return xc_set_error(err, n ? errno : EIO, "reading guest image %s", path);
		}
		done += n;
	}
	close(fd);
	return done;
}

void xc_flat_seg(struct kvm_segment *s, uint16_t sel, uint8_t type)
{
	memset(s, 0, sizeof(*s));
	s->base = 0;
	s->limit = 0xffffffff;
	s->selector = sel;
	s->type = type;
	s->present = 1;
	s->dpl = 0;
	s->db = 1;
	s->s = 1;
	s->g = 1;
}

int xc_vcpu_boot_pm32(struct xc_vcpu *v, uint64_t entry, struct xc_error *err)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	int fd = xc_vcpu_fd(v);

	if (ioctl(fd, KVM_GET_SREGS, &sregs))
		return xc_set_error(err, errno, "KVM_GET_SREGS");
	xc_flat_seg(&sregs.cs, 0x08, 0xb);
	xc_flat_seg(&sregs.ds, 0x10, 0x3);
	sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
	sregs.cr0 = 0x11;		/* PE, ET */
	sregs.cr4 = 0;
	sregs.efer = 0;
	if (ioctl(fd, KVM_SET_SREGS, &sregs))
		return xc_set_error(err, errno, "KVM_SET_SREGS");
	memset(&regs, 0, sizeof(regs));
	regs.rip = entry;
	regs.rflags = 2;
	if (ioctl(fd, KVM_SET_REGS, &regs))
		return xc_set_error(err, errno, "KVM_SET_REGS");
	return 0;
}
