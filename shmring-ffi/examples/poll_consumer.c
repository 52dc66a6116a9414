/* Event loop: receives from the ring named argv[1] and reads lines from standard input in
 * one poll(2) loop, until the ring's stream ends and standard input is closed. The ring's
 * readiness descriptor becomes readable when a message arrives (after
 * shmring_consumer_arm said 1), when the stream ends, or when the producer dies. Run
 * producer.c beside it (that ring uses SHMRING_WAIT_FUTEX, which readiness needs). */
#define _POSIX_C_SOURCE 200809L
#include "shmring.h"

#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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
    for (int tries = 0; tries < 500 && st == SHMRING_NOT_FOUND; tries++) {
        if ((st = shmring_ring_open(argv[1], &ring)) == SHMRING_NOT_FOUND) {
            struct timespec ten_ms = {0, 10000000};
            nanosleep(&ten_ms, NULL);
        }
    }
    if (st != SHMRING_OK) return fail("open", st);
    shmring_consumer_t *rx = NULL;
    if ((st = shmring_consumer_create(ring, &rx)) != SHMRING_OK) return fail("attach", st);
    int ready_fd = -1;
    if ((st = shmring_consumer_readiness_fd(rx, &ready_fd)) != SHMRING_OK) return fail("readiness", st);

    struct pollfd fds[2] = {{.fd = ready_fd, .events = POLLIN}, {.fd = STDIN_FILENO, .events = POLLIN}};
    long messages = 0, lines = 0, sleeps = 0;
    int stream_open = 1;
    char buf[256];
    while (stream_open || fds[1].fd >= 0) {
        /* Receive everything there is, then arm; poll only if arm says the ring is empty. */
        while (stream_open) {
            size_t len = 0;
            st = shmring_try_recv(rx, buf, sizeof buf, &len);
            if (st == SHMRING_OK) { messages++; continue; }
            if (st == SHMRING_CLOSED || st == SHMRING_PEER_DEAD) {
                printf("ring: %s after %ld messages\n", shmring_status_str(st), messages);
                stream_open = 0;
                fds[0].fd = -1; /* poll ignores negative descriptors */
                break;
            }
            if (st != SHMRING_WOULD_BLOCK) return fail("receive", st);
            int armed = 0;
            if ((st = shmring_consumer_arm(rx, &armed)) != SHMRING_OK) return fail("arm", st);
            if (armed) break;
        }
        if (!stream_open && fds[1].fd < 0) break;
        sleeps++;
        if (poll(fds, 2, -1) < 0) { perror("poll"); return 1; }
        if (fds[1].fd >= 0 && (fds[1].revents & (POLLIN | POLLHUP))) {
            ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
            if (n <= 0) fds[1].fd = -1; /* end of input */
            else for (ssize_t i = 0; i < n; i++) lines += buf[i] == '\n';
        }
    }
    printf("%ld messages, %ld lines of input, %ld sleeps in poll\n", messages, lines, sleeps);
    close(ready_fd);
    shmring_consumer_free(rx);
    st = shmring_unlink(argv[1]);
    shmring_ring_free(ring);
    return st == SHMRING_OK ? 0 : fail("unlink", st);
}
