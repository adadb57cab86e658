/* Stack switching for fibers. halo__ctx_switch(save, load) pushes the
 * callee-saved registers on the current stack, stores the stack pointer in
 * *save, switches to load and pops the registers saved there. The caller-saved
 * registers are dead across the call by the ABI, so nothing else needs saving.
 * The floating-point control words (MXCSR, x87 CW) are shared by all fibers
 * of a thread and are not switched. */
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
#else
#error "halo: fiber context switching is implemented for x86-64 only"
#endif
	.section .note.GNU-stack,"",@progbits
