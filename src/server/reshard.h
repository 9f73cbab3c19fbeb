/*
 * reshard: splitting and merging shards, one at a time (SplitShard, MergeShards) or in bulk to an even layout
 * (UpdateShardCount UNIFORM_SCALING, and the on-demand scaler).
 *
 * Lineage is the one Kinesis reports: a split closes its parent and creates two children that name it as
 * ParentShardId; a merge closes two adjacent parents and creates one child with ParentShardId and
 * AdjacentParentShardId. A bulk change is a sequence of such steps; shards created and closed within it
 * (intermediates, as Kinesis also makes) hold no records.
 *
 * Sequence numbers: a closed shard's last_seq_index is the index its next record would have had (no record
 * has it), and a child's first index is one above its parents' last, so every child number is above every
 * parent number (see seqnum.h).
 *
 * No write is lost or misrouted: puts route and append under the catalog read lock, and these functions
 * run under the write lock. A put either appended to the parent before the parent closed (and is below
 * its end) or routes to a child afterwards.
 *
 * All functions require the catalog write lock, take a stream the caller has checked (ACTIVE, shards
 * valid), and store cfg (the caller's new configuration, e.g. status UPDATING) in the same transaction.
 * They return 0, -EINVAL for an impossible change, or another -errno when the catalog or the storage
 * failed (nothing changed in the catalog then).
 */
#ifndef EDDY_SERVER_RESHARD_H
#define EDDY_SERVER_RESHARD_H

#include <stdint.h>

#include "common/u128.h"
#include "server/server.h"
#include "store/catalog.h"

/* Splits open shard `index` into [start, new_start - 1] and [new_start, end]. */
int reshard_split(server_t *srv, stream_t *s, uint32_t index, u128 new_start, int64_t now_ms,
                  const stream_config_t *cfg);
/* Merges open shards `index` and `adjacent` (adjacent hash key ranges, in either order). */
int reshard_merge(server_t *srv, stream_t *s, uint32_t index, uint32_t adjacent, int64_t now_ms,
                  const stream_config_t *cfg);
/* Reshapes the open shards into `target` shards with even hash key ranges (splits first, then merges). */
int reshard_uniform(server_t *srv, stream_t *s, uint32_t target, int64_t now_ms, const stream_config_t *cfg);

#endif
