/*
 * scrape: what eddy tells about itself over HTTP, read from the metrics (metrics.h), the catalog, the shards'
 * runtime state, the subscriptions, the HTTP loops and the process.
 *
 *   GET /metrics        Prometheus text exposition format 0.0.4 (docs/METRICS.md lists every family)
 *   GET /ui/api/state   the dashboard's JSON (streams, shards with lineage, consumers, counters, process)
 *
 * Both take the catalog read lock for the time it takes to copy what they need. @thread loop (any thread).
 */
#ifndef EDDY_SERVER_SCRAPE_H
#define EDDY_SERVER_SCRAPE_H

#include "common/buf.h"
#include "server/server.h"

/* How long a GetRecords call's iterator age counts for GetRecords.IteratorAgeMilliseconds (CloudWatch
 * reports a shard without calls in the last minute as having no data). */
#define SCRAPE_ITERATOR_AGE_WINDOW_MS 60000

void scrape_prometheus(server_t *srv, buf_t *out);
void scrape_state_json(server_t *srv, buf_t *out);

#endif
