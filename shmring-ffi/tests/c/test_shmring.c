/* C test suite for the shmring C ABI: every status reachable from C, out-parameters left
 * alone on failure, NULL arguments, the version macros, zero copy, end of stream.
 * Built by shmring-ffi/tests/c.rs with -std=c11 -Wall -Wextra -Werror -pedantic and
 * -fsanitize=address,undefined, against the static and the shared library. */
#define _POSIX_C_SOURCE 200809L
#include "shmring.h"

#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int failures = 0;
static int checks = 0;

#define CHECK(cond)                                                                     \
    do {                                                                                \
        checks++;                                                                       \
        if (!(cond)) {                                                                  \
            failures++;                                                                 \
            fprintf(stderr, "%s:%d: check failed: %s (last error: %s)\n", __FILE__,      \
                    __LINE__, #cond, shmring_last_error_message());                     \
        }                                                                               \
    } while (0)

#define CHECK_STATUS(call, want) CHECK((call) == (want))

static void name_for(char *out, size_t cap, const char *tag) {
    snprintf(out, cap, "/shmring-ctest-%s-%d", tag, (int)getpid());
}

static void test_version_and_strings(void) {
    CHECK(shmring_abi_version() == SHMRING_ABI_VERSION);
    CHECK((shmring_abi_version() >> 16) == SHMRING_ABI_VERSION_MAJOR);
    CHECK(strcmp(shmring_status_str(SHMRING_OK), "SHMRING_OK") == 0);
    CHECK(strcmp(shmring_status_str(SHMRING_TIMEOUT), "SHMRING_TIMEOUT") == 0);
    CHECK(strcmp(shmring_status_str(9999), "SHMRING_UNKNOWN") == 0);
    /* Every status in the header has its own name. */
    {
        static const int statuses[] = {
            SHMRING_OK, SHMRING_NOT_FOUND, SHMRING_ALREADY_EXISTS, SHMRING_PERMISSION_DENIED,
            SHMRING_INVALID_NAME, SHMRING_INVALID_ARGUMENT, SHMRING_INCOMPATIBLE,
            SHMRING_CORRUPTED, SHMRING_UNINITIALIZED, SHMRING_ALREADY_ATTACHED,
            SHMRING_MESSAGE_TOO_LARGE, SHMRING_BUFFER_TOO_SMALL, SHMRING_WOULD_BLOCK,
            SHMRING_TIMEOUT, SHMRING_CLOSED, SHMRING_PEER_DEAD, SHMRING_IO,
            SHMRING_REGISTRY_FULL, SHMRING_NO_SPACE, SHMRING_REVOKED, SHMRING_NULL_ARGUMENT,
            SHMRING_PANIC, SHMRING_UNKNOWN};
        size_t n = sizeof statuses / sizeof statuses[0];
        for (size_t i = 0; i < n; i++) {
            for (size_t j = i + 1; j < n; j++) {
                CHECK(strcmp(shmring_status_str(statuses[i]), shmring_status_str(statuses[j])) != 0);
            }
        }
        CHECK(strcmp(shmring_status_str(SHMRING_NO_SPACE), "SHMRING_NO_SPACE") == 0);
    }
    CHECK(shmring_last_error_message() != NULL);
}

static void test_names_and_existence(void) {
    char name[64];
    name_for(name, sizeof name, "names");
    shmring_ring_t *ring = (shmring_ring_t *)0x1; /* must stay untouched on failure */
    CHECK_STATUS(shmring_spsc_create("no-slash", NULL, &ring), SHMRING_INVALID_NAME);
    CHECK(ring == (shmring_ring_t *)0x1);
    CHECK(strlen(shmring_last_error_message()) > 0);
    CHECK_STATUS(shmring_ring_open(name, &ring), SHMRING_NOT_FOUND);
    CHECK(ring == (shmring_ring_t *)0x1);
    CHECK_STATUS(shmring_unlink(name), SHMRING_NOT_FOUND);

    shmring_config_t cfg;
    shmring_config_init(&cfg);
    cfg.capacity = 4096;
    CHECK_STATUS(shmring_spsc_create(name, &cfg, &ring), SHMRING_OK);
    shmring_ring_t *again = NULL;
    CHECK_STATUS(shmring_spsc_create(name, &cfg, &again), SHMRING_ALREADY_EXISTS);
    CHECK(again == NULL);
    /* create_or_open of the same ring with another wait strategy: incompatible. */
    cfg.wait_strategy = SHMRING_WAIT_FUTEX;
    CHECK_STATUS(shmring_spsc_create_or_open(name, &cfg, &again), SHMRING_INCOMPATIBLE);
    cfg.wait_strategy = SHMRING_WAIT_SPIN_YIELD;
    CHECK_STATUS(shmring_spsc_create_or_open(name, &cfg, &again), SHMRING_OK);
    shmring_ring_free(again);
    cfg.capacity = 1000;
    CHECK_STATUS(shmring_spsc_create("/shmring-ctest-badcap", &cfg, &again), SHMRING_INVALID_ARGUMENT);
    cfg.capacity = 4096;
    cfg.wait_strategy = 77;
    CHECK_STATUS(shmring_spsc_create("/shmring-ctest-badwait", &cfg, &again), SHMRING_INVALID_ARGUMENT);
    /* 4 was the condvar strategy: refused, with a message saying what to use instead. */
    cfg.wait_strategy = 4;
    CHECK_STATUS(shmring_spsc_create("/shmring-ctest-badwait", &cfg, &again), SHMRING_INVALID_ARGUMENT);
    CHECK(strstr(shmring_last_error_message(), "SHMRING_WAIT_FUTEX") != NULL);
    CHECK_STATUS(shmring_unlink(name), SHMRING_OK);
    shmring_ring_free(ring);
}

/* A segment anyone may write is refused; so is one whose header was damaged. */
static void test_untrusted_segments(void) {
    char name[64], path[96];
    name_for(name, sizeof name, "untrusted");
    snprintf(path, sizeof path, "/dev/shm%s", name);
    shmring_ring_t *ring = NULL, *opened = NULL;
    CHECK_STATUS(shmring_spsc_create(name, NULL, &ring), SHMRING_OK);
    CHECK(chmod(path, 0666) == 0);
    CHECK_STATUS(shmring_ring_open(name, &opened), SHMRING_PERMISSION_DENIED);
    CHECK(chmod(path, 0600) == 0);
    CHECK_STATUS(shmring_ring_open(name, &opened), SHMRING_OK);
    shmring_ring_free(opened);
    /* Header offset 32 is the capacity (docs/layout.md): 3000 is not a power of two. */
    int fd = open(path, O_WRONLY);
    uint64_t bad = 3000;
    CHECK(fd >= 0 && pwrite(fd, &bad, sizeof bad, 32) == (ssize_t)sizeof bad);
    close(fd);
    opened = NULL;
    CHECK_STATUS(shmring_ring_open(name, &opened), SHMRING_CORRUPTED);
    CHECK(opened == NULL);
    CHECK_STATUS(shmring_unlink(name), SHMRING_OK);
    shmring_ring_free(ring);
}

struct collected {
    size_t count;
    size_t bytes;
    int in_order;
};

static void collect(void *ctx, const void *data, size_t len) {
    struct collected *c = (struct collected *)ctx;
    /* message i is i+1 bytes of the letter 'a' + i */
    c->in_order &= len == c->count + 1 && ((const char *)data)[0] == (char)('a' + c->count);
    c->count++;
    c->bytes += len;
}

static void test_batches(void) {
    char name[64];
    name_for(name, sizeof name, "batch");
    shmring_config_t cfg;
    shmring_config_init(&cfg);
    cfg.capacity = 256;
    shmring_ring_t *ring = NULL;
    shmring_producer_t *tx = NULL;
    shmring_consumer_t *rx = NULL;
    CHECK_STATUS(shmring_spsc_create(name, &cfg, &ring), SHMRING_OK);
    CHECK_STATUS(shmring_producer_create(ring, &tx), SHMRING_OK);
    CHECK_STATUS(shmring_consumer_create(ring, &rx), SHMRING_OK);
    char texts[20][20];
    shmring_msg_t msgs[20];
    for (int i = 0; i < 20; i++) {
        memset(texts[i], 'a' + i, sizeof texts[i]);
        msgs[i].data = texts[i];
        msgs[i].len = (size_t)i + 1;
    }
    size_t sent = 99, got = 99;
    struct collected seen = {0, 0, 1};
    CHECK_STATUS(shmring_try_recv_batch(rx, 32, collect, &seen, &got), SHMRING_WOULD_BLOCK);
    CHECK(got == 99);
    /* 256 bytes hold only some of the 20: the batch takes what fits, with one publish. */
    CHECK_STATUS(shmring_try_send_batch(tx, msgs, 20, &sent), SHMRING_OK);
    CHECK(sent > 0 && sent < 20);
    CHECK_STATUS(shmring_try_recv_batch(rx, 32, collect, &seen, &got), SHMRING_OK);
    CHECK(got == sent && seen.count == sent && seen.in_order);
    CHECK_STATUS(shmring_try_recv_batch(rx, 32, NULL, &seen, &got), SHMRING_NULL_ARGUMENT);
    size_t none = 5;
    CHECK_STATUS(shmring_try_send_batch(tx, NULL, 0, &none), SHMRING_WOULD_BLOCK);
    CHECK(none == 5);
    shmring_producer_free(tx);
    shmring_consumer_free(rx);
    CHECK_STATUS(shmring_unlink(name), SHMRING_OK);
    shmring_ring_free(ring);
}

static void test_null_arguments(void) {
    shmring_ring_t *ring = NULL;
    size_t len = 0;
    char buf[8];
    CHECK_STATUS(shmring_spsc_create(NULL, NULL, &ring), SHMRING_NULL_ARGUMENT);
    CHECK_STATUS(shmring_spsc_create("/x", NULL, NULL), SHMRING_NULL_ARGUMENT);
    CHECK_STATUS(shmring_ring_open(NULL, &ring), SHMRING_NULL_ARGUMENT);
    CHECK_STATUS(shmring_unlink(NULL), SHMRING_NULL_ARGUMENT);
    CHECK_STATUS(shmring_producer_create(NULL, NULL), SHMRING_NULL_ARGUMENT);
    CHECK_STATUS(shmring_try_send(NULL, "x", 1), SHMRING_NULL_ARGUMENT);
    CHECK_STATUS(shmring_try_recv(NULL, buf, sizeof buf, &len), SHMRING_NULL_ARGUMENT);
    CHECK_STATUS(shmring_ring_stats(NULL, NULL), SHMRING_NULL_ARGUMENT);
    CHECK(strstr(shmring_last_error_message(), "NULL") != NULL);
    /* free of NULL is a no-op */
    shmring_ring_free(NULL);
    shmring_producer_free(NULL);
    shmring_consumer_free(NULL);
    shmring_config_init(NULL);
}

static void test_messages(void) {
    char name[64];
    name_for(name, sizeof name, "msgs");
    shmring_config_t cfg;
    shmring_config_init(&cfg);
    cfg.capacity = 256;
    cfg.max_message = 100;
    shmring_ring_t *ring = NULL;
    shmring_producer_t *tx = NULL;
    shmring_consumer_t *rx = NULL;
    CHECK_STATUS(shmring_spsc_create(name, &cfg, &ring), SHMRING_OK);
    CHECK_STATUS(shmring_producer_create(ring, &tx), SHMRING_OK);
    CHECK_STATUS(shmring_consumer_create(ring, &rx), SHMRING_OK);
    shmring_producer_t *second = NULL;
    CHECK_STATUS(shmring_producer_create(ring, &second), SHMRING_ALREADY_ATTACHED);
    CHECK(second == NULL);

    char buf[128];
    size_t len = 12345;
    CHECK_STATUS(shmring_try_recv(rx, buf, sizeof buf, &len), SHMRING_WOULD_BLOCK);
    CHECK(len == 12345);
    CHECK_STATUS(shmring_recv_timeout(rx, buf, sizeof buf, &len, 1000000), SHMRING_TIMEOUT);

    char big[101];
    memset(big, 'x', sizeof big);
    CHECK_STATUS(shmring_try_send(tx, big, sizeof big), SHMRING_MESSAGE_TOO_LARGE);
    CHECK_STATUS(shmring_try_send(tx, "hello", 5), SHMRING_OK);
    CHECK_STATUS(shmring_try_send(tx, NULL, 0), SHMRING_OK);
    CHECK_STATUS(shmring_try_recv(rx, buf, 2, &len), SHMRING_BUFFER_TOO_SMALL);
    /* The message stayed; its length is known by reading it in place. */
    const void *ptr = NULL;
    CHECK_STATUS(shmring_read(rx, 0, &ptr, &len), SHMRING_OK);
    CHECK(len == 5 && memcmp(ptr, "hello", 5) == 0);
    CHECK_STATUS(shmring_try_recv(rx, buf, sizeof buf, &len), SHMRING_INVALID_ARGUMENT);
    CHECK_STATUS(shmring_release(rx), SHMRING_OK);
    CHECK_STATUS(shmring_release(rx), SHMRING_INVALID_ARGUMENT);
    CHECK_STATUS(shmring_try_recv(rx, buf, sizeof buf, &len), SHMRING_OK);
    CHECK(len == 0);

    /* Fill the ring, then a bounded send times out and overwrites nothing. */
    int sent = 0;
    while (shmring_try_send(tx, big, 100) == SHMRING_OK) sent++;
    CHECK(sent == 2);
    CHECK_STATUS(shmring_try_send(tx, big, 100), SHMRING_WOULD_BLOCK);
    CHECK_STATUS(shmring_send_timeout(tx, big, 100, 1000000), SHMRING_TIMEOUT);

    shmring_stats_t stats;
    CHECK_STATUS(shmring_ring_stats(ring, &stats), SHMRING_OK);
    CHECK(stats.capacity == 256 && stats.max_message == 100);
    CHECK(stats.messages_in_flight == 2 && stats.messages_sent == 4);
    CHECK(stats.kind == SHMRING_KIND_SPSC && stats.producers == 1 && stats.consumers == 1);
    shmring_peer_t peers[4];
    size_t npeers = 0;
    CHECK_STATUS(shmring_ring_peers(ring, peers, 4, &npeers), SHMRING_OK);
    CHECK(npeers == 2 && peers[0].role == 1 && peers[0].state == SHMRING_PEER_ATTACHED);
    CHECK(peers[0].pid == (uint32_t)getpid() && peers[1].role == 2);

    for (int i = 0; i < sent; i++) {
        CHECK_STATUS(shmring_try_recv(rx, buf, sizeof buf, &len), SHMRING_OK);
        CHECK(len == 100 && buf[0] == 'x');
    }

    /* Zero copy. */
    void *slot = NULL;
    CHECK_STATUS(shmring_reserve(tx, 16, 0, &slot), SHMRING_OK);
    memcpy(slot, "zero copy", 9);
    CHECK_STATUS(shmring_try_send(tx, "x", 1), SHMRING_INVALID_ARGUMENT);
    CHECK_STATUS(shmring_commit(tx, 17), SHMRING_INVALID_ARGUMENT);
    CHECK_STATUS(shmring_commit(tx, 9), SHMRING_OK);
    CHECK_STATUS(shmring_commit(tx, 9), SHMRING_INVALID_ARGUMENT);
    CHECK_STATUS(shmring_reserve(tx, 8, 0, &slot), SHMRING_OK);
    CHECK_STATUS(shmring_cancel(tx), SHMRING_OK);
    CHECK_STATUS(shmring_read(rx, 1000000, &ptr, &len), SHMRING_OK);
    CHECK(len == 9 && memcmp(ptr, "zero copy", 9) == 0);
    CHECK_STATUS(shmring_release(rx), SHMRING_OK);

    /* End of stream: the producer leaves, the consumer drains, then CLOSED. */
    CHECK_STATUS(shmring_try_send(tx, "last", 4), SHMRING_OK);
    shmring_producer_free(tx);
    CHECK_STATUS(shmring_recv_timeout(rx, buf, sizeof buf, &len, UINT64_MAX), SHMRING_OK);
    CHECK(len == 4 && memcmp(buf, "last", 4) == 0);
    CHECK_STATUS(shmring_try_recv(rx, buf, sizeof buf, &len), SHMRING_CLOSED);
    /* A restarted producer takes the role again; the consumer sees its messages. */
    CHECK_STATUS(shmring_producer_create(ring, &tx), SHMRING_OK);
    CHECK_STATUS(shmring_try_send(tx, "again", 5), SHMRING_OK);
    CHECK_STATUS(shmring_try_recv(rx, buf, sizeof buf, &len), SHMRING_OK);
    CHECK(len == 5 && memcmp(buf, "again", 5) == 0);
    shmring_producer_free(tx);
    CHECK_STATUS(shmring_try_recv(rx, buf, sizeof buf, &len), SHMRING_CLOSED);

    /* And the other way: a producer whose consumer left gets CLOSED. */
    shmring_consumer_free(rx);
    CHECK_STATUS(shmring_unlink(name), SHMRING_OK);
    shmring_ring_free(ring);

    name_for(name, sizeof name, "epipe");
    CHECK_STATUS(shmring_spsc_create(name, &cfg, &ring), SHMRING_OK);
    CHECK_STATUS(shmring_producer_create(ring, &tx), SHMRING_OK);
    CHECK_STATUS(shmring_consumer_create(ring, &rx), SHMRING_OK);
    shmring_consumer_free(rx);
    CHECK_STATUS(shmring_try_send(tx, "x", 1), SHMRING_CLOSED);
    shmring_producer_free(tx);
    CHECK_STATUS(shmring_unlink(name), SHMRING_OK);
    shmring_ring_free(ring);
}

static void test_mpmc(void) {
    char name[64];
    name_for(name, sizeof name, "mpmc");
    shmring_mpmc_config_t cfg;
    shmring_mpmc_config_init(&cfg);
    CHECK(cfg.slots == 1024 && cfg.max_message == 240 && cfg.max_peers == 16);
    cfg.slots = 4;
    cfg.max_message = 32;
    cfg.max_peers = 4;
    cfg.wait_strategy = SHMRING_WAIT_FUTEX;
    shmring_ring_t *ring = NULL, *other = NULL;
    CHECK_STATUS(shmring_mpmc_create(name, &cfg, &ring), SHMRING_OK);
    /* The kinds do not mix. */
    CHECK_STATUS(shmring_spsc_open(name, &other), SHMRING_INCOMPATIBLE);
    CHECK(other == NULL);
    /* shmring_ring_open takes any kind and says which. */
    CHECK_STATUS(shmring_ring_open(name, &other), SHMRING_OK);
    shmring_kind kind;
    CHECK_STATUS(shmring_ring_kind(other, &kind), SHMRING_OK);
    CHECK(kind == SHMRING_KIND_MPMC);
    shmring_ring_free(other);
    other = NULL;
    CHECK_STATUS(shmring_mpmc_open(name, &other), SHMRING_OK);
    cfg.slots = 8;
    shmring_ring_t *mismatch = NULL;
    CHECK_STATUS(shmring_mpmc_create_or_open(name, &cfg, &mismatch), SHMRING_INCOMPATIBLE);
    CHECK(mismatch == NULL);

    shmring_producer_t *a = NULL, *b = NULL, *extra = NULL;
    shmring_consumer_t *r1 = NULL, *r2 = NULL;
    CHECK_STATUS(shmring_producer_create(ring, &a), SHMRING_OK);
    CHECK_STATUS(shmring_producer_create(other, &b), SHMRING_OK);
    CHECK_STATUS(shmring_consumer_create(ring, &r1), SHMRING_OK);
    CHECK_STATUS(shmring_consumer_create(other, &r2), SHMRING_OK);
    CHECK_STATUS(shmring_producer_create(ring, &extra), SHMRING_REGISTRY_FULL);
    CHECK(extra == NULL);

    /* The same calls as SPSC: copy, zero copy, batch, timeouts. */
    CHECK_STATUS(shmring_try_send(a, "from a", 6), SHMRING_OK);
    CHECK_STATUS(shmring_try_send(b, "from b", 6), SHMRING_OK);
    CHECK_STATUS(shmring_try_send(a, "0123456789012345678901234567890123", 33),
                 SHMRING_MESSAGE_TOO_LARGE);
    char buf[32];
    size_t len = 0;
    CHECK_STATUS(shmring_try_recv(r1, buf, sizeof buf, &len), SHMRING_OK);
    CHECK(len == 6 && memcmp(buf, "from a", 6) == 0);
    /* A short buffer keeps the message for the next call. */
    CHECK_STATUS(shmring_try_recv(r2, buf, 2, &len), SHMRING_BUFFER_TOO_SMALL);
    CHECK_STATUS(shmring_recv_timeout(r2, buf, sizeof buf, &len, 1000000), SHMRING_OK);
    CHECK(len == 6 && memcmp(buf, "from b", 6) == 0);
    void *slot = NULL;
    CHECK_STATUS(shmring_reserve(a, 9, 0, &slot), SHMRING_OK);
    memcpy(slot, "zero copy", 9);
    CHECK_STATUS(shmring_commit(a, 9), SHMRING_OK);
    CHECK_STATUS(shmring_reserve(a, 5, 0, &slot), SHMRING_OK);
    CHECK_STATUS(shmring_cancel(a), SHMRING_OK); /* consumers skip the cancelled slot */
    const void *ptr = NULL;
    CHECK_STATUS(shmring_read(r2, 0, &ptr, &len), SHMRING_OK);
    CHECK(len == 9 && memcmp(ptr, "zero copy", 9) == 0);
    CHECK_STATUS(shmring_release(r2), SHMRING_OK);
    CHECK_STATUS(shmring_recv_timeout(r1, buf, sizeof buf, &len, 20000000), SHMRING_TIMEOUT);

    char texts[6][8];
    shmring_msg_t msgs[6];
    for (int i = 0; i < 6; i++) {
        memset(texts[i], 'a' + i, sizeof texts[i]);
        msgs[i].data = texts[i];
        msgs[i].len = (size_t)i + 1;
    }
    size_t sent = 0, got = 0;
    CHECK_STATUS(shmring_try_send_batch(b, msgs, 6, &sent), SHMRING_OK);
    CHECK(sent == 4); /* four slots */
    struct collected seen = {0, 0, 1};
    CHECK_STATUS(shmring_try_recv_batch(r1, 16, collect, &seen, &got), SHMRING_OK);
    CHECK(got == 4 && seen.count == 4 && seen.in_order);

    shmring_stats_t stats;
    CHECK_STATUS(shmring_ring_stats(ring, &stats), SHMRING_OK);
    CHECK(stats.kind == SHMRING_KIND_MPMC && stats.slots == 4 && stats.max_message == 32);
    CHECK(stats.messages_sent == 7 && stats.messages_received == 7 && stats.messages_in_flight == 0);
    CHECK(stats.producers == 2 && stats.consumers == 2 && stats.claims_skipped == 0);

    /* End of stream once every producer has gone. */
    shmring_producer_free(a);
    CHECK_STATUS(shmring_try_recv(r1, buf, sizeof buf, &len), SHMRING_WOULD_BLOCK);
    shmring_producer_free(b);
    CHECK_STATUS(shmring_try_recv(r1, buf, sizeof buf, &len), SHMRING_CLOSED);
    shmring_consumer_free(r1);
    shmring_consumer_free(r2);
    CHECK_STATUS(shmring_unlink(name), SHMRING_OK);
    shmring_ring_free(other);
    shmring_ring_free(ring);
}

static void test_telemetry(void) {
    char name[64];
    name_for(name, sizeof name, "telemetry");
    shmring_mpmc_config_t cfg;
    shmring_mpmc_config_init(&cfg);
    CHECK(cfg.telemetry == 0);
    cfg.slots = 16;
    cfg.max_message = 32;
    cfg.telemetry = 1;
    shmring_ring_t *ring = NULL;
    shmring_producer_t *tx = NULL;
    shmring_consumer_t *rx = NULL;
    CHECK_STATUS(shmring_mpmc_create(name, &cfg, &ring), SHMRING_OK);
    CHECK_STATUS(shmring_producer_create(ring, &tx), SHMRING_OK);
    CHECK_STATUS(shmring_consumer_create(ring, &rx), SHMRING_OK);
    char buf[32];
    size_t len = 0;
    for (int i = 0; i < 10; i++) {
        CHECK_STATUS(shmring_try_send(tx, "0123456789abcdef0123456789abcdef", 32), SHMRING_OK);
        CHECK_STATUS(shmring_try_recv(rx, buf, sizeof buf, &len), SHMRING_OK);
        CHECK(len == 32 && memcmp(buf, "0123456789abcdef", 16) == 0);
    }
    shmring_telemetry_t t;
    CHECK_STATUS(shmring_ring_telemetry(ring, &t), SHMRING_OK);
    CHECK(t.enabled == 1 && t.stamp_every == 1 && t.stamped == 10);
    uint64_t timed = 0;
    for (size_t b = 0; b < SHMRING_LATENCY_BUCKETS; b++) {
        timed += t.latency_buckets[b];
    }
    CHECK(timed == 10);
    CHECK(t.last_send_ns > 0 && t.last_receive_ns > 0);
    shmring_stats_t stats;
    CHECK_STATUS(shmring_ring_stats(ring, &stats), SHMRING_OK);
    CHECK(stats.max_message == 32 && stats.bytes_received == 320);
    CHECK_STATUS(shmring_ring_telemetry(ring, NULL), SHMRING_NULL_ARGUMENT);
    shmring_producer_free(tx);
    shmring_consumer_free(rx);
    CHECK_STATUS(shmring_unlink(name), SHMRING_OK);
    shmring_ring_free(ring);

    /* Without telemetry: nothing recorded, nothing to read. */
    name_for(name, sizeof name, "no-telemetry");
    shmring_config_t plain;
    shmring_config_init(&plain);
    plain.capacity = 4096;
    CHECK_STATUS(shmring_spsc_create(name, &plain, &ring), SHMRING_OK);
    CHECK_STATUS(shmring_ring_telemetry(ring, &t), SHMRING_OK);
    CHECK(t.enabled == 0 && t.stamped == 0);
    CHECK_STATUS(shmring_unlink(name), SHMRING_OK);
    shmring_ring_free(ring);
}

static int readable(int fd, int timeout_ms) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, timeout_ms) == 1;
}

