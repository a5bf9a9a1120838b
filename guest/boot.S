/* SPDX-License-Identifier: MIT */
/*
 * Test guest start-up: entered in 32-bit flat protected mode at
 * SR_GUEST_LOAD by the runner (BSP) or in real mode at the trampoline by
 * INIT-SIPI-SIPI (APs).  Both build the same long-mode environment: an
 * identity map of the low 4 GiB in 2 MiB pages, the GDT below, then C.
 */
#define CODE32		0x08
#define DATA		0x10
#define CODE64		0x18
#define STACK_SIZE	16384
#define MAX_CPUS	16
#define TRAMPOLINE	0x8000

	.section .text.boot, "ax"
	.code32
	.globl _start
_start:
	cli
	lgdt gdt_ptr
	mov $DATA, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %ss
	mov %ax, %fs
	mov %ax, %gs
	mov $(stacks + STACK_SIZE), %esp

	/* Page directories: 2048 entries of 2 MiB cover 4 GiB. */
	mov $pd, %edi
	xor %ecx, %ecx
1:	mov %ecx, %eax
	shl $21, %eax
	or $0x83, %eax			/* present, writable, 2 MiB */
	mov %eax, (%edi,%ecx,8)
	movl $0, 4(%edi,%ecx,8)
	inc %ecx
	cmp $2048, %ecx
	jb 1b
	mov $pdpt, %edi
	xor %ecx, %ecx
2:	mov %ecx, %eax
	shl $12, %eax
	add $pd, %eax
	or $3, %eax
	mov %eax, (%edi,%ecx,8)
	movl $0, 4(%edi,%ecx,8)
	inc %ecx
	cmp $4, %ecx
	jb 2b
	mov $pdpt, %eax
	or $3, %eax
	mov %eax, pml4
	movl $0, pml4 + 4
	mov $bsp_long, %ebx
	jmp enter_long

/* Common to BSP and APs: %ebx = 64-bit entry point. */
enter_long:
	mov %cr4, %eax
	or $((1 << 5) | (1 << 7) | (1 << 9) | (1 << 10)), %eax	/* PAE PGE OSFXSR OSXMMEXCPT */
	mov %eax, %cr4
	mov $pml4, %eax
	mov %eax, %cr3
	mov $0xc0000080, %ecx		/* EFER */
	rdmsr
	or $((1 << 0) | (1 << 8) | (1 << 11)), %eax	/* SCE LME NXE */
	wrmsr
	mov %cr0, %eax
	and $~((1 << 2) | (1 << 30) | (1 << 29)), %eax	/* no EM, CD, NW */
	or $((1 << 31) | (1 << 16) | (1 << 5) | (1 << 1) | 1), %eax	/* PG WP NE MP PE */
	mov %eax, %cr0
	push $CODE64
	push %ebx
	lret

	.code64
bsp_long:
	mov $DATA, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %ss
	mov $(stacks + STACK_SIZE), %rsp
	xor %edi, %edi
	call guest_main
3:	hlt
	jmp 3b

ap_long:
	mov $DATA, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %ss
	mov $1, %eax
	cpuid
	shr $24, %ebx			/* initial APIC id = cpu number */
	mov %ebx, %edi
	lea 1(%rbx), %rax
	imul $STACK_SIZE, %rax
	lea stacks(%rax), %rsp
	call ap_main
4:	hlt
	jmp 4b

	.code32
ap_entry32:
	mov $DATA, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %ss
	mov $(TRAMPOLINE - 16), %esp	/* APs come up one at a time: a shared scratch stack */
	mov $ap_long, %ebx
	jmp enter_long

/* ------------------------------------------------ AP trampoline (copied) */
	.code16
	.globl trampoline_start, trampoline_end
trampoline_start:
	cli
	xor %ax, %ax
	mov %ax, %ds
	lgdtl TRAMPOLINE + (tramp_gdt_ptr - trampoline_start)
	mov %cr0, %eax
	or $1, %eax
	mov %eax, %cr0
	ljmpl $CODE32, $(TRAMPOLINE + (tramp32 - trampoline_start))
	.code32
tramp32:
	mov $DATA, %ax
	mov %ax, %ds
	mov %ax, %ss
	mov $ap_entry32, %eax
	jmp *%eax
	.p2align 3
tramp_gdt_ptr:
	.word gdt_end - gdt - 1
	.long gdt
trampoline_end:

/* ------------------------------------------------------- interrupts */
	.code64
	.p2align 4
	.globl isr_stubs
