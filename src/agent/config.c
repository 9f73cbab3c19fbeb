/*
 * config: agent.json (see config.h). Two tables, global keys and flow keys, say for each key its type, its
 * range and where it goes; a key in neither table is an error.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "agent/config.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <pcre2.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"

#define MiB (1024 * 1024)
#define KDS_MAX_RECORD (1024 * 1024 - 256) /* 1 MiB, less the longest partition key */

typedef enum kind {
    K_STRING,   /* char * */
    K_INT,      /* int64_t, or int when narrow */
    K_BOOL,     /* bool */
    K_IGNORED,  /* accepted, a warning says it has no effect */
    K_SPECIAL,  /* handled by name in the parser */
} kind_t;

typedef struct key_spec {
    const char *name;
    kind_t kind;
    size_t offset;
    int size; /* K_INT: sizeof the field */
    int64_t lo, hi;
    const char *note; /* K_IGNORED: why */
} key_spec_t;

#define G(field) offsetof(agent_config_t, field)
#define F(field) offsetof(agent_flow_config_t, field)

static const key_spec_t global_keys[] = {
    {"kinesis.endpoint", K_STRING, G(endpoint), 0, 0, 0, NULL},
    {"kinesis.region", K_STRING, G(region), 0, 0, 0, NULL},
    {"awsAccessKeyId", K_STRING, G(access_key_id), 0, 0, 0, NULL},
    {"awsSecretAccessKey", K_STRING, G(secret_access_key), 0, 0, 0, NULL},
    {"checkpointFile", K_STRING, G(checkpoint_file), 0, 0, 0, NULL},
    {"checkpointTimeToLiveDays", K_INT, G(checkpoint_ttl_days), sizeof(int), 1, 3650, NULL},
    {"shutdownTimeoutMillis", K_INT, G(shutdown_timeout_ms), sizeof(int64_t), 0, 3600000, NULL},
    {"connectionTimeoutMillis", K_INT, G(connect_timeout_ms), sizeof(int64_t), 1, 3600000, NULL},
    {"socketTimeoutMillis", K_INT, G(socket_timeout_ms), sizeof(int64_t), 1, 3600000, NULL},
    {"maxConnections", K_INT, G(max_connections), sizeof(int), 1, 1000, NULL},
    {"log.statusReportingPeriodSeconds", K_INT, G(status_period_s), sizeof(int), 1, 86400, NULL},
    {"eddy.metricsListen", K_STRING, G(metrics_listen), 0, 0, 0, NULL},
    {"eddy.maxBufferedBytes", K_INT, G(max_buffered_bytes), sizeof(size_t), 1 * MiB, 1024LL * MiB, NULL},
    {"eddy.checkpointIntervalMillis", K_INT, G(checkpoint_interval_ms), sizeof(int64_t), 10, 600000, NULL},
    {"flows", K_SPECIAL, 0, 0, 0, 0, NULL},
    {"assumeRoleARN", K_IGNORED, 0, 0, 0, 0, "role assumption is not supported; give keys or use the environment"},
    {"assumeRoleExternalId", K_IGNORED, 0, 0, 0, 0, "role assumption is not supported"},
    {"userDefinedCredentialsProvider.classname", K_IGNORED, 0, 0, 0, 0, "Java credential providers do not apply"},
    {"userDefinedCredentialsProvider.location", K_IGNORED, 0, 0, 0, 0, "Java credential providers do not apply"},
    {"firehose.endpoint", K_IGNORED, 0, 0, 0, 0, "eddy agent sends to Kinesis Data Streams only"},
    {"sts.endpoint", K_IGNORED, 0, 0, 0, 0, "role assumption is not supported"},
    {"cloudwatch.endpoint", K_IGNORED, 0, 0, 0, 0, "metrics are served in Prometheus format (eddy.metricsListen)"},
    {"cloudwatch.emitMetrics", K_IGNORED, 0, 0, 0, 0, "metrics are served in Prometheus format (eddy.metricsListen)"},
    {"cloudwatch.namespace", K_IGNORED, 0, 0, 0, 0, "metrics are served in Prometheus format"},
    {"cloudwatch.tagInstance", K_IGNORED, 0, 0, 0, 0, "metrics are served in Prometheus format"},
    {"cloudwatch.metricsBufferTimeMillis", K_IGNORED, 0, 0, 0, 0, "metrics are served in Prometheus format"},
    {"cloudwatch.metricsQueueSize", K_IGNORED, 0, 0, 0, 0, "metrics are served in Prometheus format"},
    {"maxSendingThreads", K_IGNORED, 0, 0, 0, 0, "eddy agent sends from a fixed number of threads"},
    {"maxSendingThreadsPerCore", K_IGNORED, 0, 0, 0, 0, "eddy agent sends from a fixed number of threads"},
    {"sendingThreadsKeepAliveMillis", K_IGNORED, 0, 0, 0, 0, "eddy agent sends from a fixed number of threads"},
    {"sendingThreadsMaxQueueSize", K_IGNORED, 0, 0, 0, 0, "the buffer bound is eddy.maxBufferedBytes"},
    {"connectionTTLMillis", K_IGNORED, 0, 0, 0, 0, "connections are kept alive by the client"},
    {"useTcpKeepAlive", K_IGNORED, 0, 0, 0, 0, "connections are kept alive by the client"},
    {"useHttpGzip", K_IGNORED, 0, 0, 0, 0, "request bodies are not compressed"},
    {"log.emitMetrics", K_IGNORED, 0, 0, 0, 0, "the status line is always logged"},
    {"log.emitInternalMetrics", K_IGNORED, 0, 0, 0, 0, "the status line is always logged"},
};