static void test_readiness(void) {
    char name[64];
    name_for(name, sizeof name, "readiness");
    shmring_config_t cfg;
    shmring_config_init(&cfg);
    cfg.capacity = 4096;
    cfg.wait_strategy = SHMRING_WAIT_FUTEX;
    shmring_ring_t *ring = NULL;
    shmring_producer_t *tx = NULL;
    shmring_consumer_t *rx = NULL;
    CHECK_STATUS(shmring_spsc_create(name, &cfg, &ring), SHMRING_OK);
    CHECK_STATUS(shmring_producer_create(ring, &tx), SHMRING_OK);
    CHECK_STATUS(shmring_consumer_create(ring, &rx), SHMRING_OK);
    int fd = -1, armed = -1;
    CHECK_STATUS(shmring_consumer_readiness_fd(rx, &fd), SHMRING_OK);
    CHECK(fd >= 0);
    CHECK_STATUS(shmring_consumer_arm(rx, &armed), SHMRING_OK);
    CHECK(armed == 1 && !readable(fd, 0));
    CHECK_STATUS(shmring_try_send(tx, "ping", 4), SHMRING_OK);
    CHECK(readable(fd, 5000));
    char buf[8];
    size_t len = 0;
    CHECK_STATUS(shmring_try_recv(rx, buf, sizeof buf, &len), SHMRING_OK);
    CHECK(len == 4 && memcmp(buf, "ping", 4) == 0);
    CHECK_STATUS(shmring_try_send(tx, "pong", 4), SHMRING_OK);
    CHECK_STATUS(shmring_consumer_arm(rx, &armed), SHMRING_OK);
    CHECK(armed == 0); /* a message is there: receive, do not poll */
    CHECK_STATUS(shmring_try_recv(rx, buf, sizeof buf, &len), SHMRING_OK);
    CHECK_STATUS(shmring_consumer_arm(rx, NULL), SHMRING_NULL_ARGUMENT);
    CHECK_STATUS(shmring_consumer_readiness_fd(NULL, &fd), SHMRING_NULL_ARGUMENT);
    /* The end of the stream makes it readable, and arm says there is something. */
    CHECK_STATUS(shmring_consumer_arm(rx, &armed), SHMRING_OK);
    shmring_producer_free(tx);
    CHECK(readable(fd, 5000));
    CHECK_STATUS(shmring_consumer_arm(rx, &armed), SHMRING_OK);
    CHECK(armed == 0);
    CHECK_STATUS(shmring_try_recv(rx, buf, sizeof buf, &len), SHMRING_CLOSED);
    close(fd);
    shmring_consumer_free(rx);
    CHECK_STATUS(shmring_unlink(name), SHMRING_OK);
    shmring_ring_free(ring);

    /* The producer side: a full ring arms it; a release makes its descriptor readable. */
    name_for(name, sizeof name, "readiness-space");
    CHECK_STATUS(shmring_spsc_create(name, &cfg, &ring), SHMRING_OK);
    CHECK_STATUS(shmring_producer_create(ring, &tx), SHMRING_OK);
    CHECK_STATUS(shmring_consumer_create(ring, &rx), SHMRING_OK);
    int tx_fd = -1, sent = -1, sends = 0;
    CHECK_STATUS(shmring_producer_readiness_fd(tx, &tx_fd), SHMRING_OK);
    char big[1000];
    memset(big, 'x', sizeof big);
    for (;;) {
        CHECK_STATUS(shmring_try_send_or_arm(tx, big, sizeof big, &sent), SHMRING_OK);
        if (!sent || ++sends > 10) break;
    }
    CHECK(sent == 0 && sends == 4); /* 4096 bytes hold four 1000-byte messages */
    CHECK(!readable(tx_fd, 0));
    char out[1000];
    while (shmring_try_recv(rx, out, sizeof out, &len) == SHMRING_OK) {}
    CHECK(readable(tx_fd, 5000));
    CHECK_STATUS(shmring_try_send_or_arm(tx, big, sizeof big, &sent), SHMRING_OK);
    CHECK(sent == 1);
    CHECK_STATUS(shmring_try_send_or_arm(NULL, big, 1, &sent), SHMRING_NULL_ARGUMENT);
    close(tx_fd);
    shmring_producer_free(tx);
    shmring_consumer_free(rx);
    CHECK_STATUS(shmring_unlink(name), SHMRING_OK);
    shmring_ring_free(ring);

    /* A ring whose producers never look for waiters refuses, in words. */
    name_for(name, sizeof name, "readiness-spin");
    cfg.wait_strategy = SHMRING_WAIT_SPIN;
    CHECK_STATUS(shmring_spsc_create(name, &cfg, &ring), SHMRING_OK);
    CHECK_STATUS(shmring_consumer_create(ring, &rx), SHMRING_OK);
    CHECK_STATUS(shmring_consumer_arm(rx, &armed), SHMRING_INVALID_ARGUMENT);
    CHECK(strstr(shmring_last_error_message(), "Futex") != NULL);
    shmring_consumer_free(rx);
    CHECK_STATUS(shmring_unlink(name), SHMRING_OK);
    shmring_ring_free(ring);
}