isr_stubs:
	.set vec, 0
	.rept 256
	.p2align 4
	.if (vec == 8) || ((vec >= 10) && (vec <= 14)) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
	.else
	pushq $0
	.endif
	pushq $vec
	jmp isr_common
	.set vec, vec + 1
	.endr

isr_common:
	cld				/* C expects DF clear; iretq restores the guest's */
	push %rax
	push %rbx
	push %rcx
	push %rdx
	push %rsi
	push %rdi
	push %rbp
	push %r8
	push %r9
	push %r10
	push %r11
	push %r12
	push %r13
	push %r14
	push %r15
	mov %rsp, %rdi
	call isr_dispatch
	pop %r15
	pop %r14
	pop %r13
	pop %r12
	pop %r11
	pop %r10
	pop %r9
	pop %r8
	pop %rbp
	pop %rdi
	pop %rsi
	pop %rdx
	pop %rcx
	pop %rbx
	pop %rax
	add $16, %rsp
	iretq

/*
 * int gpr_hold(uint64_t seed, uint64_t spins, uint64_t save)
 * Loads every GPR but RSP with a pattern from seed, sets DF, spins (or asks
 * the runner to save: then RAX = 0 and RDX = the port, as OUT needs them),
 * and checks that every register and DF survived.  Returns 0, or 1 + the
 * index of the first register that changed (16 = DF).
 */
	.globl gpr_hold
gpr_hold:
	push %rbx
	push %rbp
	push %r12
	push %r13
	push %r14
	push %r15
	sub $136, %rsp			/* 15 patterns + spin counter + save flag */
	mov %rsi, 120(%rsp)
	mov %rdx, 128(%rsp)
	mov %rdi, %rax
	mov $0x0101010101010101, %rcx
	xor %r8d, %r8d
5:	mov %rax, (%rsp,%r8,8)
	add %rcx, %rax
	rol $7, %rax
	inc %r8
	cmp $15, %r8
	jb 5b
	cmpq $0, 128(%rsp)
	je 6f
	movq $0, 0(%rsp)		/* rax */
	movq $0x508, 24(%rsp)		/* rdx: SR_HC_PORT + SR_HC_SAVE */
6:	mov 0(%rsp), %rax
	mov 8(%rsp), %rbx
	mov 16(%rsp), %rcx
	mov 24(%rsp), %rdx
	mov 32(%rsp), %rsi
	mov 40(%rsp), %rdi
	mov 48(%rsp), %rbp
	mov 56(%rsp), %r8
	mov 64(%rsp), %r9
	mov 72(%rsp), %r10
	mov 80(%rsp), %r11
	mov 88(%rsp), %r12
	mov 96(%rsp), %r13
	mov 104(%rsp), %r14
	mov 112(%rsp), %r15
	std
	cmpq $0, 128(%rsp)
	je 7f
	outl %eax, %dx
	jmp 8f
7:	decq 120(%rsp)
	jnz 7b
8:	pushfq
	testq $0x400, (%rsp)
	jz 9f
	add $8, %rsp
	cld
	cmp 0(%rsp), %rax
	jne 10f
	cmp 8(%rsp), %rbx
	jne 11f
	cmp 16(%rsp), %rcx
	jne 12f
	cmp 24(%rsp), %rdx
	jne 13f
	cmp 32(%rsp), %rsi
	jne 14f
	cmp 40(%rsp), %rdi
	jne 15f
	cmp 48(%rsp), %rbp
	jne 16f
	cmp 56(%rsp), %r8
	jne 17f
	cmp 64(%rsp), %r9
	jne 18f
	cmp 72(%rsp), %r10
	jne 19f
	cmp 80(%rsp), %r11
	jne 20f
	cmp 88(%rsp), %r12
	jne 21f
	cmp 96(%rsp), %r13
	jne 22f
	cmp 104(%rsp), %r14
	jne 23f
	cmp 112(%rsp), %r15
	jne 24f
	xor %eax, %eax
	jmp 30f
9:	add $8, %rsp
	cld
	mov $17, %eax
	jmp 30f
10:	mov $1, %eax
	jmp 30f
11:	mov $2, %eax
	jmp 30f
12:	mov $3, %eax
	jmp 30f
13:	mov $4, %eax
	jmp 30f
14:	mov $5, %eax
	jmp 30f
15:	mov $6, %eax
	jmp 30f
16:	mov $7, %eax
	jmp 30f
17:	mov $8, %eax
	jmp 30f
18:	mov $9, %eax
	jmp 30f
19:	mov $10, %eax
	jmp 30f
20:	mov $11, %eax
	jmp 30f
21:	mov $12, %eax
	jmp 30f
22:	mov $13, %eax
	jmp 30f
23:	mov $14, %eax
	jmp 30f
