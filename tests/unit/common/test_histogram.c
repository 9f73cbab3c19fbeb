/* Unit tests for common/histogram: bucket bounds, recording from several threads, quantiles. */
#include <criterion/criterion.h>
#include <pthread.h>

#include "common/histogram.h"

Test(histogram, buckets_are_upper_bounds)
{
    cr_assert_eq(histogram_bucket(0), 0);
    cr_assert_eq(histogram_bucket(50), 0);
    cr_assert_eq(histogram_bucket(51), 1);
    cr_assert_eq(histogram_bucket(10000000), HISTOGRAM_BUCKETS - 2);
    cr_assert_eq(histogram_bucket(10000001), HISTOGRAM_BUCKETS - 1);
    for (int i = 1; i < HISTOGRAM_BUCKETS - 1; i++) {
        cr_assert_gt(histogram_bound_us(i), histogram_bound_us(i - 1));
    }
}

static histogram_t shared;

static void *record(void *arg)
{
    (void)arg;
    for (int i = 0; i < 100000; i++) {
        histogram_observe(&shared, (uint64_t)(i % 1000));
    }
    return NULL;
}

Test(histogram, concurrent_recording_loses_nothing)
{
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        pthread_create(&t[i], NULL, record, NULL);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
    }
    histogram_snapshot_t snap = {0};
    histogram_add_to(&shared, &snap);
    cr_assert_eq(snap.count, 400000);
    cr_assert_eq(snap.sum_us, 4ull * 100 * (999 * 1000 / 2));
}

Test(histogram, quantiles_at_bucket_resolution)
{
    histogram_t h = {0};
    histogram_snapshot_t empty = {0};
    cr_assert_eq(histogram_quantile_us(&empty, 0.99), 0);
    for (int i = 0; i < 99; i++) {
        histogram_observe_owned(&h, 40); /* bucket <= 50 us */
    }
    histogram_observe_owned(&h, 3000000); /* bucket <= 5 s */
    histogram_snapshot_t snap = {0};
    histogram_add_to(&h, &snap);
    cr_assert_eq(histogram_quantile_us(&snap, 0.5), 50);
    cr_assert_eq(histogram_quantile_us(&snap, 0.995), 5000000);
    histogram_reset(&h);
    histogram_snapshot_t zero = {0};
    histogram_add_to(&h, &zero);
    cr_assert_eq(zero.count, 0);
}