static const key_spec_t flow_keys[] = {
    {"filePattern", K_SPECIAL, 0, 0, 0, 0, NULL},
    {"kinesisStream", K_STRING, F(stream), 0, 0, 0, NULL},
    {"deliveryStream", K_SPECIAL, 0, 0, 0, 0, NULL},
    {"partitionKeyOption", K_SPECIAL, 0, 0, 0, 0, NULL},
    {"initialPosition", K_SPECIAL, 0, 0, 0, 0, NULL},
    {"multiLineStartPattern", K_STRING, F(multiline_start_pattern), 0, 0, 0, NULL},
    {"skipHeaderLines", K_INT, F(skip_header_lines), sizeof(int), 0, 1000000, NULL},
    {"truncatedRecordTerminator", K_STRING, F(truncated_record_terminator), 0, 0, 0, NULL},
    {"fileFooterPattern", K_STRING, F(file_footer_pattern), 0, 0, 0, NULL},
    {"maxBufferAgeMillis", K_INT, F(max_buffer_age_ms), sizeof(int64_t), 0, 900000, NULL},
    {"maxBufferSizeRecords", K_INT, F(max_buffer_records), sizeof(int), 1, 500, NULL},
    {"maxBufferSizeBytes", K_INT, F(max_buffer_bytes), sizeof(int64_t), 1, 5 * MiB, NULL},
    {"retryInitialBackoffMillis", K_INT, F(retry_initial_backoff_ms), sizeof(int64_t), 1, 3600000, NULL},
    {"retryMaxBackoffMillis", K_INT, F(retry_max_backoff_ms), sizeof(int64_t), 1, 3600000, NULL},
    {"minTimeBetweenFilePollsMillis", K_INT, F(min_poll_interval_ms), sizeof(int64_t), 1, 3600000, NULL},
    {"maxTimeBetweenFileTrackerRefreshMillis", K_INT, F(max_refresh_interval_ms), sizeof(int64_t), 100, 3600000,
     NULL},
    {"partialLineTimeoutMillis", K_INT, F(partial_line_timeout_ms), sizeof(int64_t), 0, 3600000, NULL},
    {"maxRecordSizeBytes", K_INT, F(max_record_bytes), sizeof(size_t), 16, KDS_MAX_RECORD, NULL},
    {"aggregation", K_BOOL, F(aggregation), 0, 0, 0, NULL},
    {"dataProcessingOptions", K_SPECIAL, 0, 0, 0, 0, NULL},
    {"waitOnFullPublishQueueMillis", K_IGNORED, 0, 0, 0, 0, "a full buffer pauses reading until there is room"},
    {"waitOnEmptyPublishQueueMillis", K_IGNORED, 0, 0, 0, 0, "records are sent as maxBufferAgeMillis says"},
    {"publishQueueCapacity", K_IGNORED, 0, 0, 0, 0, "the buffer bound is eddy.maxBufferedBytes"},
    {"aggregatedRecordSizeBytes", K_IGNORED, 0, 0, 0, 0, "a Firehose key; use \"aggregation\": true (KPL format)"},
};

