/*
 * test_lease: the taker's arithmetic (lease_plan_take): fair share, taking available leases first,
 * stealing every worker's excess at once (a new worker reaches its share in one cycle), the KCL's
 * one-lease steal when everyone is at the target, max_leases, and no lease picked twice.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "consumer/lease.h"

typedef struct plan {
    size_t n;
    size_t pick[64];
} plan_t;

/* leases: a string of owners, one char each ('.': unowned, '*': expired, 'a'..'z': that worker), me 'm'. */
static plan_t plan(const char *layout, size_t max_leases, uint64_t seed)
{
    static char names[26][2];
    lease_view_t v[64];
    size_t n = strlen(layout);
    for (size_t i = 0; i < n; i++) {
        char ch = layout[i];
        if (ch == '.' || ch == '*') {
            v[i].owner = ch == '.' ? "" : "dead";
            v[i].available = true;
        } else {
            names[ch - 'a'][0] = ch;
            names[ch - 'a'][1] = '\0';
            v[i].owner = names[ch - 'a'];
            v[i].available = false;
        }
    }
    plan_t p = {0};
    uint64_t rng = seed;
    p.n = lease_plan_take(v, n, "m", max_leases, &rng, p.pick);
    for (size_t i = 0; i < p.n; i++) {
        cr_assert(p.pick[i] < n);
        for (size_t k = 0; k < i; k++) {
            cr_assert_neq(p.pick[i], p.pick[k], "lease picked twice");
        }
    }
    return p;
}

static size_t picked_of(const char *layout, const plan_t *p, char owner)
{
    size_t n = 0;
    for (size_t i = 0; i < p->n; i++) {
        n += layout[p->pick[i]] == owner;
    }
    return n;
}

Test(lease, alone_takes_everything_available)
{
    plan_t p = plan("........", 0, 1);
    cr_assert_eq(p.n, 8);
}

Test(lease, expired_leases_are_available)
{
    const char *l = "aaa***bb";
    plan_t p = plan(l, 0, 7); /* workers a, b, m: target ceil(8/3) = 3 */
    cr_assert_eq(p.n, 3);
    cr_assert_eq(picked_of(l, &p, '*'), 3);
}

Test(lease, new_worker_steals_every_excess_at_once)
{
    const char *l = "aaaabbbb";
    plan_t p = plan(l, 0, 3); /* target 3: one from a, one from b */
    cr_assert_eq(p.n, 2);
    cr_assert_eq(picked_of(l, &p, 'a'), 1);
    cr_assert_eq(picked_of(l, &p, 'b'), 1);
}

Test(lease, big_fleet_reaches_its_share_in_one_cycle)
{
    /* 30 leases over a..e (6 each), a new worker m: target 5, one from each */
    const char *l = "aaaaaabbbbbbccccccddddddeeeeee";
    plan_t p = plan(l, 0, 11);
    cr_assert_eq(p.n, 5);
    for (char w = 'a'; w <= 'e'; w++) {
        cr_assert_eq(picked_of(l, &p, w), 1);
    }
}

Test(lease, balanced_fleet_is_left_alone)
{
    cr_assert_eq(plan("aaabbbmm", 0, 5).n, 0);
    cr_assert_eq(plan("aaabbbmmm", 0, 5).n, 0);
}

Test(lease, one_steal_when_everyone_is_at_the_target)
{
    /* 4 leases, a 2, b 2, m 0: target 2, nobody above it; m needs 2, so it steals one (the KCL's rule) */
    const char *l = "aabb";
    plan_t p = plan(l, 0, 9);
    cr_assert_eq(p.n, 1);
}

Test(lease, available_first_then_no_steal_in_the_same_cycle)
{
    const char *l = "aaaaa.bb";
    plan_t p = plan(l, 0, 2); /* target 3: the free one only */
    cr_assert_eq(p.n, 1);
    cr_assert_eq(l[p.pick[0]], '.');
}

Test(lease, max_leases_caps_the_target)
{
    cr_assert_eq(plan("........", 3, 1).n, 3);
    cr_assert_eq(plan("aaaaaaaa", 2, 1).n, 2);
}

Test(lease, more_workers_than_leases)
{
    cr_assert_eq(plan("abc", 0, 1).n, 0);
    cr_assert_eq(plan("ab.", 0, 1).n, 1);
}
