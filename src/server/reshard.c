/* reshard: splits and merges as catalog changes plus storage for the new shards (see reshard.h). */
#include "server/reshard.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "server/api/api.h"
#include "server/dataplane.h"

/* A change being built: parents to close and shards to add (the adds may be closed again within it). */
typedef struct plan {
    server_t *srv;
    stream_t *s;
    int64_t now_ms;
    catalog_close_t *close;
    size_t nclose;
    shard_t *add;
    size_t nadd, cap;
} plan_t;

/* An open shard while planning: one of the stream's, or one added by the plan. */
typedef struct live {
    bool added;   /* index refers to plan.add (true) or to the stream's shard */
    size_t at;    /* position in plan.add, or in s->shards */
    u128 start, end;
} live_t;

static shard_t *plan_shard(plan_t *p, const live_t *l)
{
    return l->added ? &p->add[l->at] : &p->s->shards[l->at];
}

/* Closes a live shard now; returns the index after its last one (its children start above it). */
static uint64_t close_live(plan_t *p, const live_t *l)
{
    shard_t *sh = plan_shard(p, l);
    if (l->added) {
        /* an intermediate: created and closed in this change, empty */
        sh->closed_ms = p->now_ms;
        sh->last_seq_index = sh->first_seq_index;
        return sh->last_seq_index;
    }
    engine_t *e = p->srv->engine;
    uint64_t end = sh->rt != NULL ? e->ops->written_end(e, sh->rt->storage) : sh->first_seq_index;
    if (end < sh->first_seq_index) {
        end = sh->first_seq_index;
    }
    p->close[p->nclose++] = (catalog_close_t){sh->index, p->now_ms, end};
    return end;
}

static live_t add_child(plan_t *p, u128 start, u128 end, int64_t parent, int64_t adjacent, uint64_t first)
{
    if (p->nadd == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 8;
        p->add = realloc(p->add, p->cap * sizeof *p->add);
        if (p->add == NULL) {
            abort();
        }
    }
    shard_t *sh = &p->add[p->nadd];
    *sh = (shard_t){
        .index = p->s->next_shard_index + (uint32_t)p->nadd,
        .start_hash = start,
        .end_hash = end,
        .parent = parent,
        .adjacent_parent = adjacent,
        .created_ms = p->now_ms,
        .first_seq_index = first,
    };
    return (live_t){true, p->nadd++, start, end};
}

static void split_live(plan_t *p, const live_t *l, u128 at, live_t *left, live_t *right)
{
    int64_t parent = plan_shard(p, l)->index;
    uint64_t first = close_live(p, l) + 1;
    *left = add_child(p, l->start, at - 1, parent, -1, first);
    *right = add_child(p, at, l->end, parent, -1, first);
}

static live_t merge_live(plan_t *p, const live_t *a, const live_t *b)
{
    int64_t parent = plan_shard(p, a)->index, adjacent = plan_shard(p, b)->index;
    uint64_t end_a = close_live(p, a), end_b = close_live(p, b);
    uint64_t first = (end_a > end_b ? end_a : end_b) + 1;
    u128 start = a->start < b->start ? a->start : b->start;
    u128 end = a->end > b->end ? a->end : b->end;
    return add_child(p, start, end, parent, adjacent, first);
}

/* Writes the plan to the catalog and opens storage for the new shards. */
static int commit_plan(plan_t *p, const stream_config_t *cfg)
{
    int rc = catalog_reshard(p->srv->catalog, p->s, p->close, p->nclose, p->add, p->nadd, cfg);
    if (rc != 0) {
        return rc;
    }
    rc = dataplane_attach_stream(p->srv, p->s);
    if (rc != 0) {
        /* the shards exist; puts routed to one without storage fail until it can be opened */
        log_error("cannot open the storage of new shards of %s: %s", p->s->name, strerror(-rc));
    }
    subscribe_wake_stream(p->srv, p->s->name); /* subscribers of closed parents: ChildShards */
    return 0;
}

static void plan_init(plan_t *p, server_t *srv, stream_t *s, int64_t now_ms, size_t max_close)
{
    *p = (plan_t){.srv = srv, .s = s, .now_ms = now_ms};
    p->close = calloc(max_close ? max_close : 1, sizeof *p->close);
    if (p->close == NULL) {
        abort();
    }
}

