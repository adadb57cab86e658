/* Stack switching for fibers. halo__ctx_switch(save, load) saves the
 * callee-saved registers on the current stack, stores the stack pointer in
 * *save, switches to load and pops the registers saved there. The caller-saved
 * registers are dead across the call by the ABI, so nothing else needs saving.
 * The floating-point control and status registers (MXCSR and the x87 CW;
 * FPCR/FPSR) are shared by all fibers of a thread and are not switched.
 * runtime/fiber.c (ctx_init) lays out the first frame of a new fiber to
 * match what each version pops. */
#if defined(__x86_64__)
	.text
	.p2align 4
	.globl halo__ctx_switch
	.hidden halo__ctx_switch
	.type halo__ctx_switch, @function
halo__ctx_switch:
	pushq %rbp
	pushq %rbx
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	movq %rsp, (%rdi)
	movq %rsi, %rsp
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %rbx
	popq %rbp
	ret
	.size halo__ctx_switch, .-halo__ctx_switch

/* First frame of a new fiber: halo__ctx_switch "returns" here with the
 * argument in r12 and the entry function in r13. The entry never returns. */
	.p2align 4
	.globl halo__ctx_trampoline
	.hidden halo__ctx_trampoline
	.type halo__ctx_trampoline, @function
halo__ctx_trampoline:
	movq %r12, %rdi
	callq *%r13
	ud2
	.size halo__ctx_trampoline, .-halo__ctx_trampoline
#elif defined(__aarch64__)
/* AAPCS64: x19-x28, the frame pointer x29, the link register x30 and the low
 * halves of v8-v15 (d8-d15) are callee-saved; 176 bytes keep sp 16-aligned.
 * The switch "returns" through the loaded x30. */
	.text
	.p2align 4
	.globl halo__ctx_switch
	.hidden halo__ctx_switch
	.type halo__ctx_switch, %function
halo__ctx_switch:
	sub sp, sp, #176
	stp x19, x20, [sp, #0]
	stp x21, x22, [sp, #16]
	stp x23, x24, [sp, #32]
	stp x25, x26, [sp, #48]
	stp x27, x28, [sp, #64]
	stp x29, x30, [sp, #80]
	stp d8, d9, [sp, #96]
	stp d10, d11, [sp, #112]
	stp d12, d13, [sp, #128]
	stp d14, d15, [sp, #144]
	mov x2, sp
	str x2, [x0]
	mov sp, x1
	ldp x19, x20, [sp, #0]
	ldp x21, x22, [sp, #16]
	ldp x23, x24, [sp, #32]
	ldp x25, x26, [sp, #48]
	ldp x27, x28, [sp, #64]
	ldp x29, x30, [sp, #80]
	ldp d8, d9, [sp, #96]
	ldp d10, d11, [sp, #112]
	ldp d12, d13, [sp, #128]
	ldp d14, d15, [sp, #144]
	add sp, sp, #176
	ret
	.size halo__ctx_switch, .-halo__ctx_switch

/* First frame of a new fiber: the argument in x19, the entry in x20. */
	.p2align 4
	.globl halo__ctx_trampoline
	.hidden halo__ctx_trampoline
	.type halo__ctx_trampoline, %function
halo__ctx_trampoline:
	mov x0, x19
	blr x20
	brk #0
	.size halo__ctx_trampoline, .-halo__ctx_trampoline
#else
#error "halo: fiber context switching is implemented for x86-64 and aarch64"
#endif
	.section .note.GNU-stack,"",@progbits