/* Broadcast rings: every reader gets every message; durable names; an overwritten
 * zero-copy read fails its release with SHMRING_LAGGED and says how many were lost. */
static void test_broadcast(void) {
    char name[64];
    name_for(name, sizeof name, "broadcast");
    shmring_broadcast_config_t cfg;
    shmring_broadcast_config_init(&cfg);
    CHECK(cfg.capacity == 1u << 20 && cfg.max_readers == 16 && cfg.policy == SHMRING_LOSSLESS);
    cfg.capacity = 1024;
    cfg.max_message = 100;
    cfg.max_readers = 3;
    cfg.policy = SHMRING_OVERWRITE;
    shmring_ring_t *ring = NULL, *other = NULL;
    CHECK_STATUS(shmring_broadcast_create(name, &cfg, &ring), SHMRING_OK);
    CHECK_STATUS(shmring_mpmc_open(name, &other), SHMRING_INCOMPATIBLE);
    CHECK(other == NULL);
    CHECK_STATUS(shmring_broadcast_open(name, &other), SHMRING_OK);
    shmring_kind kind;
    CHECK_STATUS(shmring_ring_kind(other, &kind), SHMRING_OK);
    CHECK(kind == SHMRING_KIND_BROADCAST);
    cfg.policy = 7;
    shmring_ring_t *bad = NULL;
    CHECK_STATUS(shmring_broadcast_create_or_open(name, &cfg, &bad), SHMRING_INVALID_ARGUMENT);
    CHECK(bad == NULL && strstr(shmring_last_error_message(), "SHMRING_OVERWRITE") != NULL);

    shmring_producer_t *tx = NULL, *second = NULL;
    shmring_consumer_t *live = NULL, *risk = NULL, *again = NULL;
    CHECK_STATUS(shmring_producer_create(ring, &tx), SHMRING_OK);
    CHECK_STATUS(shmring_producer_create(other, &second), SHMRING_ALREADY_ATTACHED);
    CHECK(second == NULL);
    CHECK_STATUS(shmring_consumer_create(ring, &live), SHMRING_OK);
    CHECK_STATUS(shmring_broadcast_reader_create(ring, "risk", SHMRING_JOIN_OLDEST, &risk),
                 SHMRING_OK);
    CHECK_STATUS(shmring_broadcast_reader_create(other, "risk", SHMRING_JOIN_LIVE, &again),
                 SHMRING_ALREADY_ATTACHED);
    CHECK_STATUS(shmring_broadcast_reader_create(ring, "no spaces", SHMRING_JOIN_LIVE, &again),
                 SHMRING_INVALID_ARGUMENT);
    CHECK_STATUS(shmring_broadcast_reader_create(ring, NULL, 9, &again), SHMRING_INVALID_ARGUMENT);
    CHECK(again == NULL);

    /* Both readers get the message. */
    CHECK_STATUS(shmring_try_send(tx, "tick", 4), SHMRING_OK);
    char buf[128];
    size_t len = 0;
    CHECK_STATUS(shmring_try_recv(live, buf, sizeof buf, &len), SHMRING_OK);
    CHECK(len == 4 && memcmp(buf, "tick", 4) == 0);
    CHECK_STATUS(shmring_try_recv(risk, buf, sizeof buf, &len), SHMRING_OK);
    CHECK(len == 4 && memcmp(buf, "tick", 4) == 0);

    /* A zero-copy read held while the producer laps the reader: release says LAGGED. */
    CHECK_STATUS(shmring_try_send(tx, "held", 4), SHMRING_OK);
    const void *ptr = NULL;
    CHECK_STATUS(shmring_read(live, 0, &ptr, &len), SHMRING_OK);
    CHECK(len == 4 && memcmp(ptr, "held", 4) == 0);
    char big[100];
    memset(big, 'x', sizeof big);
    for (int i = 0; i < 30; i++) CHECK_STATUS(shmring_try_send(tx, big, sizeof big), SHMRING_OK);
    CHECK_STATUS(shmring_release(live), SHMRING_LAGGED);
    uint64_t missed = shmring_last_lagged_missed();
    CHECK(missed > 0 && missed <= 31);
    /* It goes on with the oldest message left: delivered + missed = sent. */
    uint64_t delivered = 0;
    while (shmring_try_recv(live, buf, sizeof buf, &len) == SHMRING_OK) delivered++;
    CHECK(delivered + missed == 31);

    shmring_stats_t stats;
    CHECK_STATUS(shmring_ring_stats(ring, &stats), SHMRING_OK);
    CHECK(stats.kind == SHMRING_KIND_BROADCAST && stats.policy == SHMRING_OVERWRITE);
    CHECK(stats.max_readers == 3 && stats.capacity == 1024 && stats.messages_sent == 32);
    CHECK(stats.messages_missed >= missed);

    /* Reader records: names, lag and counts. */
    shmring_reader_t readers[4];
    size_t nreaders = 0;
    CHECK_STATUS(shmring_broadcast_readers(ring, readers, 4, &nreaders), SHMRING_OK);
    CHECK(nreaders == 2);
    int named = -1;
    for (size_t i = 0; i < nreaders && i < 4; i++)
        if (strcmp(readers[i].name, "risk") == 0) named = (int)i;
    CHECK(named >= 0);
    if (named >= 0) {
        CHECK(readers[named].state == SHMRING_PEER_ATTACHED && readers[named].delivered == 1);
        CHECK(readers[named].pid == (uint32_t)getpid() && readers[named].lag_messages > 0);
    }
    size_t none = 99;
    CHECK_STATUS(shmring_broadcast_readers(ring, NULL, 0, &none), SHMRING_OK);
    CHECK(none == 2);

    /* The durable name outlives its handle; forgetting it frees the record. */
    shmring_consumer_free(risk);
    uint32_t found = 0;
    CHECK_STATUS(shmring_broadcast_forget_reader(ring, "risk", &found), SHMRING_OK);
    CHECK(found == 1);
    CHECK_STATUS(shmring_broadcast_forget_reader(ring, "risk", &found), SHMRING_OK);
    CHECK(found == 0);

    shmring_consumer_free(live);
    shmring_producer_free(tx);
    shmring_ring_free(other);
    shmring_ring_free(ring);
    CHECK_STATUS(shmring_unlink(name), SHMRING_OK);
}