static const key_spec_t *find_key(const key_spec_t *table, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(table[i].name, name) == 0) {
            return &table[i];
        }
    }
    return NULL;
}

/* A number, or a string holding one (the Java agent reads both). */
static bool get_int(const cJSON *v, int64_t *out)
{
    if (cJSON_IsNumber(v)) {
        /* in range before the cast (out of range it is undefined), and whole */
        if (!(v->valuedouble >= -9.2e18 && v->valuedouble <= 9.2e18) ||
            v->valuedouble != (double)(int64_t)v->valuedouble) {
            return false;
        }
        *out = (int64_t)v->valuedouble;
        return true;
    }
    if (cJSON_IsString(v)) {
        char *end = NULL;
        errno = 0;
        long long n = strtoll(v->valuestring, &end, 10);
        if (errno != 0 || end == v->valuestring || *end != '\0') {
            return false;
        }
        *out = n;
        return true;
    }
    return false;
}

static int add_warning(agent_config_t *cfg, const char *key, const char *why)
{
    char **grown = realloc(cfg->warnings, (cfg->nwarnings + 1) * sizeof *grown);
    if (grown == NULL) {
        return -1;
    }
    cfg->warnings = grown;
    char line[512];
    snprintf(line, sizeof line, "%s: accepted and ignored: %s", key, why);
    if ((cfg->warnings[cfg->nwarnings] = strdup(line)) == NULL) {
        return -1;
    }
    cfg->nwarnings++;
    return 0;
}

/* Applies one key of a table to the struct at base; 1 when the key is K_SPECIAL (the caller's). */
static int apply_key(agent_config_t *cfg, const key_spec_t *spec, const cJSON *v, void *base, const char *where,
                     char *err, size_t errlen)
{
    char *field = (char *)base + spec->offset;
    int64_t n;
    switch (spec->kind) {
    case K_STRING:
        if (!cJSON_IsString(v)) {
            snprintf(err, errlen, "%s%s: must be a string", where, spec->name);
            return -1;
        }
        free(*(char **)field);
        if ((*(char **)field = strdup(v->valuestring)) == NULL) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        return 0;
    case K_INT:
        if (!get_int(v, &n) || n < spec->lo || n > spec->hi) {
            snprintf(err, errlen, "%s%s: must be an integer in %lld .. %lld", where, spec->name, (long long)spec->lo,
                     (long long)spec->hi);
            return -1;
        }
        if (spec->size == sizeof(int)) {
            *(int *)field = (int)n;
        } else {
            *(int64_t *)field = n; /* int64_t and size_t are both 8 bytes here */
        }
        return 0;
    case K_BOOL:
        if (cJSON_IsBool(v)) {
            *(bool *)field = cJSON_IsTrue(v);
        } else if (cJSON_IsString(v) && (strcmp(v->valuestring, "true") == 0 || strcmp(v->valuestring, "false") == 0)) {
            *(bool *)field = strcmp(v->valuestring, "true") == 0;
        } else {
            snprintf(err, errlen, "%s%s: must be true or false", where, spec->name);
            return -1;
        }
        return 0;
    case K_IGNORED:
        if (add_warning(cfg, spec->name, spec->note) != 0) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        return 0;
    case K_SPECIAL:
    default:
        return 1;
    }
}
_Static_assert(sizeof(int64_t) == sizeof(size_t), "K_INT stores size_t fields as 8 bytes");

