/*
 * autoscale: capacity of ON_DEMAND streams follows their write load.
 *
 * The rule, checked once a second by the housekeeping thread for every ACTIVE ON_DEMAND stream:
 * - Each open shard's write demand over the last tick is measured: every record offered to it by PutRecord
 *   and PutRecords, throttled or not (a throttled producer's retries count too).
 * - A shard whose demand exceeded its limit (1 MiB/s or 1000 records/s) in each of the last
 *   --on-demand-split-after seconds (default 5) is split at the middle of its hash key range, so that each
 *   half gets its own limit. At most STREAM_ON_DEMAND_SHARDS_MAX open shards.
 * - Two adjacent open shards that both stayed below 10 % of the limits for --on-demand-merge-after seconds
 *   (default 600) are merged, while more than 4 shards are open.
 * - A scaling makes the stream UPDATING for the state delay, like any reshard; nothing else changes while
 *   it is UPDATING.
 * Splits and merges are ordinary reshards (see reshard.h): lineage, ChildShards and sequence numbers are
 * those of SplitShard and MergeShards.
 */
#ifndef EDDY_SERVER_AUTOSCALE_H
#define EDDY_SERVER_AUTOSCALE_H

#include <stdint.h>

#include "server/server.h"

#define STREAM_ON_DEMAND_SHARDS_MAX 200
#define STREAM_ON_DEMAND_SHARDS_MIN 4

/* One tick. Requires the catalog write lock. @thread housekeeping */
void autoscale_tick(server_t *srv, int64_t now_ms);

#endif
