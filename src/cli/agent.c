/*
 * agent: `eddy agent`, a log-tailing agent that reads the Kinesis Agent's agent.json (src/agent/,
 * docs/AGENT.md).
 *
 *   eddy agent [-c|--config FILE] [--check] [--metrics-listen HOST:PORT] [--no-inotify] [--log-level LEVEL]
 *
 * FILE defaults to /etc/aws-kinesis/agent.json. --check only reads and checks the configuration (exit 0 when
 * valid, 2 with the reason otherwise). Exit status: 0 after SIGINT/SIGTERM, 1 when the agent could not
 * start, 2 on bad usage or an invalid configuration.
 */
#include "cli/agent.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "agent/agent.h"
#include "agent/config.h"
#include "common/log.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: eddy agent [-c FILE] [--check] [--metrics-listen HOST:PORT] [--no-inotify]\n"
                 "                  [--log-level debug|info|warn|error]\n\n"
                 "Tails log files into Kinesis streams, configured by the Kinesis Agent's agent.json.\n"
                 "  -c, --config FILE        the configuration (default /etc/aws-kinesis/agent.json)\n"
                 "  --check                  check the configuration and exit\n"
                 "  --metrics-listen H:P     serve Prometheus metrics at http://H:P/metrics (port 0: a free one;\n"
                 "                           overrides eddy.metricsListen)\n"
                 "  --no-inotify             poll the files instead of watching them with inotify\n"
                 "  --log-level LEVEL        default info\n"
                 "docs/AGENT.md lists the configuration keys.\n");
}

int agent_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},     {"check", no_argument, NULL, 'k'},
        {"metrics-listen", required_argument, NULL, 'm'}, {"no-inotify", no_argument, NULL, 'n'},
        {"log-level", required_argument, NULL, 'l'},  {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = "/etc/aws-kinesis/agent.json";
    bool check = false;
    agent_options_t opt = {0};
    optind = 0;
    int c;
    while ((c = getopt_long(argc, argv, "c:", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            path = optarg;
            break;
        case 'k':
            check = true;
            break;
        case 'm':
            opt.metrics_listen = optarg;
            break;
        case 'n':
            opt.no_inotify = true;
            break;
        case 'l':
            if (strcmp(optarg, "debug") == 0) {
                log_set_level(LOG_DEBUG);
            } else if (strcmp(optarg, "info") == 0) {
                log_set_level(LOG_INFO);
            } else if (strcmp(optarg, "warn") == 0) {
                log_set_level(LOG_WARN);
            } else if (strcmp(optarg, "error") == 0) {
                log_set_level(LOG_ERROR);
            } else {
                fprintf(stderr, "eddy agent: --log-level: debug, info, warn or error\n");
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "eddy agent: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    agent_config_t cfg;
    char err[600];
    if (agent_config_load(path, &cfg, err, sizeof err) != 0) {
        fprintf(stderr, "eddy agent: %s\n", err);
        return 2;
    }
    if (check) {
        for (size_t i = 0; i < cfg.nwarnings; i++) {
            fprintf(stderr, "eddy agent: warning: %s\n", cfg.warnings[i]);
        }
        printf("%s: valid, %zu flow%s\n", path, cfg.nflows, cfg.nflows == 1 ? "" : "s");
        agent_config_dispose(&cfg);
        return 0;
    }
    int status = agent_run(&cfg, &opt);
    agent_config_dispose(&cfg);
    return status;
}
