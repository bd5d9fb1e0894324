/* The log's time index, as the supervisor (supervise.c) writes it: before each write into
 * the log, a record of where the write begins and the wall-clock time (engine/times.py
 * reads it, and says what readers make of it). At most one record per write, and none when
 * the last is under TIMES_EVERY_MS old: a byte's time is that of its write, or at most that
 * much earlier. Past TIMES_FLOOR plus 1/TIMES_FRACTION of the log, records are made only
 * once the last is TIMES_SLOW_MS old (a record skipped makes times coarser, never wrong;
 * then a byte's time may be up to that much earlier): the index stays within that bound
 * plus 16 bytes per second of the job's run. A failed write of the index ends the index,
 * not the log. */
#ifndef JOGGER_TIMES_H
#define JOGGER_TIMES_H

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#ifndef TIMES_EVERY_MS /* (bench/timestamps.py builds one with another) */
#define TIMES_EVERY_MS 1
#endif
#define TIMES_FLOOR (64 * 1024)
#define TIMES_FRACTION 16
#define TIMES_SLOW_MS 1000

/* One entry of the time index: the log's bytes from `offset` on were moved at `wall_ns`
 * (CLOCK_REALTIME, never earlier than the record before: a wall clock stepped back holds
 * still until it catches up). Native byte order: the index is read on this host. */
struct time_record {
    uint64_t offset;
    int64_t wall_ns;
};

struct time_index {
    const char *path;  /* where to make it, at the first record (NULL: none asked for) */
    int fd;            /* the index once made, or -1: not yet, none asked for, or failed */
    int failed;        /* it could not be made, or a write failed: no more records */
    uint64_t size;     /* its bytes so far (whole records) */
    int64_t last_ms;   /* CLOCK_MONOTONIC (ms) of its last record */
    int64_t last_wall; /* wall_ns of its last record */
};

/* Before a write into the log at `log_size` (at `now`, CLOCK_MONOTONIC ms): its record in
 * the index, unless the last record is recent, or the index's bound is reached. Written
 * before the bytes, so that a reader who sees a byte in the log finds the record that gives
 * its time. A write that then moves nothing leaves a record at the log's end, which the
 * next one's follows. */
static void note_time(struct time_index *x, uint64_t log_size, int64_t now) {
    if (x->failed || x->path == NULL)
        return;
    if (x->size > 0 && now - x->last_ms < TIMES_EVERY_MS)
        return;
    if (x->fd < 0) {
        /* Made here, at the first record, rather than by the server before the start: a
         * file's creation is most of what the index cost a start, and a job that writes
         * nothing needs none (its readers take a missing index and an empty log as an
         * empty window). O_EXCL: a file already there is not ours to append to. */
        x->fd = open(x->path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (x->fd < 0) {
            x->failed = 1;
            return;
        }
    }
    /* Past the size bound, still one record a second: else a slow writer (a byte a second,
     * past its first 4096 records) would get one record per 256 bytes, minutes apart, and
     * its bytes' times would lag by minutes. Each such record is a second after the one
     * before, so the index stays within the bound plus 16 bytes per second of the job's
     * run. */
    if (x->size + sizeof(struct time_record) > TIMES_FLOOR + log_size / TIMES_FRACTION &&
        now - x->last_ms < TIMES_SLOW_MS)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t wall = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    if (wall < x->last_wall)
        wall = x->last_wall;
    struct time_record r = {log_size, wall};
    ssize_t w;
    do {
        w = pwrite(x->fd, &r, sizeof r, (off_t)x->size);
    } while (w < 0 && errno == EINTR);
    if (w != (ssize_t)sizeof r) {
        /* A full disk, say: the index ends here (a torn record is ignored by its readers);
         * later bytes read as written at the last record's time. */
        close(x->fd);
        x->fd = -1;
        x->failed = 1;
        return;
    }
    x->size += sizeof r;
    x->last_ms = now;
    x->last_wall = wall;
}

#endif
