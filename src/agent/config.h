/*
 * config: the Kinesis Agent's agent.json, read into an agent_config_t (docs/AGENT.md has the table of keys,
 * which ones eddy honours, which it accepts and ignores, and what it adds).
 *
 * Every key is checked: an unknown key, a value of the wrong type or out of range is an error that names
 * the key ("flows[1].maxBufferSizeRecords: must be 1 .. 500"). Keys that only make sense for the Java agent
 * or for CloudWatch are accepted with a warning (collected in warnings, printed by the caller), so an
 * existing agent.json loads unchanged. Firehose destinations (deliveryStream) are refused: eddy speaks
 * Kinesis Data Streams only.
 */
#ifndef EDDY_AGENT_CONFIG_H
#define EDDY_AGENT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/process.h"

typedef enum agent_pk_mode { AGENT_PK_RANDOM, AGENT_PK_DETERMINISTIC, AGENT_PK_FIELD } agent_pk_mode_t;

typedef struct agent_flow_config {
    char *id;           /* "kinesis:<stream>:<filePattern>": the checkpoint key, as the Kinesis Agent's */
    char *file_pattern; /* as written */
    char *directory;    /* its literal directory part (no glob characters allowed there) */
    char *name_glob;    /* its file-name part: a glob (fnmatch) */
    char *stream;
    agent_pk_mode_t pk_mode;
    char *pk_field; /* AGENT_PK_FIELD: the top-level JSON field */
    bool start_of_file;
    char *multiline_start_pattern; /* NULL: one line, one record */
    int skip_header_lines;
    char *truncated_record_terminator;
    char *file_footer_pattern; /* NULL: none */
    int64_t max_buffer_age_ms;
    int max_buffer_records;
    int64_t max_buffer_bytes;
    int64_t retry_initial_backoff_ms, retry_max_backoff_ms;
    int64_t min_poll_interval_ms;    /* minTimeBetweenFilePollsMillis */
    int64_t max_refresh_interval_ms; /* maxTimeBetweenFileTrackerRefreshMillis */
    int64_t partial_line_timeout_ms; /* eddy: an unterminated last line is sent after this long unchanged */
    size_t max_record_bytes;         /* eddy: records are cut (truncatedRecordTerminator) above this */
    bool aggregation;                /* eddy: KPL aggregation of the records */
    proc_chain_t *chain;             /* dataProcessingOptions (owned) */
} agent_flow_config_t;

typedef struct agent_config {
    char *endpoint; /* kinesis.endpoint, or NULL (the client's default: environment, then region) */
    char *region;   /* kinesis.region, or NULL */
    char *access_key_id, *secret_access_key;
    char *checkpoint_file;
    int checkpoint_ttl_days;
    int64_t shutdown_timeout_ms;
    int64_t connect_timeout_ms, socket_timeout_ms; /* 0: the client's default */
    int max_connections;                           /* 0: the client's default */
    int status_period_s;                           /* log.statusReportingPeriodSeconds */
    char *metrics_listen;                          /* eddy.metricsListen "HOST:PORT", or NULL */
    size_t max_buffered_bytes;                     /* eddy.maxBufferedBytes */
    int64_t checkpoint_interval_ms;                /* eddy.checkpointIntervalMillis */
    agent_flow_config_t *flows;
    size_t nflows;
    char **warnings; /* keys accepted but not honoured, one sentence each */
    size_t nwarnings;
} agent_config_t;

/* Parses agent.json text (json, len: borrowed) into cfg (caller-owned storage, zeroed first). 0, or -1 with
 * the reason in err; cfg is then disposed already. */
int agent_config_parse(const char *json, size_t len, agent_config_t *cfg, char *err, size_t errlen);
/* The same from a file (at most 1 MiB). */
int agent_config_load(const char *path, agent_config_t *cfg, char *err, size_t errlen);
void agent_config_dispose(agent_config_t *cfg);

#endif
