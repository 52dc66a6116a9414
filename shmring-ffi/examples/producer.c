/* Producer: creates the ring named argv[1] and sends argv[2] numbered messages, then
 * closes (the consumer drains them and sees end of stream). Run consumer.c after it, or
 * at the same time. Build: see shmring-ffi/examples/run.sh. */
#include "shmring.h"

#include <stdio.h>
#include <stdlib.h>

static int fail(const char *what, shmring_status status) {
    fprintf(stderr, "%s: %s: %s\n", what, shmring_status_str(status), shmring_last_error_message());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s /ring-name count\n", argv[0]);
        return 2;
    }
    if (shmring_abi_version() >> 16 != SHMRING_ABI_VERSION_MAJOR) {
        fprintf(stderr, "libshmring ABI %u does not match this program's %u\n",
                (unsigned)shmring_abi_version(), (unsigned)SHMRING_ABI_VERSION);
        return 1;
    }
    long count = strtol(argv[2], NULL, 10);
    shmring_config_t cfg;
    shmring_config_init(&cfg);
    cfg.capacity = 1 << 16;
    cfg.wait_strategy = SHMRING_WAIT_FUTEX;
    shmring_ring_t *ring = NULL;
    shmring_status st = shmring_spsc_create_or_open(argv[1], &cfg, &ring);
    if (st != SHMRING_OK) return fail("create", st);
    shmring_producer_t *tx = NULL;
    st = shmring_producer_create(ring, &tx);
    if (st != SHMRING_OK) return fail("attach producer", st);
    char msg[64];
    for (long i = 0; i < count; i++) {
        int len = snprintf(msg, sizeof msg, "message %ld", i);
        st = shmring_send_timeout(tx, msg, (size_t)len, 5000000000ull); /* 5 s */
        if (st != SHMRING_OK) return fail("send", st);
    }
    printf("sent %ld messages to %s\n", count, argv[1]);
    shmring_producer_free(tx); /* end of stream */
    shmring_ring_free(ring);
    return 0;
}
