/* autoscale: splits hot and merges cold shards of ON_DEMAND streams (the rule is in autoscale.h). */
#include "server/autoscale.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <string.h>

#include "common/log.h"
#include "server/dataplane.h"
#include "server/reshard.h"

#define COLD_FRACTION 0.10

/* Reads and resets the shard's demand; true when it was above the limits (hot) or below 10 % (cold). */
static void measure(shard_runtime_t *rt, double seconds, bool *hot, bool *cold)
{
    double bytes = (double)atomic_exchange(&rt->demand_bytes, 0) / seconds;
    double records = (double)atomic_exchange(&rt->demand_records, 0) / seconds;
    *hot = bytes > SHARD_WRITE_BYTES_PER_SEC || records > SHARD_WRITE_RECORDS_PER_SEC;
    *cold = bytes < COLD_FRACTION * SHARD_WRITE_BYTES_PER_SEC && records < COLD_FRACTION * SHARD_WRITE_RECORDS_PER_SEC;
}

static void updating(server_t *srv, const stream_t *s, int64_t now_ms, stream_config_t *cfg)
{
    *cfg = s->cfg;
    if (srv->cfg.state_delay_ms > 0) {
        cfg->status = STREAM_UPDATING;
        cfg->status_due_ms = now_ms + srv->cfg.state_delay_ms;
        cfg->target_status = STREAM_ACTIVE;
    }
}

/* Measures every open shard of s; returns how many are open. */
static size_t measure_stream(stream_t *s, double seconds)
{
    size_t open = 0;
    for (size_t i = 0; i < s->shard_count; i++) {
        shard_t *sh = &s->shards[i];
        if (sh->closed_ms != 0 || sh->rt == NULL) {
            continue;
        }
        open++;
        bool hot, cold;
        measure(sh->rt, seconds, &hot, &cold);
        sh->rt->hot_seconds = hot ? sh->rt->hot_seconds + 1 : 0;
        sh->rt->cold_seconds = cold ? sh->rt->cold_seconds + 1 : 0;
    }
    return open;
}

/* One scaling step for s at most; returns true when it resharded. */
static bool scale_stream(server_t *srv, stream_t *s, int64_t now_ms, size_t open)
{
    stream_config_t cfg;
    /* split the hottest shard that has been hot long enough */
    shard_t *split = NULL;
    for (size_t i = 0; i < s->shard_count && open < STREAM_ON_DEMAND_SHARDS_MAX; i++) {
        shard_t *sh = &s->shards[i];
        if (sh->closed_ms == 0 && sh->rt != NULL && sh->rt->hot_seconds >= srv->cfg.on_demand_split_after_s &&
            sh->end_hash - sh->start_hash >= 4 && (split == NULL || sh->rt->hot_seconds > split->rt->hot_seconds)) {
            split = sh;
        }
    }
    if (split != NULL) {
        uint32_t index = split->index;
        u128 mid = split->start_hash + (split->end_hash - split->start_hash) / 2 + 1;
        updating(srv, s, now_ms, &cfg);
        int rc = reshard_split(srv, s, index, mid, now_ms, &cfg);
        if (rc == 0) {
            log_info("on-demand stream %s: shard %" PRIu32 " was over its write limit for %d s: split", s->name,
                     index, srv->cfg.on_demand_split_after_s);
        } else {
            log_error("on-demand stream %s: splitting shard %" PRIu32 " failed: %s", s->name, index, strerror(-rc));
        }
        return rc == 0;
    }
    if (open <= STREAM_ON_DEMAND_SHARDS_MIN) {
        return false;
    }
    for (size_t i = 0; i < s->shard_count; i++) {
        shard_t *a = &s->shards[i];
        if (a->closed_ms != 0 || a->rt == NULL || a->rt->cold_seconds < srv->cfg.on_demand_merge_after_s ||
            a->end_hash == U128_MAX) {
            continue;
        }
        for (size_t k = 0; k < s->shard_count; k++) {
            shard_t *b = &s->shards[k];
            if (b->closed_ms == 0 && b->rt != NULL && b->start_hash == a->end_hash + 1 &&
                b->rt->cold_seconds >= srv->cfg.on_demand_merge_after_s) {
                uint32_t ia = a->index, ib = b->index;
                updating(srv, s, now_ms, &cfg);
                int rc = reshard_merge(srv, s, ia, ib, now_ms, &cfg);
                if (rc == 0) {
                    log_info("on-demand stream %s: shards %" PRIu32 " and %" PRIu32 " were cold for %d s: merged",
                             s->name, ia, ib, srv->cfg.on_demand_merge_after_s);
                }
                return rc == 0;
            }
        }
    }
    return false;
}

void autoscale_tick(server_t *srv, int64_t now_ms)
{
    int64_t last = srv->autoscale_tick_ms;
    double seconds = last != 0 && now_ms > last ? (double)(now_ms - last) / 1000.0 : 1.0;
    if (seconds < 0.2) {
        return; /* too short a window to measure a rate */
    }
    srv->autoscale_tick_ms = now_ms;
    for (size_t i = 0; i < catalog_stream_count(srv->catalog); i++) {
        stream_t *s = catalog_stream_at(srv->catalog, i);
        if (s->cfg.mode != STREAM_ON_DEMAND) {
            continue;
        }
        size_t open = measure_stream(s, seconds);
        if (s->cfg.status == STREAM_ACTIVE) {
            scale_stream(srv, s, now_ms, open);
        }
    }
}
