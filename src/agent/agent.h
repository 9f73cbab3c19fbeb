/*
 * agent: `eddy agent`'s main loop: the tailer (files into records), dataProcessingOptions, the sender
 * (records into streams, held until acknowledged), checkpoints and metrics, on one thread that polls the
 * inotify descriptor, the sender's completion eventfd, a signalfd and the metrics sockets. Its other threads
 * are libeddy's (one per producer, one for the client): fixed in number, whatever the number of files.
 *
 * Shutdown (SIGINT, SIGTERM): reading stops, buffered records are sent, and the agent waits up to
 * shutdownTimeoutMillis for their acknowledgements, then writes the checkpoints and exits 0. Records not
 * acknowledged by then are sent again by the next run (at least once).
 */
#ifndef EDDY_AGENT_AGENT_H
#define EDDY_AGENT_AGENT_H

#include <stdbool.h>

#include "agent/config.h"

typedef struct agent_options {
    bool no_inotify;            /* poll files instead (tests; file systems without inotify) */
    const char *metrics_listen; /* overrides eddy.metricsListen (NULL: keep) */
} agent_options_t;

/* Runs until SIGINT or SIGTERM. cfg is borrowed. Returns the exit status (0, or 1 when it could not start). */
int agent_run(agent_config_t *cfg, const agent_options_t *opt);

#endif