/* Deferred releases and positions: what a bridge needs to pass messages on. */
static void test_deferred_releases(void) {
    char name[128];
    name_for(name, sizeof name, "deferred");
    shmring_config_t cfg;
    shmring_config_init(&cfg);
    cfg.capacity = 4096;
    shmring_ring_t *ring = NULL;
    shmring_producer_t *tx = NULL;
    shmring_consumer_t *rx = NULL;
    CHECK_STATUS(shmring_spsc_create(name, &cfg, &ring), SHMRING_OK);
    uint64_t created = 0;
    CHECK_STATUS(shmring_ring_created_unix_ns(ring, &created), SHMRING_OK);
    CHECK(created > 1600000000000000000ull);
    CHECK_STATUS(shmring_producer_create(ring, &tx), SHMRING_OK);
    CHECK_STATUS(shmring_consumer_create(ring, &rx), SHMRING_OK);
    uint64_t before = 0, after = 0;
    CHECK_STATUS(shmring_producer_position(tx, &before), SHMRING_OK);
    CHECK_STATUS(shmring_try_send(tx, "a", 1), SHMRING_OK);
    CHECK_STATUS(shmring_try_send(tx, "b", 1), SHMRING_OK);
    CHECK_STATUS(shmring_producer_position(tx, &after), SHMRING_OK);
    CHECK(after > before);
    shmring_read_mark_t mark;
    /* Not deferred yet: release_to refuses, in words. */
    CHECK_STATUS(shmring_consumer_read_mark(rx, &mark), SHMRING_OK);
    CHECK_STATUS(shmring_consumer_release_to(rx, &mark), SHMRING_INVALID_ARGUMENT);
    CHECK(strstr(shmring_last_error_message(), "defer") != NULL);
    CHECK_STATUS(shmring_consumer_defer_releases(rx), SHMRING_OK);
    char buf[8];
    size_t len = 0;
    CHECK_STATUS(shmring_try_recv(rx, buf, sizeof buf, &len), SHMRING_OK);
    CHECK_STATUS(shmring_consumer_read_mark(rx, &mark), SHMRING_OK);
    CHECK(mark.position > before && mark.position < after);
    CHECK_STATUS(shmring_try_recv(rx, buf, sizeof buf, &len), SHMRING_OK);
    CHECK(len == 1 && buf[0] == 'b');
    /* Read again from the last mark given back (none yet): "a" and "b" again. */
    CHECK_STATUS(shmring_consumer_rewind(rx), SHMRING_OK);
    CHECK_STATUS(shmring_try_recv(rx, buf, sizeof buf, &len), SHMRING_OK);
    CHECK(len == 1 && buf[0] == 'a');
    CHECK_STATUS(shmring_consumer_release_to(rx, &mark), SHMRING_OK);
    /* A new consumer starts after the mark given back: at "b". */
    shmring_consumer_free(rx);
    CHECK_STATUS(shmring_consumer_create(ring, &rx), SHMRING_OK);
    CHECK_STATUS(shmring_try_recv(rx, buf, sizeof buf, &len), SHMRING_OK);
    CHECK(len == 1 && buf[0] == 'b');
    CHECK_STATUS(shmring_consumer_read_mark(NULL, &mark), SHMRING_NULL_ARGUMENT);
    CHECK_STATUS(shmring_producer_position(tx, NULL), SHMRING_NULL_ARGUMENT);
    shmring_consumer_free(rx);
    shmring_producer_free(tx);
    CHECK_STATUS(shmring_unlink(name), SHMRING_OK);
    shmring_ring_free(ring);

    /* MPMC: no deferral, no producer position. */
    name_for(name, sizeof name, "deferred-mpmc");
    shmring_mpmc_config_t mpmc_cfg;
    shmring_mpmc_config_init(&mpmc_cfg);
    mpmc_cfg.slots = 8;
    CHECK_STATUS(shmring_mpmc_create(name, &mpmc_cfg, &ring), SHMRING_OK);
    CHECK_STATUS(shmring_producer_create(ring, &tx), SHMRING_OK);
    CHECK_STATUS(shmring_consumer_create(ring, &rx), SHMRING_OK);
    CHECK_STATUS(shmring_consumer_defer_releases(rx), SHMRING_INVALID_ARGUMENT);
    CHECK(strstr(shmring_last_error_message(), "MPMC") != NULL);
    CHECK_STATUS(shmring_producer_position(tx, &after), SHMRING_INVALID_ARGUMENT);
    shmring_consumer_free(rx);
    shmring_producer_free(tx);
    CHECK_STATUS(shmring_unlink(name), SHMRING_OK);
    shmring_ring_free(ring);
}

