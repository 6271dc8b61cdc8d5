/* The example images' entrypoint for linux/arm64: a static executable that needs
 * nothing in the image but itself (no shell, no libc). It greets, then copies
 * /etc/motd to standard output, and exits 0 (1 if /etc/motd cannot be read).
 * Built by build.sh in this directory into ../bin/hello-arm64. */
        .globl  _start
        .text
_start:
        mov     x0, #1                  /* write(1, greeting, len) */
        adr     x1, greeting
        mov     x2, #greeting_len
        mov     x8, #64
        svc     #0
        mov     x0, #-100               /* openat(AT_FDCWD, "/etc/motd", O_RDONLY) */
        adr     x1, motd
        mov     x2, #0
        mov     x8, #56
        svc     #0
        tbnz    x0, #63, fail
        mov     x19, x0
copy:
        mov     x0, x19                 /* read(fd, buffer, 4096) */
        adrp    x1, buffer
        add     x1, x1, :lo12:buffer
        mov     x2, #4096
        mov     x8, #63
        svc     #0
        tbnz    x0, #63, fail
        cbz     x0, done
        mov     x2, x0                  /* write(1, buffer, n) */
        mov     x0, #1
        adrp    x1, buffer
        add     x1, x1, :lo12:buffer
        mov     x8, #64
        svc     #0
        b       copy
done:
        mov     x0, #0
        b       exit
fail:
        mov     x0, #1
exit:
        mov     x8, #93                 /* exit(status) */
        svc     #0

greeting:
        .ascii  "hello from cairn (linux/arm64)\n"
        .set    greeting_len, . - greeting
motd:
        .asciz  "/etc/motd"

        .bss
        .balign 16
buffer:
        .skip   4096
