/* histogram: fixed-bucket latency histograms (see histogram.h). */
#include "common/histogram.h"

static const uint64_t bounds_us[HISTOGRAM_BUCKETS - 1] = {
    50,    100,    250,    500,    1000,    2500,    5000,    10000,    25000,
    50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000,
};

uint64_t histogram_bound_us(int i)
{
    return bounds_us[i];
}

int histogram_bucket(uint64_t us)
{
    int i = 0;
    while (i < HISTOGRAM_BUCKETS - 1 && us > bounds_us[i]) {
        i++;
    }
    return i;
}

void histogram_observe(histogram_t *h, uint64_t us)
{
    atomic_fetch_add_explicit(&h->buckets[histogram_bucket(us)], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, us, memory_order_relaxed);
}

static void bump(_Atomic uint64_t *c, uint64_t v)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v, memory_order_relaxed);
}

void histogram_observe_owned(histogram_t *h, uint64_t us)
{
    bump(&h->buckets[histogram_bucket(us)], 1);
    bump(&h->sum_us, us);
}

void histogram_add_to(const histogram_t *h, histogram_snapshot_t *snap)
{
    for (int i = 0; i < HISTOGRAM_BUCKETS; i++) {
        uint64_t n = atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
        snap->buckets[i] += n;
        snap->count += n;
    }
    snap->sum_us += atomic_load_explicit(&h->sum_us, memory_order_relaxed);
}

void histogram_reset(histogram_t *h)
{
    for (int i = 0; i < HISTOGRAM_BUCKETS; i++) {
        atomic_store_explicit(&h->buckets[i], 0, memory_order_relaxed);
    }
    atomic_store_explicit(&h->sum_us, 0, memory_order_relaxed);
}

uint64_t histogram_quantile_us(const histogram_snapshot_t *snap, double q)
{
    if (snap->count == 0) {
        return 0;
    }
    uint64_t rank = (uint64_t)(q * (double)snap->count);
    if (rank >= snap->count) {
        rank = snap->count - 1;
    }
    uint64_t seen = 0;
    for (int i = 0; i < HISTOGRAM_BUCKETS - 1; i++) {
        seen += snap->buckets[i];
        if (seen > rank) {
            return bounds_us[i];
        }
    }
    return bounds_us[HISTOGRAM_BUCKETS - 2];
}