static void test_priority_lanes(void) {
    char name[64];
    name_for(name, sizeof name, "lanes");
    shmring_mpmc_config_t cfg;
    shmring_mpmc_config_init(&cfg);
    CHECK(cfg.lanes == 1);
    cfg.slots = 4;
    cfg.max_message = 16;
    cfg.lanes = 8;
    shmring_ring_t *ring = NULL;
    shmring_producer_t *tx = NULL;
    shmring_consumer_t *rx = NULL;
    CHECK_STATUS(shmring_mpmc_create(name, &cfg, &ring), SHMRING_OK);
    uint32_t lanes = 0;
    CHECK_STATUS(shmring_ring_lanes(ring, &lanes), SHMRING_OK);
    CHECK(lanes == 8);
    CHECK_STATUS(shmring_producer_create(ring, &tx), SHMRING_OK);
    CHECK_STATUS(shmring_consumer_create(ring, &rx), SHMRING_OK);
    CHECK_STATUS(shmring_try_send_priority(tx, "low", 3, 0), SHMRING_OK);
    CHECK_STATUS(shmring_try_send_priority(tx, "mid", 3, 4), SHMRING_OK);
    CHECK_STATUS(shmring_send_priority_timeout(tx, "top", 3, 7, 1000000), SHMRING_OK);
    CHECK_STATUS(shmring_try_send_priority(tx, "bad", 3, 8), SHMRING_INVALID_ARGUMENT);
    CHECK(strstr(shmring_last_error_message(), "priority 8") != NULL);
    for (int i = 0; i < 4; i++) {
        CHECK_STATUS(shmring_try_send_priority(tx, "full", 4, 5), SHMRING_OK);
    }
    /* Lane 5 is full; the others keep their slots. */
    CHECK_STATUS(shmring_try_send_priority(tx, "full", 4, 5), SHMRING_WOULD_BLOCK);
    CHECK_STATUS(shmring_try_send_priority(tx, "low2", 4, 0), SHMRING_OK);
    shmring_lane_stats_t lane;
    CHECK_STATUS(shmring_ring_lane_stats(ring, 5, &lane), SHMRING_OK);
    CHECK(lane.priority == 5 && lane.slots == 4 && lane.in_flight == 4 && lane.sent == 4);
    CHECK_STATUS(shmring_ring_lane_stats(ring, 8, &lane), SHMRING_INVALID_ARGUMENT);

    char buf[16];
    size_t len = 0;
    uint32_t priority = 99;
    /* Only priorities up to 4, like msgrcv with a negative type. */
    CHECK_STATUS(shmring_consumer_select_priorities(rx, 0, 4), SHMRING_OK);
    CHECK_STATUS(shmring_recv_priority_timeout(rx, buf, sizeof buf, &len, &priority, 0),
                 SHMRING_OK);
    CHECK(priority == 4 && len == 3 && memcmp(buf, "mid", 3) == 0);
    CHECK_STATUS(shmring_recv_priority_timeout(rx, buf, sizeof buf, &len, &priority, 0),
                 SHMRING_OK);
    CHECK(priority == 0 && len == 3 && memcmp(buf, "low", 3) == 0);
    CHECK_STATUS(shmring_recv_priority_timeout(rx, buf, sizeof buf, &len, &priority, 0),
                 SHMRING_OK);
    CHECK(priority == 0 && len == 4 && memcmp(buf, "low2", 4) == 0);
    CHECK_STATUS(shmring_recv_priority_timeout(rx, buf, sizeof buf, &len, &priority, 1000000),
                 SHMRING_TIMEOUT);
    /* Everything again: the highest first. */
    CHECK_STATUS(shmring_consumer_select_priorities(rx, 0, 7), SHMRING_OK);
    CHECK_STATUS(shmring_recv_priority_timeout(rx, buf, sizeof buf, &len, &priority, 0),
                 SHMRING_OK);
    CHECK(priority == 7 && len == 3 && memcmp(buf, "top", 3) == 0);
    CHECK_STATUS(shmring_try_recv(rx, buf, sizeof buf, &len), SHMRING_OK);
    CHECK(len == 4 && memcmp(buf, "full", 4) == 0);
    CHECK_STATUS(shmring_consumer_select_priorities(rx, 5, 8), SHMRING_INVALID_ARGUMENT);
    CHECK_STATUS(shmring_consumer_select_priorities(rx, 5, 4), SHMRING_INVALID_ARGUMENT);
    CHECK_STATUS(shmring_recv_priority_timeout(rx, buf, sizeof buf, &len, NULL, 0),
                 SHMRING_NULL_ARGUMENT);
    shmring_producer_free(tx);
    shmring_consumer_free(rx);
    CHECK_STATUS(shmring_unlink(name), SHMRING_OK);
    shmring_ring_free(ring);

    /* A ring without lanes: priority 0 only. */
    name_for(name, sizeof name, "no-lanes");
    CHECK_STATUS(shmring_spsc_create(name, NULL, &ring), SHMRING_OK);
    CHECK_STATUS(shmring_ring_lanes(ring, &lanes), SHMRING_OK);
    CHECK(lanes == 1);
    CHECK_STATUS(shmring_producer_create(ring, &tx), SHMRING_OK);
    CHECK_STATUS(shmring_try_send_priority(tx, "x", 1, 1), SHMRING_INVALID_ARGUMENT);
    CHECK(strstr(shmring_last_error_message(), "one lane") != NULL);
    CHECK_STATUS(shmring_try_send_priority(tx, "x", 1, 0), SHMRING_OK);
    shmring_producer_free(tx);
    CHECK_STATUS(shmring_unlink(name), SHMRING_OK);
    shmring_ring_free(ring);
}

