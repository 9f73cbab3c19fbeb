/*
 * Unit tests for agent/config (agent.json): defaults, every kind of key, the flow id and pattern split, and
 * errors that name the key; keys of the Java agent accepted with a warning.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "agent/config.h"

static void parse_ok(const char *json, agent_config_t *cfg)
{
    char err[600] = "";
    cr_assert_eq(agent_config_parse(json, strlen(json), cfg, err, sizeof err), 0, "%s", err);
}

static void parse_fails(const char *json, const char *message)
{
    agent_config_t cfg;
    char err[600] = "";
    cr_assert_neq(agent_config_parse(json, strlen(json), &cfg, err, sizeof err), 0, "accepted: %s", json);
    cr_assert(strstr(err, message) != NULL, "error \"%s\" lacks \"%s\"", err, message);
}

Test(config, defaults_and_a_full_flow)
{
    agent_config_t cfg;
    parse_ok("{\"flows\":[{\"filePattern\":\"/var/log/app/*.log\",\"kinesisStream\":\"s\"}]}", &cfg);
    cr_assert_eq(cfg.nflows, 1);
    const agent_flow_config_t *f = &cfg.flows[0];
    cr_assert_str_eq(f->id, "kinesis:s:/var/log/app/*.log");
    cr_assert_str_eq(f->directory, "/var/log/app");
    cr_assert_str_eq(f->name_glob, "*.log");
    cr_assert_eq(f->pk_mode, AGENT_PK_RANDOM);
    cr_assert(!f->start_of_file);
    cr_assert_eq(f->max_buffer_records, 500);
    cr_assert_eq(f->retry_initial_backoff_ms, 100);
    cr_assert_eq(f->retry_max_backoff_ms, 10000);
    cr_assert_str_eq(f->truncated_record_terminator, "\n");
    cr_assert_str_eq(cfg.checkpoint_file, "/var/run/aws-kinesis-agent/checkpoints");
    cr_assert_eq(cfg.checkpoint_ttl_days, 7);
    cr_assert_eq(cfg.max_buffered_bytes, 8u << 20);
    agent_config_dispose(&cfg);

    parse_ok("{\"kinesis.endpoint\":\"http://127.0.0.1:1\",\"checkpointFile\":\"/tmp/c.db\",\"eddy.maxBufferedBytes\":"
             "2097152,\"cloudwatch.emitMetrics\":false,\"flows\":[{\"filePattern\":\"/a/b.log\",\"kinesisStream\":"
             "\"one\",\"partitionKeyOption\":\"FIELD:user\",\"initialPosition\":\"START_OF_FILE\","
             "\"maxBufferAgeMillis\":\"2500\",\"skipHeaderLines\":3,\"aggregation\":true,\"multiLineStartPattern\":"
             "\"^\\\\d\"},{\"filePattern\":\"/c/*.{log,txt}\",\"kinesisStream\":\"two\",\"partitionKeyOption\":"
             "\"DETERMINISTIC\"}]}",
             &cfg);
    cr_assert_eq(cfg.nflows, 2);
    cr_assert_str_eq(cfg.endpoint, "http://127.0.0.1:1");
    cr_assert_eq(cfg.max_buffered_bytes, 2097152);
    cr_assert_eq(cfg.flows[0].pk_mode, AGENT_PK_FIELD);
    cr_assert_str_eq(cfg.flows[0].pk_field, "user");
    cr_assert(cfg.flows[0].start_of_file);
    cr_assert_eq(cfg.flows[0].max_buffer_age_ms, 2500); /* numbers as strings, as the Java agent reads them */
    cr_assert_eq(cfg.flows[0].skip_header_lines, 3);
    cr_assert(cfg.flows[0].aggregation);
    cr_assert_eq(cfg.flows[1].pk_mode, AGENT_PK_DETERMINISTIC);
    cr_assert_eq(cfg.nwarnings, 1);
    cr_assert(strstr(cfg.warnings[0], "cloudwatch.emitMetrics: accepted and ignored") != NULL);
    agent_config_dispose(&cfg);
}