24:	mov $15, %eax
30:	add $136, %rsp
	pop %r15
	pop %r14
	pop %r13
	pop %r12
	pop %rbp
	pop %rbx
	ret

/*
 * void fp_load(const void *pat, int avx)
 * x87 stack, FCW, MXCSR and XMM0-15 (YMM0-15 with avx) from pat:
 * pat + 0: 8 x u64 integers for the x87 stack, +64: u16 FCW, +68: u32 MXCSR,
 * +128: 16 x 32 bytes of vector data.
 */
	.globl fp_load
fp_load:
	fninit
	fldcw 64(%rdi)
	fildq 0(%rdi)
	fildq 8(%rdi)
	fildq 16(%rdi)
	fildq 24(%rdi)
	fildq 32(%rdi)
	fildq 40(%rdi)
	fildq 48(%rdi)
	fildq 56(%rdi)
	ldmxcsr 68(%rdi)
	test %esi, %esi
	jnz fp_load_vex
	.globl fp_load_sse
fp_load_sse:
	movdqu 128(%rdi), %xmm0
	movdqu 160(%rdi), %xmm1
	movdqu 192(%rdi), %xmm2
	movdqu 224(%rdi), %xmm3
	movdqu 256(%rdi), %xmm4
	movdqu 288(%rdi), %xmm5
	movdqu 320(%rdi), %xmm6
	movdqu 352(%rdi), %xmm7
	movdqu 384(%rdi), %xmm8
	movdqu 416(%rdi), %xmm9
	movdqu 448(%rdi), %xmm10
	movdqu 480(%rdi), %xmm11
	movdqu 512(%rdi), %xmm12
	movdqu 544(%rdi), %xmm13
	movdqu 576(%rdi), %xmm14
	movdqu 608(%rdi), %xmm15
	ret
/*
 * Under nested TCG, CPUID can offer AVX while VEX instructions fault: the
 * #UD handler then resumes at fp_load_sse and the guest stops checking YMM.
 */
	.globl fp_load_vex, fp_load_vex_end
fp_load_vex:
	vmovdqu 128(%rdi), %ymm0
	vmovdqu 160(%rdi), %ymm1
	vmovdqu 192(%rdi), %ymm2
	vmovdqu 224(%rdi), %ymm3
	vmovdqu 256(%rdi), %ymm4
	vmovdqu 288(%rdi), %ymm5
	vmovdqu 320(%rdi), %ymm6
	vmovdqu 352(%rdi), %ymm7
	vmovdqu 384(%rdi), %ymm8
	vmovdqu 416(%rdi), %ymm9
	vmovdqu 448(%rdi), %ymm10
	vmovdqu 480(%rdi), %ymm11
	vmovdqu 512(%rdi), %ymm12
	vmovdqu 544(%rdi), %ymm13
	vmovdqu 576(%rdi), %ymm14
	vmovdqu 608(%rdi), %ymm15
fp_load_vex_end:
	ret

/* void fp_save(void *area, uint64_t xcr0_mask): XSAVE (or FXSAVE when mask is 0). */
	.globl fp_save
fp_save:
	test %rsi, %rsi
	jz 41f
	mov %rsi, %rax
	xor %edx, %edx
	xsave (%rdi)
	ret
41:	fxsave (%rdi)
	ret

/* ---------------------------------------------------------------- data */
	.section .data
	.p2align 4
	.globl gdt, gdt_tss
gdt:
	.quad 0
	.quad 0x00cf9a000000ffff	/* 0x08 code32 */
	.quad 0x00cf92000000ffff	/* 0x10 data */
	.quad 0x00af9a000000ffff	/* 0x18 code64 */
	.quad 0x00cf92000000ffff	/* 0x20 data: DS under test */
	.quad 0x00cf92000000ffff	/* 0x28 data: ES under test */
	.quad 0x00cf92000000ffff	/* 0x30 data: FS under test */
	.quad 0x00cf92000000ffff	/* 0x38 data: GS under test */
	.quad 0x00cf92000000ffff	/* 0x40 data: SS under test */
gdt_tss:				/* 0x48 + 16 * cpu: 64-bit TSS descriptors */
	.fill 2 * MAX_CPUS, 8, 0
gdt_end:
gdt_ptr:
	.word gdt_end - gdt - 1
	.long gdt

	.section .bss
	.p2align 12
	.globl pml4
pml4:	.space 4096
pdpt:	.space 4096
pd:	.space 4 * 4096
	.globl stacks
stacks:	.space STACK_SIZE * (MAX_CPUS + 1)

	.section .note.GNU-stack, "", @progbits
