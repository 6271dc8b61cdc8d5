/* The example images' entrypoint for linux/amd64: a static executable that needs
 * nothing in the image but itself (no shell, no libc). It greets, then copies
 * /etc/motd to standard output, and exits 0 (1 if /etc/motd cannot be read).
 * Built by build.sh in this directory into ../bin/hello-amd64. */
        .globl  _start
        .text
_start:
        mov     $1, %eax                /* write(1, greeting, len) */
        mov     $1, %edi
        lea     greeting(%rip), %rsi
        mov     $greeting_len, %edx
        syscall
        mov     $2, %eax                /* open("/etc/motd", O_RDONLY) */
        lea     motd(%rip), %rdi
        xor     %esi, %esi
        syscall
        test    %eax, %eax
        js      fail
        mov     %eax, %r12d
copy:
        xor     %eax, %eax              /* read(fd, buffer, 4096) */
        mov     %r12d, %edi
        lea     buffer(%rip), %rsi
        mov     $4096, %edx
        syscall
        test    %rax, %rax
        js      fail
        jz      done
        mov     %rax, %rdx              /* write(1, buffer, n) */
        mov     $1, %eax
        mov     $1, %edi
        lea     buffer(%rip), %rsi
        syscall
        jmp     copy
done:
        xor     %edi, %edi
        jmp     exit
fail:
        mov     $1, %edi
exit:
        mov     $60, %eax               /* exit(status) */
        syscall

        .section .rodata
greeting:
        .ascii  "hello from cairn (linux/amd64)\n"
        .set    greeting_len, . - greeting
motd:
        .asciz  "/etc/motd"

        .bss
        .lcomm  buffer, 4096
