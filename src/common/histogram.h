/*
 * histogram: a latency histogram with fixed, roughly logarithmic bucket bounds (50 us to 10 s), cheap to
 * record into and to add up. The counts are relaxed atomics, so several threads may record into one
 * histogram (fetch-and-add: correct, though a shared cache line); a histogram that only its owner thread
 * writes can use histogram_observe_owned, which is a plain load and store.
 *
 * The bounds are the Prometheus `le` values of the exposition (histogram_bound_seconds); the last bucket is
 * +Inf.
 */
#ifndef EDDY_COMMON_HISTOGRAM_H
#define EDDY_COMMON_HISTOGRAM_H

#include <stdatomic.h>
#include <stdint.h>

#define HISTOGRAM_BUCKETS 18 /* 17 finite bounds and +Inf */

typedef struct histogram {
    _Atomic uint64_t buckets[HISTOGRAM_BUCKETS]; /* not cumulative: bucket i counts bound[i-1] < v <= bound[i] */
    _Atomic uint64_t sum_us;
} histogram_t;

/* A plain (non-atomic) copy, for adding up and printing. */
typedef struct histogram_snapshot {
    uint64_t buckets[HISTOGRAM_BUCKETS];
    uint64_t sum_us;
    uint64_t count;
} histogram_snapshot_t;

/* Upper bound of bucket i in microseconds (i < HISTOGRAM_BUCKETS - 1). */
uint64_t histogram_bound_us(int i);
/* Index of the bucket a value falls in. */
int histogram_bucket(uint64_t us);

/* Records one value; any thread. */
void histogram_observe(histogram_t *h, uint64_t us);
/* Records one value into a histogram written by this thread only (no read-modify-write instruction). */
void histogram_observe_owned(histogram_t *h, uint64_t us);
/* Adds h's counts into snap. */
void histogram_add_to(const histogram_t *h, histogram_snapshot_t *snap);
/* Sets h to zero (its owner thread, or while nothing records). */
void histogram_reset(histogram_t *h);
/* The value below which a fraction q (0..1) of the observations fall, at bucket resolution (the bucket's
 * upper bound; the last finite bound for +Inf). 0 when empty. */
uint64_t histogram_quantile_us(const histogram_snapshot_t *snap, double q);

#endif