static void plan_dispose(plan_t *p)
{
    free(p->close);
    free(p->add);
}

static bool find_open(const stream_t *s, uint32_t index, live_t *out)
{
    for (size_t i = 0; i < s->shard_count; i++) {
        const shard_t *sh = &s->shards[i];
        if (sh->index == index) {
            if (sh->closed_ms != 0) {
                return false;
            }
            *out = (live_t){false, i, sh->start_hash, sh->end_hash};
            return true;
        }
    }
    return false;
}

int reshard_split(server_t *srv, stream_t *s, uint32_t index, u128 new_start, int64_t now_ms,
                  const stream_config_t *cfg)
{
    live_t l, left, right;
    if (!find_open(s, index, &l) || new_start <= l.start || new_start > l.end) {
        return -EINVAL;
    }
    plan_t p;
    plan_init(&p, srv, s, now_ms, 1);
    split_live(&p, &l, new_start, &left, &right);
    int rc = commit_plan(&p, cfg);
    plan_dispose(&p);
    return rc;
}

int reshard_merge(server_t *srv, stream_t *s, uint32_t index, uint32_t adjacent, int64_t now_ms,
                  const stream_config_t *cfg)
{
    live_t a, b;
    if (!find_open(s, index, &a) || !find_open(s, adjacent, &b) ||
        !((a.end != U128_MAX && a.end + 1 == b.start) || (b.end != U128_MAX && b.end + 1 == a.start))) {
        return -EINVAL;
    }
    plan_t p;
    plan_init(&p, srv, s, now_ms, 2);
    merge_live(&p, &a, &b);
    int rc = commit_plan(&p, cfg);
    plan_dispose(&p);
    return rc;
}

static int by_start(const void *x, const void *y)
{
    const live_t *a = x, *b = y;
    return a->start < b->start ? -1 : a->start > b->start;
}

int reshard_uniform(server_t *srv, stream_t *s, uint32_t target, int64_t now_ms, const stream_config_t *cfg)
{
    if (target == 0) {
        return -EINVAL;
    }
    size_t nopen = 0;
    for (size_t i = 0; i < s->shard_count; i++) {
        nopen += s->shards[i].closed_ms == 0;
    }
    /* every split adds one open shard and every merge removes one: at most (open + splits) of each */
    size_t max_live = nopen + target + 1;
    live_t *cur = calloc(max_live, sizeof *cur), *next = calloc(max_live, sizeof *next);
    if (cur == NULL || next == NULL) {
        abort();
    }
    size_t ncur = 0;
    for (size_t i = 0; i < s->shard_count; i++) {
        const shard_t *sh = &s->shards[i];
        if (sh->closed_ms == 0) {
            cur[ncur++] = (live_t){false, i, sh->start_hash, sh->end_hash};
        }
    }
    qsort(cur, ncur, sizeof *cur, by_start);
    plan_t p;
    plan_init(&p, srv, s, now_ms, nopen);

    /* 1. split every shard at each target boundary strictly inside it (left to right) */
    size_t nnext = 0;
    for (size_t i = 0; i < ncur; i++) {
        live_t l = cur[i];
        for (uint32_t k = 1; k < target; k++) {
            u128 b, unused;
            u128_even_range(k, target, &b, &unused);
            if (b > l.start && b <= l.end) {
                live_t left, right;
                split_live(&p, &l, b, &left, &right);
                next[nnext++] = left;
                l = right;
            }
        }
        next[nnext++] = l;
    }
    /* 2. every live shard now lies inside one target range: merge each range's shards left to right */
    size_t j = 0;
    for (uint32_t k = 0; k < target; k++) {
        u128 start, end;
        u128_even_range(k, target, &start, &end);
        if (j >= nnext || next[j].start != start) {
            free(cur);
            free(next);
            plan_dispose(&p);
            return -EINVAL; /* the open shards do not cover the key space */
        }
        live_t acc = next[j++];
        while (acc.end < end && j < nnext) {
            live_t b = next[j++];
            acc = merge_live(&p, &acc, &b);
        }
    }
    free(cur);
    free(next);
    int rc = commit_plan(&p, cfg);
    plan_dispose(&p);
    return rc;
}
