/* Zero copy: the producer writes a message straight into the ring (reserve / commit), the
 * consumer reads it where it lies (read / release). One process, for brevity. */
#include "shmring.h"

#include <stdio.h>
#include <string.h>

static int fail(const char *what, shmring_status status) {
    fprintf(stderr, "%s: %s: %s\n", what, shmring_status_str(status), shmring_last_error_message());
    return 1;
}

int main(int argc, char **argv) {
    const char *name = argc > 1 ? argv[1] : "/shmring-zero-copy-example";
    shmring_ring_t *ring = NULL;
    shmring_producer_t *tx = NULL;
    shmring_consumer_t *rx = NULL;
    shmring_status st = shmring_spsc_create(name, NULL, &ring);
    if (st != SHMRING_OK) return fail("create", st);
    if ((st = shmring_producer_create(ring, &tx)) != SHMRING_OK) return fail("producer", st);
    if ((st = shmring_consumer_create(ring, &rx)) != SHMRING_OK) return fail("consumer", st);

    void *slot = NULL;
    if ((st = shmring_reserve(tx, 64, 0, &slot)) != SHMRING_OK) return fail("reserve", st);
    int len = snprintf((char *)slot, 64, "written in place");
    if ((st = shmring_commit(tx, (size_t)len)) != SHMRING_OK) return fail("commit", st);

    const void *msg = NULL;
    size_t msg_len = 0;
    if ((st = shmring_read(rx, 0, &msg, &msg_len)) != SHMRING_OK) return fail("read", st);
    int ok = msg_len == (size_t)len && memcmp(msg, "written in place", msg_len) == 0;
    if ((st = shmring_release(rx)) != SHMRING_OK) return fail("release", st);

    shmring_producer_free(tx);
    shmring_consumer_free(rx);
    shmring_unlink(name);
    shmring_ring_free(ring);
    printf(ok ? "zero-copy round trip ok\n" : "zero-copy round trip MISMATCH\n");
    return ok ? 0 : 1;
}
