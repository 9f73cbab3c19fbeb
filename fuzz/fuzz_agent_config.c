/*
 * fuzz_agent_config: `eddy agent`'s agent.json reader (agent/config.c) on arbitrary bytes. A refusal must
 * say why (a non-empty message); an accepted configuration must have at least one flow, each with a file
 * pattern and a stream, and must be disposable (ASan checks the rest).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    agent_config_t cfg;
    char err[512] = "";
    if (agent_config_parse((const char *)data, size, &cfg, err, sizeof err) != 0) {
        if (err[0] == '\0') {
            fprintf(stderr, "refused without a reason\n");
            abort();
        }
        return 0;
    }
    if (cfg.nflows == 0) {
        fprintf(stderr, "accepted without a flow\n");
        abort();
    }
    for (size_t i = 0; i < cfg.nflows; i++) {
        if (cfg.flows[i].file_pattern == NULL || cfg.flows[i].stream == NULL || cfg.flows[i].name_glob == NULL) {
            fprintf(stderr, "flow %zu accepted without a pattern or a stream\n", i);
            abort();
        }
    }
    agent_config_dispose(&cfg);
    return 0;
}
