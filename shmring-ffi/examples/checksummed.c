/* A C peer for cross-language tests (the Python suite uses it): sends or receives
 * numbered, checksummed messages on a ring another program created, of any kind.
 *
 *   checksummed send /name COUNT   messages 0..COUNT, then closes
 *   checksummed recv /name COUNT   checks COUNT messages in order, prints "ok COUNT"
 *
 * Message `seq`: seq as 8 little-endian bytes, a body of seq * 7919 % 120 bytes cut from
 * the repeating pattern 0, 1, ..., 250 starting at seq % 251, then the CRC-32 (zlib's) of
 * all that as 4 little-endian bytes. Same format as shmring/examples/checksummed.rs. */
#include "shmring.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PATIENCE_NS 30000000000ull /* 30 s */

static uint32_t crc_table[256];

static void crc_init(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[n] = c;
    }
}

static uint32_t crc32_of(const uint8_t *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    while (n--) c = crc_table[(c ^ *p++) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

/* Writes message `seq` into `out` (at least 132 bytes); returns its length. */
static size_t message(uint64_t seq, uint8_t *out) {
    size_t len = (size_t)(seq * 7919 % 120), start = (size_t)(seq % 251), n = 0;
    for (int i = 0; i < 8; i++) out[n++] = (uint8_t)(seq >> (8 * i));
    for (size_t j = 0; j < len; j++) out[n++] = (uint8_t)((start + j) % 251);
    uint32_t crc = crc32_of(out, n);
    for (int i = 0; i < 4; i++) out[n++] = (uint8_t)(crc >> (8 * i));
    return n;
}

static int fail(const char *what, uint64_t seq, shmring_status st) {
    fprintf(stderr, "checksummed: %s %llu: %s: %s\n", what, (unsigned long long)seq,
            shmring_status_str(st), shmring_last_error_message());
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 4 || (strcmp(argv[1], "send") != 0 && strcmp(argv[1], "recv") != 0)) {
        fprintf(stderr, "usage: %s send|recv /name COUNT\n", argv[0]);
        return 2;
    }
    uint64_t count = strtoull(argv[3], NULL, 10);
    crc_init();
    shmring_ring_t *ring = NULL;
    shmring_status st = shmring_ring_open(argv[2], &ring);
    if (st != SHMRING_OK) return fail("open", 0, st);
    uint8_t want[160], got[4096];
    if (argv[1][0] == 's') {
        shmring_producer_t *tx = NULL;
        if ((st = shmring_producer_create(ring, &tx)) != SHMRING_OK) return fail("attach", 0, st);
        for (uint64_t seq = 0; seq < count; seq++) {
            size_t n = message(seq, want);
            if ((st = shmring_send_timeout(tx, want, n, PATIENCE_NS)) != SHMRING_OK)
                return fail("send", seq, st);
        }
        shmring_producer_free(tx); /* end of stream */
    } else {
        shmring_consumer_t *rx = NULL;
        if ((st = shmring_consumer_create(ring, &rx)) != SHMRING_OK) return fail("attach", 0, st);
        for (uint64_t seq = 0; seq < count; seq++) {
            size_t n = 0, w = message(seq, want);
            if ((st = shmring_recv_timeout(rx, got, sizeof got, &n, PATIENCE_NS)) != SHMRING_OK)
                return fail("recv", seq, st);
            if (n != w || memcmp(got, want, n) != 0) {
                fprintf(stderr, "checksummed: message %llu differs\n", (unsigned long long)seq);
                return 1;
            }
        }
        printf("ok %llu\n", (unsigned long long)count);
        shmring_consumer_free(rx);
    }
    shmring_ring_free(ring);
    return 0;
}