static bool has_glob(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '*' || s[i] == '?' || s[i] == '[' || s[i] == '{') {
            return true;
        }
    }
    return false;
}

static int flow_pattern(agent_flow_config_t *fl, const cJSON *v, const char *where, char *err, size_t errlen)
{
    if (!cJSON_IsString(v) || v->valuestring[0] == '\0') {
        snprintf(err, errlen, "%sfilePattern: must be a non-empty string", where);
        return -1;
    }
    const char *p = v->valuestring;
    const char *slash = strrchr(p, '/');
    if (p[0] != '/' || slash == NULL || slash[1] == '\0') {
        snprintf(err, errlen, "%sfilePattern: must be an absolute path ending in a file name or glob (\"%s\")", where,
                 p);
        return -1;
    }
    if (has_glob(p, (size_t)(slash - p))) {
        snprintf(err, errlen, "%sfilePattern: the directory part must be literal; a glob is allowed in the file name "
                 "only (\"%s\")", where, p);
        return -1;
    }
    free(fl->file_pattern); /* a key given twice: the last one counts, as in the other keys */
    free(fl->directory);
    free(fl->name_glob);
    fl->file_pattern = strdup(p);
    fl->directory = slash == p ? strdup("/") : strndup(p, (size_t)(slash - p));
    fl->name_glob = strdup(slash + 1);
    if (fl->file_pattern == NULL || fl->directory == NULL || fl->name_glob == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static int parse_flow(agent_config_t *cfg, agent_flow_config_t *fl, const cJSON *obj, size_t index, char *err,
                      size_t errlen)
{
    char where[48];
    snprintf(where, sizeof where, "flows[%zu].", index);
    if (!cJSON_IsObject(obj)) {
        snprintf(err, errlen, "flows[%zu]: must be an object", index);
        return -1;
    }
    /* defaults (the Kinesis Agent's, except where docs/AGENT.md says why not) */
    fl->max_buffer_age_ms = 1000;
    fl->max_buffer_records = 500;
    fl->max_buffer_bytes = 5 * MiB;
    fl->retry_initial_backoff_ms = 100;
    fl->retry_max_backoff_ms = 10000;
    fl->min_poll_interval_ms = 100;
    fl->max_refresh_interval_ms = 10000;
    fl->partial_line_timeout_ms = 5000;
    fl->max_record_bytes = KDS_MAX_RECORD;
    const cJSON *options = NULL;
    const cJSON *v;
    cJSON_ArrayForEach(v, obj)
    {
        const key_spec_t *spec = find_key(flow_keys, sizeof flow_keys / sizeof flow_keys[0], v->string);
        if (spec == NULL) {
            snprintf(err, errlen, "%s%s: unknown key", where, v->string);
            return -1;
        }
        int rc = apply_key(cfg, spec, v, fl, where, err, errlen);
        if (rc < 0) {
            return -1;
        }
        if (rc == 0) {
            continue;
        }
        if (strcmp(spec->name, "filePattern") == 0) {
            if (flow_pattern(fl, v, where, err, errlen) != 0) {
                return -1;
            }
        } else if (strcmp(spec->name, "deliveryStream") == 0) {
            snprintf(err, errlen, "%sdeliveryStream: Firehose destinations are not supported by eddy agent; use "
                     "kinesisStream", where);
            return -1;
        } else if (strcmp(spec->name, "partitionKeyOption") == 0) {
            const char *s = cJSON_IsString(v) ? v->valuestring : "";
            if (strcmp(s, "RANDOM") == 0) {
                fl->pk_mode = AGENT_PK_RANDOM;
            } else if (strcmp(s, "DETERMINISTIC") == 0) {
                fl->pk_mode = AGENT_PK_DETERMINISTIC;
            } else if (strncmp(s, "FIELD:", 6) == 0 && s[6] != '\0') {
                fl->pk_mode = AGENT_PK_FIELD;
                free(fl->pk_field);
                if ((fl->pk_field = strdup(s + 6)) == NULL) {
                    snprintf(err, errlen, "out of memory");
                    return -1;
                }
            } else {
                snprintf(err, errlen, "%spartitionKeyOption: must be RANDOM, DETERMINISTIC or FIELD:<name>", where);
                return -1;
            }
        } else if (strcmp(spec->name, "initialPosition") == 0) {
            const char *s = cJSON_IsString(v) ? v->valuestring : "";
            if (strcmp(s, "START_OF_FILE") != 0 && strcmp(s, "END_OF_FILE") != 0) {
                snprintf(err, errlen, "%sinitialPosition: must be START_OF_FILE or END_OF_FILE", where);
                return -1;
            }
            fl->start_of_file = strcmp(s, "START_OF_FILE") == 0;
        } else if (strcmp(spec->name, "dataProcessingOptions") == 0) {
            options = v;
        }
    }
    if (fl->file_pattern == NULL) {
        snprintf(err, errlen, "%sfilePattern: required", where);
        return -1;
    }
    if (fl->stream == NULL || fl->stream[0] == '\0' || strlen(fl->stream) > 128) {
        snprintf(err, errlen, "%skinesisStream: required (1 to 128 characters)", where);
        return -1;
    }
    if (fl->retry_max_backoff_ms < fl->retry_initial_backoff_ms) {
        snprintf(err, errlen, "%sretryMaxBackoffMillis: must not be below retryInitialBackoffMillis", where);
        return -1;
    }
    if (fl->truncated_record_terminator == NULL && (fl->truncated_record_terminator = strdup("\n")) == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (strlen(fl->truncated_record_terminator) >= fl->max_record_bytes) {
        snprintf(err, errlen, "%struncatedRecordTerminator: longer than the largest record", where);
        return -1;
    }
    const char *patterns[2] = {fl->multiline_start_pattern, fl->file_footer_pattern};
    const char *names[2] = {"multiLineStartPattern", "fileFooterPattern"};
    for (int i = 0; i < 2; i++) {
        int code;
        PCRE2_SIZE at;
        pcre2_code *re = patterns[i] == NULL ? NULL
                                             : pcre2_compile((PCRE2_SPTR)patterns[i], PCRE2_ZERO_TERMINATED,
                                                             PCRE2_UTF | PCRE2_MATCH_INVALID_UTF, &code, &at, NULL);
        if (patterns[i] != NULL && re == NULL) {
            char msg[160];
            pcre2_get_error_message(code, (PCRE2_UCHAR *)msg, sizeof msg);
            snprintf(err, errlen, "%s%s: invalid regular expression at offset %zu: %s", where, names[i], (size_t)at,
                     msg);
            return -1;
        }
        pcre2_code_free(re);
    }
    char sub[400];
    fl->chain = proc_chain_new(options, sub, sizeof sub);
    if (fl->chain == NULL) {
        snprintf(err, errlen, "%s%s", where, sub);
        return -1;
    }
    size_t idlen = strlen(fl->stream) + strlen(fl->file_pattern) + 10;
    if ((fl->id = malloc(idlen)) == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    snprintf(fl->id, idlen, "kinesis:%s:%s", fl->stream, fl->file_pattern);
    return 0;
}

int agent_config_parse(const char *json, size_t len, agent_config_t *cfg, char *err, size_t errlen)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->checkpoint_ttl_days = 7;
    cfg->shutdown_timeout_ms = 10000;
    cfg->status_period_s = 60;
    cfg->max_buffered_bytes = 8 * MiB;
    cfg->checkpoint_interval_ms = 1000;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, false);
    int rc = -1;
    if (root == NULL) {
        size_t at = end != NULL && end >= json ? (size_t)(end - json) : 0;
        size_t line = 1;
        for (size_t i = 0; i < at && i < len; i++) {
            line += json[i] == '\n';
        }
        snprintf(err, errlen, "not valid JSON (near line %zu, byte %zu)", line, at);
        goto out;
    }
    if (!cJSON_IsObject(root)) {
        snprintf(err, errlen, "the configuration must be a JSON object");
        goto out;
    }
    const cJSON *flows = NULL;
    const cJSON *v;
    cJSON_ArrayForEach(v, root)
    {
        const key_spec_t *spec = find_key(global_keys, sizeof global_keys / sizeof global_keys[0], v->string);
        if (spec == NULL) {
            snprintf(err, errlen, "%s: unknown key", v->string);
            goto out;
        }
        int r = apply_key(cfg, spec, v, cfg, "", err, errlen);
        if (r < 0) {
            goto out;
        }
        if (r == 1) {
            flows = v;
        }
    }
    if (!cJSON_IsArray(flows) || cJSON_GetArraySize(flows) == 0) {
        snprintf(err, errlen, "flows: required, a non-empty array");
        goto out;
    }
    size_t n = (size_t)cJSON_GetArraySize(flows);
    if ((cfg->flows = calloc(n, sizeof *cfg->flows)) == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    cJSON_ArrayForEach(v, flows)
    {
        if (parse_flow(cfg, &cfg->flows[cfg->nflows], v, cfg->nflows, err, errlen) != 0) {
            cfg->nflows++;
            goto out;
        }
        cfg->nflows++;
    }
    for (size_t i = 0; i < cfg->nflows; i++) {
        for (size_t j = 0; j < i; j++) {
            if (strcmp(cfg->flows[i].id, cfg->flows[j].id) == 0) {
                snprintf(err, errlen, "flows[%zu]: the same filePattern and kinesisStream as flows[%zu]", i, j);
                goto out;
            }
        }
    }
    if ((cfg->access_key_id == NULL) != (cfg->secret_access_key == NULL)) {
        snprintf(err, errlen, "awsAccessKeyId and awsSecretAccessKey: give both or neither");
        goto out;
    }
    if (cfg->checkpoint_file == NULL && (cfg->checkpoint_file = strdup("/var/run/aws-kinesis-agent/checkpoints")) == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    rc = 0;
out:
    cJSON_Delete(root);
    if (rc != 0) {
        agent_config_dispose(cfg);
    }
    return rc;
}

int agent_config_load(const char *path, agent_config_t *cfg, char *err, size_t errlen)
{
    memset(cfg, 0, sizeof *cfg);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    buf_t b = BUF_INIT;
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (b.len + n > MiB) {
            fclose(f);
            buf_dispose(&b);
            snprintf(err, errlen, "%s: larger than 1 MiB", path);
            return -1;
        }
        buf_append(&b, chunk, n);
    }
    bool failed = ferror(f) != 0;
    fclose(f);
    if (failed) {
        buf_dispose(&b);
        snprintf(err, errlen, "cannot read %s", path);
        return -1;
    }
    char sub[512];
    int rc = agent_config_parse(b.data != NULL ? b.data : "", b.len, cfg, sub, sizeof sub);
    if (rc != 0) {
        snprintf(err, errlen, "%s: %s", path, sub);
    }
    buf_dispose(&b);
    return rc;
}

void agent_config_dispose(agent_config_t *cfg)
{
    for (size_t i = 0; i < cfg->nflows; i++) {
        agent_flow_config_t *fl = &cfg->flows[i];
        free(fl->id);
        free(fl->file_pattern);
        free(fl->directory);
        free(fl->name_glob);
        free(fl->stream);
        free(fl->pk_field);
        free(fl->multiline_start_pattern);
        free(fl->truncated_record_terminator);
        free(fl->file_footer_pattern);
        proc_chain_free(fl->chain);
    }
    free(cfg->flows);
    for (size_t i = 0; i < cfg->nwarnings; i++) {
        free(cfg->warnings[i]);
    }
    free(cfg->warnings);
    free(cfg->endpoint);
    free(cfg->region);
    free(cfg->access_key_id);
    free(cfg->secret_access_key);
    free(cfg->checkpoint_file);
    free(cfg->metrics_listen);
    memset(cfg, 0, sizeof *cfg);
}
