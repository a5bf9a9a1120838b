/* SPDX-License-Identifier: MIT */
/* Loading flat guest images and the x86 register state they start in. */
#include <elf.h>
#include <errno.h>
#include <stdlib.h>
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

bool xc_is_elf(const char *path)
{
	unsigned char m[SELFMAG];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	bool yes;

	if (fd < 0)
		return false;
	yes = read(fd, m, SELFMAG) == SELFMAG && !memcmp(m, ELFMAG, SELFMAG);
	close(fd);
	return yes;
}

/* Reads all of path (at most max bytes) into a fresh buffer. */
static uint8_t *slurp(const char *path, size_t max, size_t *len, struct xc_error *err)
{
	struct stat st;
	uint8_t *buf;
	size_t done = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		xc_set_error(err, errno, "opening guest image %s", path);
		return NULL;
	}
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > max) {
		xc_set_error(err, 0, "guest image %s is not a regular file of at most %zu bytes",
			     path, max);
		close(fd);
		return NULL;
	}
	buf = malloc(st.st_size ? st.st_size : 1);
	while (buf && done < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + done, st.st_size - done);

		if (n <= 0) {
			xc_set_error(err, n ? errno : EIO, "reading guest image %s", path);
			free(buf);
			close(fd);
			return NULL;
		}
		done += n;
	}
	close(fd);
	if (!buf)
		xc_set_error(err, ENOMEM, "guest image %s", path);
	*len = done;
	return buf;
}

/* Every check names the ELF field it failed on; nothing is copied until all pass. */
static int elf_check(const uint8_t *f, size_t len, uint64_t lo, uint64_t hi, const char *path,
		     struct xc_error *err)
{
	const Elf64_Ehdr *eh = (const void *)f;

	if (len < sizeof(*eh) || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
	    eh->e_ident[EI_DATA] != ELFDATA2LSB)
		return xc_set_error(err, 0, "%s: not a little-endian 64-bit ELF file", path);
	if (eh->e_type != ET_EXEC || eh->e_machine != EM_X86_64)
		return xc_set_error(err, 0, "%s: ELF type %u machine %u; sr-run loads x86-64 "
				    "executables (ET_EXEC, EM_X86_64)", path, eh->e_type, eh->e_machine);
	if (eh->e_phentsize != sizeof(Elf64_Phdr) || !eh->e_phnum ||
	    eh->e_phoff > len || (len - eh->e_phoff) / sizeof(Elf64_Phdr) < eh->e_phnum)
		return xc_set_error(err, 0, "%s: ELF program headers (%u at offset %llu) lie outside "
				    "the file", path, eh->e_phnum, (unsigned long long)eh->e_phoff);
	if (eh->e_entry < lo || eh->e_entry >= hi)
		return xc_set_error(err, 0, "%s: ELF entry 0x%llx outside 0x%llx..0x%llx", path,
				    (unsigned long long)eh->e_entry, (unsigned long long)lo,
				    (unsigned long long)hi);
	for (unsigned i = 0; i < eh->e_phnum; i++) {
		const Elf64_Phdr *ph = (const void *)(f + eh->e_phoff + i * sizeof(*ph));

		if (ph->p_type != PT_LOAD)
			continue;
		if (ph->p_filesz > ph->p_memsz || ph->p_offset > len ||
		    ph->p_filesz > len - ph->p_offset)
			return xc_set_error(err, 0, "%s: ELF segment %u: %llu file bytes at offset %llu "
					    "(memory size %llu) do not fit the %zu-byte file", path, i,
					    (unsigned long long)ph->p_filesz,
					    (unsigned long long)ph->p_offset,
					    (unsigned long long)ph->p_memsz, len);
		if (ph->p_paddr < lo || ph->p_paddr > hi || ph->p_memsz > hi - ph->p_paddr)
			return xc_set_error(err, 0, "%s: ELF segment %u at 0x%llx (%llu bytes) outside "
					    "0x%llx..0x%llx", path, i, (unsigned long long)ph->p_paddr,
					    (unsigned long long)ph->p_memsz, (unsigned long long)lo,
					    (unsigned long long)hi);
	}
	return 0;
}

int xc_load_elf(struct xc_domain *d, const char *path, uint64_t lo, uint64_t hi, uint64_t *entry,
		struct xc_error *err)
{
	size_t len;
	uint8_t *f = slurp(path, 64u << 20, &len, err);
	const Elf64_Ehdr *eh = (const void *)f;
	int loaded = 0;

	if (!f)
		return -1;
	if (elf_check(f, len, lo, hi, path, err)) {
		free(f);
		return -1;
	}
	for (unsigned i = 0; i < eh->e_phnum; i++) {
		const Elf64_Phdr *ph = (const void *)(f + eh->e_phoff + i * sizeof(*ph));
		uint8_t *dst;

		if (ph->p_type != PT_LOAD || !ph->p_memsz)
			continue;
		dst = xc_gpa_to_hva(d, ph->p_paddr, ph->p_memsz);
		if (!dst) {
			xc_set_error(err, 0, "%s: ELF segment %u at 0x%llx is not in guest RAM", path, i,
				     (unsigned long long)ph->p_paddr);
			free(f);
			return -1;
		}
		memcpy(dst, f + ph->p_offset, ph->p_filesz);
		memset(dst + ph->p_filesz, 0, ph->p_memsz - ph->p_filesz);
		loaded++;
	}
	*entry = eh->e_entry;
	free(f);
	if (!loaded)
		return xc_set_error(err, 0, "%s: the ELF file has no PT_LOAD segment", path);
	return 0;
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
