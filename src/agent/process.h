/*
 * process: the Kinesis Agent's dataProcessingOptions, an ordered chain of converters applied to each record
 * before it is sent (docs/AGENT.md lists every option and what eddy adds).
 *
 *   SINGLELINE      joins a multi-line record into one line (parseOptions NO_TRIM, ESCAPE_NEW_LINE)
 *   CSVTOJSON       splits on a delimiter (a regular expression, as Java's String.split) into
 *                   {"field": value, ...}
 *   LOGTOJSON       COMMONAPACHELOG, COMBINEDAPACHELOG, APACHEERRORLOG, SYSLOG, RFC3339SYSLOG or a custom
 *                   matchPattern (PCRE2, close to Java's regular expressions) into JSON
 *   ADDMETADATA     {"metadata": {...}, "message": "<record>", "ts": "<UTC time>"}
 *   ADDEC2METADATA  {"metadata": {instanceId, ...}, "message": "<record>"} from the EC2 instance metadata
 *                   service; without EC2 the records pass unchanged (and the agent says so once)
 *   ADDBRACKETS     "[" record "]"
 *
 * Records come in with their line terminator ("\n"), as the Kinesis Agent reads them; converters that make
 * JSON end their output with "\n" too. A converter either converts a record, or finds it malformed (a
 * log line its pattern does not match, a CSV line with fewer fields than names); what happens then is its
 * onMismatch setting (an eddy addition): DROP (the Kinesis Agent's behaviour for LOGTOJSON), RAW (the
 * record goes on unchanged) or, for CSVTOJSON, NULL (missing fields are null: the Kinesis Agent's
 * behaviour). Every outcome is counted per converter.
 *
 * Threads: a chain is used by one thread at a time (the agent's main thread); the counters are plain.
 */
#ifndef EDDY_AGENT_PROCESS_H
#define EDDY_AGENT_PROCESS_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct proc_chain proc_chain_t;

enum { PROC_OK = 0, PROC_DROP = 1 };

/* What one converter did. */
typedef struct proc_counters {
    uint64_t converted; /* records it converted */
    uint64_t malformed; /* records its pattern did not fit (whatever then happened to them) */
    uint64_t dropped;   /* of those, dropped */
    uint64_t kept_raw;  /* of those, passed on unchanged */
} proc_counters_t;

/* Builds a chain from a dataProcessingOptions array (borrowed; NULL or empty: no conversion). NULL with the
 * reason in err (naming the option and the key) for an unknown option, an unknown or invalid parameter or
 * a regular expression that does not compile. */
proc_chain_t *proc_chain_new(const cJSON *options, char *err, size_t errlen);
void proc_chain_free(proc_chain_t *c);

size_t proc_chain_length(const proc_chain_t *c);
/* The option name of converter i ("LOGTOJSON"); static. */
const char *proc_chain_option(const proc_chain_t *c, size_t i);
const proc_counters_t *proc_chain_counters(const proc_chain_t *c, size_t i);

/* Whether an ADDEC2METADATA converter is in the chain. */
bool proc_chain_wants_ec2(const proc_chain_t *c);
/* Gives ADDEC2METADATA its metadata: a JSON object's text with the fields to add (copied), or NULL when
 * there is none (not on EC2): the records then pass unchanged. */
void proc_chain_set_ec2_metadata(proc_chain_t *c, const char *json_object);

/* Runs the chain over one record (in, len: borrowed). PROC_OK with the result in *out, *out_len (a view
 * into the chain's buffers, or into in when nothing converted it, valid until the next call), or PROC_DROP
 * when a converter dropped it. now_ms (wall clock) stamps ADDMETADATA's "ts". */
int proc_chain_run(proc_chain_t *c, const char *in, size_t len, int64_t now_ms, const char **out,
                   size_t *out_len);

/* Asks the EC2 instance metadata service (IMDSv2, then v1) for the fields ADDEC2METADATA adds, giving up
 * after timeout_ms in all. Returns a JSON object's text (free it), or NULL with the reason in err. */
char *proc_ec2_fetch_metadata(const char *endpoint, long timeout_ms, char *err, size_t errlen);

#endif
