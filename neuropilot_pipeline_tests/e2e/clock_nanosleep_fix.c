/*
 * Preloaded before libfaketime by test_production_instance.py.
 *
 * The stack under test runs with a faked wall clock (libfaketime, FAKETIME_DONT_FAKE_MONOTONIC=1:
 * timeouts, heartbeats and gRPC deadlines keep real monotonic time). libfaketime 0.9.10 (Debian
 * bookworm) rewrites the deadline of clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME) even when the
 * monotonic clock is not faked, so Python >= 3.11's time.sleep() fails with EINVAL
 * (libfaketime issue #426, fixed upstream after 0.9.10). With the monotonic clock not faked, the
 * right behaviour is to leave such a sleep alone: that is all this does. Every other clock
 * (CLOCK_REALTIME sleeps included) still goes through libfaketime.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int clock_nanosleep(clockid_t clock_id, int flags, const struct timespec *request, struct timespec *remain) {
    if (clock_id == CLOCK_MONOTONIC) {
        /* clock_nanosleep returns the error number instead of setting errno. */
        return syscall(SYS_clock_nanosleep, clock_id, flags, request, remain) == 0 ? 0 : errno;
    }
    static int (*next)(clockid_t, int, const struct timespec *, struct timespec *);
    if (next == NULL) {
        next = (int (*)(clockid_t, int, const struct timespec *, struct timespec *))dlsym(RTLD_NEXT, "clock_nanosleep");
    }
    return next(clock_id, flags, request, remain);
}
