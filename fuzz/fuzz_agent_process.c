/*
 * fuzz_agent_process: `eddy agent`'s dataProcessingOptions (agent/process.c) on arbitrary records. Every
 * option (and a chain of several) is built once with fixed parameters; each input is run through all of
 * them. A kept record must come back with a length and a pointer that can be read (ASan checks the rest).
 * Hostile bytes (invalid UTF-8, NULs, huge fields) must be dropped, kept raw or converted, never crash.
 */
#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/process.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const OPTIONS[] = {
    "[{\"optionName\":\"SINGLELINE\"}]",
    "[{\"optionName\":\"SINGLELINE\",\"parseOptions\":[\"NO_TRIM\",\"ESCAPE_NEW_LINE\"]}]",
    "[{\"optionName\":\"CSVTOJSON\",\"customFieldNames\":[\"a\",\"b\",\"c\"]}]",
    "[{\"optionName\":\"CSVTOJSON\",\"customFieldNames\":[\"a\",\"b\"],\"delimiter\":\"\\\\t\"}]",
    "[{\"optionName\":\"LOGTOJSON\",\"logFormat\":\"COMMONAPACHELOG\"}]",
    "[{\"optionName\":\"LOGTOJSON\",\"logFormat\":\"COMBINEDAPACHELOG\"}]",
    "[{\"optionName\":\"LOGTOJSON\",\"logFormat\":\"APACHEERRORLOG\"}]",
    "[{\"optionName\":\"LOGTOJSON\",\"logFormat\":\"SYSLOG\"}]",
    "[{\"optionName\":\"LOGTOJSON\",\"logFormat\":\"RFC3339SYSLOG\"}]",
    "[{\"optionName\":\"LOGTOJSON\",\"logFormat\":\"COMMONAPACHELOG\",\"matchPattern\":\"^(\\\\S+) (\\\\d+) (.*)$\","
    "\"customFieldNames\":[\"host\",\"code\",\"rest\"]}]",
    "[{\"optionName\":\"ADDMETADATA\",\"timestamp\":\"true\",\"metadata\":{\"team\":\"x\"}}]",
    "[{\"optionName\":\"SINGLELINE\"},{\"optionName\":\"LOGTOJSON\",\"logFormat\":\"SYSLOG\"},"
    "{\"optionName\":\"ADDMETADATA\",\"timestamp\":\"true\",\"metadata\":{\"k\":1}}]",
};
#define NOPTIONS (sizeof OPTIONS / sizeof OPTIONS[0])

static proc_chain_t *chains[NOPTIONS];

static void build(void)
{
    for (size_t i = 0; i < NOPTIONS; i++) {
        cJSON *o = cJSON_Parse(OPTIONS[i]);
        char err[400] = "";
        chains[i] = o != NULL ? proc_chain_new(o, err, sizeof err) : NULL;
        cJSON_Delete(o);
        if (chains[i] == NULL) {
            fprintf(stderr, "option %zu refused: %s\n", i, err); /* the fixed options are all valid */
            abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (chains[0] == NULL) {
        build();
    }
    for (size_t i = 0; i < NOPTIONS; i++) {
        const char *out = NULL;
        size_t n = 0;
        if (proc_chain_run(chains[i], (const char *)data, size, 1700000000123, &out, &n) == PROC_OK) {
            if (n > 0 && out == NULL) {
                abort();
            }
            volatile unsigned sum = 0;
            for (size_t k = 0; k < n; k++) {
                sum += (unsigned char)out[k]; /* reading every byte of the result lets ASan check it */
            }
            (void)sum;
        }
    }
    return 0;
}
