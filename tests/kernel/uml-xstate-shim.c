/*
 * LD_PRELOAD shim for Debian's user-mode-linux 6.1 on hosts whose CPUs have
 * large XSAVE states (e.g. Intel AMX: about 11 KB instead of 2.7 KB).
 *
 * UML 6.1 saves a guest task's FPU state with PTRACE_GETREGSET/NT_X86_XSTATE
 * into a fixed 2696-byte buffer and restores it with PTRACE_SETREGSET of the
 * same size.  Since Linux 5.16 the host accepts SETREGSET only with the whole
 * buffer (fpu_user_cfg.max_size), so on such hosts the first guest process
 * dies with "userspace - ptrace set fp regs failed, errno = 14" and the
 * kernel panics before init runs.
 *
 * Fix: when UML sets a shorter XSTATE buffer, copy it into a full-size one,
 * leave the rest zeroed and clear, in the XSAVE header's XSTATE_BV, every
 * feature bit whose area lies beyond UML's buffer: those components (AMX
 * tiles) are put in their initial state, which is what they are anyway since
 * a guest process can never be granted them.  Everything UML knows about
 * (x87, SSE, AVX, AVX-512, PKRU) is restored exactly.  On hosts without the
 * problem the call is passed through unchanged.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/uio.h>

#ifndef NT_X86_XSTATE
#define NT_X86_XSTATE 0x202
#endif

typedef long (*ptrace_fn)(int, pid_t, void *, void *);

static ptrace_fn real_ptrace;
static size_t full_size;      /* host's XSTATE regset size, once known */
static unsigned char *full_buf;

/* Offsets of the standard-format XSAVE areas (CPUID leaf 0xD); the first two
 * (x87, SSE) live in the legacy area.  Computed once with cpuid. */
static uint32_t area_end[64];

static void cpuid_count(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3])
                     : "a"(leaf), "c"(sub));
}

static void init_areas(void)
{
    uint32_t r[4];
    for (int i = 2; i < 64; i++) {
        cpuid_count(0xd, (uint32_t)i, r);
        area_end[i] = r[0] ? r[1] + r[0] : 0;  /* offset + size */
    }
}

long ptrace(enum __ptrace_request request, ...)
{
    va_list ap;
    va_start(ap, request);
    pid_t pid = va_arg(ap, pid_t);
    void *addr = va_arg(ap, void *);
    void *data = va_arg(ap, void *);
    va_end(ap);

    if (!real_ptrace)
        real_ptrace = (ptrace_fn)dlsym(RTLD_NEXT, "ptrace");

    if (request != PTRACE_SETREGSET || (uintptr_t)addr != NT_X86_XSTATE)
        return real_ptrace(request, pid, addr, data);

    struct iovec *iov = data;
    if (!full_size) {
        long r = real_ptrace(request, pid, addr, data);
        if (r == 0 || errno != EFAULT)
            return r;
        /* Learn the size the host wants: GETREGSET into a big buffer. */
        size_t cap = 1 << 16;
        unsigned char *probe = calloc(1, cap);
        struct iovec piov = { probe, cap };
        if (!probe)
            return -1;
        if (real_ptrace(PTRACE_GETREGSET, pid, addr, &piov) != 0 ||
            piov.iov_len <= iov->iov_len) {
            free(probe);
            errno = EFAULT;
            return -1;
        }
        full_size = piov.iov_len;
        full_buf = probe;
        init_areas();
    }
    if (iov->iov_len >= full_size)
        return real_ptrace(request, pid, addr, data);

    memset(full_buf, 0, full_size);
    memcpy(full_buf, iov->iov_base, iov->iov_len);
    if (iov->iov_len >= 520) {
        uint64_t bv;
        memcpy(&bv, full_buf + 512, sizeof bv);          /* XSTATE_BV */
        for (int i = 2; i < 64; i++)
            if (area_end[i] > iov->iov_len)
                bv &= ~(1ULL << i);
        memcpy(full_buf + 512, &bv, sizeof bv);
    }
    struct iovec fiov = { full_buf, full_size };
    return real_ptrace(request, pid, addr, &fiov);
}