Test(config, errors_name_the_key)
{
    parse_fails("{", "not valid JSON");
    parse_fails("[]", "must be a JSON object");
    parse_fails("{}", "flows: required");
    parse_fails("{\"flows\":[]}", "flows: required");
    parse_fails("{\"bogus\":1,\"flows\":[]}", "bogus: unknown key");
    parse_fails("{\"flows\":[{\"kinesisStream\":\"s\"}]}", "flows[0].filePattern: required");
    parse_fails("{\"flows\":[{\"filePattern\":\"/a/b\"}]}", "flows[0].kinesisStream: required");
    parse_fails("{\"flows\":[{\"filePattern\":\"a.log\",\"kinesisStream\":\"s\"}]}", "must be an absolute path");
    parse_fails("{\"flows\":[{\"filePattern\":\"/a/*/b.log\",\"kinesisStream\":\"s\"}]}",
                "the directory part must be literal");
    parse_fails("{\"flows\":[{\"filePattern\":\"/a/b\",\"kinesisStream\":\"s\",\"maxBufferSizeRecords\":0}]}",
                "flows[0].maxBufferSizeRecords: must be an integer in 1 .. 500");
    parse_fails("{\"flows\":[{\"filePattern\":\"/a/b\",\"kinesisStream\":\"s\",\"skipHeaderLines\":\"x\"}]}",
                "flows[0].skipHeaderLines: must be an integer");
    parse_fails("{\"flows\":[{\"filePattern\":\"/a/b\",\"kinesisStream\":\"s\",\"initialPosition\":\"MIDDLE\"}]}",
                "initialPosition: must be START_OF_FILE or END_OF_FILE");
    parse_fails("{\"flows\":[{\"filePattern\":\"/a/b\",\"kinesisStream\":\"s\",\"partitionKeyOption\":\"X\"}]}",
                "partitionKeyOption: must be RANDOM, DETERMINISTIC or FIELD:<name>");
    parse_fails("{\"flows\":[{\"filePattern\":\"/a/b\",\"deliveryStream\":\"d\"}]}", "Firehose destinations");
    parse_fails("{\"flows\":[{\"filePattern\":\"/a/b\",\"kinesisStream\":\"s\",\"fileFooterPattern\":\"[\"}]}",
                "flows[0].fileFooterPattern: invalid regular expression");
    parse_fails("{\"flows\":[{\"filePattern\":\"/a/b\",\"kinesisStream\":\"s\",\"aggregation\":1}]}",
                "flows[0].aggregation: must be true or false");
    parse_fails("{\"flows\":[{\"filePattern\":\"/a/b\",\"kinesisStream\":\"s\",\"retryInitialBackoffMillis\":500,"
                "\"retryMaxBackoffMillis\":100}]}",
                "retryMaxBackoffMillis: must not be below");
    parse_fails("{\"flows\":[{\"filePattern\":\"/a/b\",\"kinesisStream\":\"s\"},{\"filePattern\":\"/a/b\","
                "\"kinesisStream\":\"s\"}]}",
                "flows[1]: the same filePattern and kinesisStream as flows[0]");
    parse_fails("{\"awsAccessKeyId\":\"a\",\"flows\":[{\"filePattern\":\"/a/b\",\"kinesisStream\":\"s\"}]}",
                "give both or neither");
    parse_fails("{\"flows\":[{\"filePattern\":\"/a/b\",\"kinesisStream\":\"s\",\"dataProcessingOptions\":"
                "[{\"optionName\":\"CSVTOJSON\"}]}]}",
                "flows[0].dataProcessingOptions[0]: CSVTOJSON needs customFieldNames");
    parse_fails("{\"eddy.maxBufferedBytes\":10,\"flows\":[{\"filePattern\":\"/a/b\",\"kinesisStream\":\"s\"}]}",
                "eddy.maxBufferedBytes: must be an integer in 1048576");
}

Test(config, load_reports_the_file)
{
    agent_config_t cfg;
    char err[600];
    cr_assert_neq(agent_config_load("/nonexistent/agent.json", &cfg, err, sizeof err), 0);
    cr_assert(strstr(err, "cannot read /nonexistent/agent.json") != NULL, "%s", err);
}