/* Request/reply: a server in a forked child answers a client in this process. */
static void test_rpc(void) {
    char service[64];
    snprintf(service, sizeof service, "ctest-rpc-%d", (int)getpid());
    shmring_rpc_server_t *server = NULL;
    CHECK_STATUS(shmring_rpc_server_bind(service, 4096, 0, &server), SHMRING_OK);
    shmring_rpc_server_t *twice = NULL;
    CHECK_STATUS(shmring_rpc_server_bind(service, 0, 0, &twice), SHMRING_ALREADY_EXISTS);
    fflush(NULL);
    pid_t child = fork();
    if (child == 0) {
        /* Answers three calls with the body reversed and the caller's pid appended. */
        char buf[4096];
        for (int served = 0; served < 3;) {
            size_t len = 0;
            shmring_rpc_request_t req;
            int st = shmring_rpc_server_recv(server, buf, sizeof buf, &len, &req, 5000000000ull);
            if (st != SHMRING_OK) {
                _exit(10 + st);
            }
            char out[64];
            for (size_t i = 0; i < len && i < 32; i++) {
                out[i] = buf[len - 1 - i];
            }
            memcpy(out + len, &req.pid, 4);
            if (shmring_rpc_server_reply(server, &req, out, len + 4) != SHMRING_OK) {
                _exit(3);
            }
            served++;
        }
        _exit(0);
    }
    /* The parent's copy of the server must not answer: close it here. */
    shmring_rpc_server_free(server);
    shmring_rpc_client_t *client = NULL;
    CHECK_STATUS(shmring_rpc_client_connect(service, UINT64_MAX, &client), SHMRING_OK);
    size_t max_request = 0, max_reply = 0;
    CHECK_STATUS(shmring_rpc_client_limits(client, &max_request, &max_reply), SHMRING_OK);
    CHECK(max_request == 4096 / 2 - 16 && max_reply == max_request);
    char reply[4096];
    size_t len = 0;
    char small[8];
    CHECK_STATUS(shmring_rpc_call(client, "abc", 3, small, sizeof small, &len, 1000000000ull),
                 SHMRING_INVALID_ARGUMENT);
    const char *words[3] = {"hello", "shared", "memory"};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(words[i]);
        CHECK_STATUS(shmring_rpc_call(client, words[i], n, reply, sizeof reply, &len,
                                      5000000000ull),
                     SHMRING_OK);
        CHECK(len == n + 4 && reply[0] == words[i][n - 1] && reply[n - 1] == words[i][0]);
        uint32_t pid = 0;
        memcpy(&pid, reply + n, 4);
        CHECK(pid == (uint32_t)getpid());
    }
    int status = 0;
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* The server is gone: the next call fails PEER_DEAD, not a hang. */
    CHECK_STATUS(shmring_rpc_call(client, "x", 1, reply, sizeof reply, &len, 5000000000ull),
                 SHMRING_PEER_DEAD);
    shmring_rpc_client_free(client);
    CHECK_STATUS(shmring_rpc_client_connect(service, UINT64_MAX, &client), SHMRING_NOT_FOUND);
}

int main(void) {
    test_version_and_strings();
    test_names_and_existence();
    test_null_arguments();
    test_untrusted_segments();
    test_batches();
    test_messages();
    test_mpmc();
    test_broadcast();
    test_telemetry();
    test_readiness();
    test_deferred_releases();
    test_priority_lanes();
    test_rpc();
    printf("%d passed, %d failed\n", checks - failures, failures);
    return failures == 0 ? 0 : 1;
}
