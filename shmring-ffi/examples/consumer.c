/* Consumer: opens the ring named argv[1], receives until the producer has closed and
 * everything is drained, checks the numbering, then unlinks the ring. */
#define _POSIX_C_SOURCE 200809L
#include "shmring.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static int fail(const char *what, shmring_status status) {
    fprintf(stderr, "%s: %s: %s\n", what, shmring_status_str(status), shmring_last_error_message());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s /ring-name\n", argv[0]);
        return 2;
    }
    shmring_ring_t *ring = NULL;
    shmring_status st = SHMRING_NOT_FOUND;
    /* The producer may not have created it yet: retry for up to 5 s. */
    for (int tries = 0; tries < 500 && st == SHMRING_NOT_FOUND; tries++) {
        st = shmring_ring_open(argv[1], &ring);
        if (st == SHMRING_NOT_FOUND) {
            struct timespec ten_ms = {0, 10000000};
            nanosleep(&ten_ms, NULL);
        }
    }
    if (st != SHMRING_OK) return fail("open", st);
    shmring_consumer_t *rx = NULL;
    st = shmring_consumer_create(ring, &rx);
    if (st != SHMRING_OK) return fail("attach consumer", st);
    char buf[256], expected[64];
    size_t len = 0;
    long received = 0;
    for (;;) {
        st = shmring_recv_timeout(rx, buf, sizeof buf, &len, 5000000000ull);
        if (st == SHMRING_CLOSED) break;
        if (st != SHMRING_OK) return fail("receive", st);
        int want = snprintf(expected, sizeof expected, "message %ld", received);
        if ((size_t)want != len || memcmp(buf, expected, len) != 0) {
            fprintf(stderr, "message %ld: got %.*s\n", received, (int)len, buf);
            return 1;
        }
        received++;
    }
    printf("received %ld messages from %s, then end of stream\n", received, argv[1]);
    shmring_consumer_free(rx);
    st = shmring_unlink(argv[1]);
    shmring_ring_free(ring);
    return st == SHMRING_OK ? 0 : fail("unlink", st);
}
