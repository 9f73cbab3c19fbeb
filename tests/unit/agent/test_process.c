/*
 * Unit tests for agent/process (dataProcessingOptions): each option on sample lines, malformed lines dropped
 * or kept raw as configured and counted, chains, and the errors for bad parameters.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "agent/process.h"

static proc_chain_t *chain_of(const char *json)
{
    cJSON *opts = cJSON_Parse(json);
    cr_assert_not_null(opts, "bad test JSON: %s", json);
    char err[400] = "";
    proc_chain_t *c = proc_chain_new(opts, err, sizeof err);
    cJSON_Delete(opts);
    cr_assert_not_null(c, "%s", err);
    return c;
}

static void refused(const char *json, const char *message)
{
    cJSON *opts = cJSON_Parse(json);
    char err[400] = "";
    proc_chain_t *c = proc_chain_new(opts, err, sizeof err);
    cJSON_Delete(opts);
    cr_assert_null(c, "accepted: %s", json);
    cr_assert(strstr(err, message) != NULL, "error \"%s\" lacks \"%s\"", err, message);
}

/* Runs one record; returns the output as a NUL-terminated copy in out (or NULL when dropped). */
static const char *run(proc_chain_t *c, const char *in)
{
    static char out[4096];
    const char *o;
    size_t n;
    if (proc_chain_run(c, in, strlen(in), 1700000000123, &o, &n) == PROC_DROP) {
        return NULL;
    }
    cr_assert_lt(n, sizeof out);
    memcpy(out, o, n);
    out[n] = '\0';
    return out;
}

Test(process, no_options_pass_records_unchanged)
{
    proc_chain_t *c = chain_of("[]");
    cr_assert_str_eq(run(c, "hello\n"), "hello\n");
    proc_chain_free(c);
}

Test(process, singleline_trims_and_joins)
{
    proc_chain_t *c = chain_of("[{\"optionName\":\"SINGLELINE\"}]");
    cr_assert_str_eq(run(c, "  first line  \n\tsecond\n third\n"), "first linesecondthird\n");
    proc_chain_free(c);
    c = chain_of("[{\"optionName\":\"SINGLELINE\",\"parseOptions\":[\"NO_TRIM\",\"ESCAPE_NEW_LINE\"]}]");
    cr_assert_str_eq(run(c, " a \n b\n"), " a \\n b\n");
    proc_chain_free(c);
}

Test(process, csvtojson_fields_delimiter_and_mismatch)
{
    proc_chain_t *c = chain_of("[{\"optionName\":\"CSVTOJSON\",\"customFieldNames\":[\"a\",\"b\",\"c\"]}]");
    cr_assert_str_eq(run(c, "1,two,3\n"), "{\"a\":\"1\",\"b\":\"two\",\"c\":\"3\"}\n");
    cr_assert_str_eq(run(c, "1,2,3,4\n"), "{\"a\":\"1\",\"b\":\"2\",\"c\":\"3\"}\n"); /* extra columns ignored */
    /* fewer: null, as the Kinesis Agent does, and counted as malformed */
    cr_assert_str_eq(run(c, "1,2\n"), "{\"a\":\"1\",\"b\":\"2\",\"c\":null}\n");
    cr_assert_str_eq(run(c, "x,\"q\",\n"), "{\"a\":\"x\",\"b\":\"\\\"q\\\"\",\"c\":null}\n");
    const proc_counters_t *k = proc_chain_counters(c, 0);
    cr_assert_eq(k->converted, 4);
    cr_assert_eq(k->malformed, 2);
    proc_chain_free(c);

    c = chain_of("[{\"optionName\":\"CSVTOJSON\",\"customFieldNames\":[\"a\",\"b\"],\"delimiter\":\"\\\\t\","
                 "\"onMismatch\":\"DROP\"}]");
    cr_assert_str_eq(run(c, "x\ty\n"), "{\"a\":\"x\",\"b\":\"y\"}\n");
    cr_assert_null(run(c, "only one\n"));
    cr_assert_eq(proc_chain_counters(c, 0)->dropped, 1);
    proc_chain_free(c);

    c = chain_of("[{\"optionName\":\"CSVTOJSON\",\"customFieldNames\":[\"a\",\"b\"],\"onMismatch\":\"RAW\"}]");
    cr_assert_str_eq(run(c, "lonely\n"), "lonely\n");
    cr_assert_eq(proc_chain_counters(c, 0)->kept_raw, 1);
    proc_chain_free(c);
}

Test(process, logtojson_apache_formats)
{
    proc_chain_t *c = chain_of("[{\"optionName\":\"LOGTOJSON\",\"logFormat\":\"COMMONAPACHELOG\"}]");
    cr_assert_str_eq(run(c, "127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] \"GET /a.gif HTTP/1.0\" 200 2326\n"),
                     "{\"host\":\"127.0.0.1\",\"ident\":\"-\",\"authuser\":\"frank\",\"datetime\":\"10/Oct/2000:13:55:36 "
                     "-0700\",\"request\":\"GET /a.gif HTTP/1.0\",\"response\":\"200\",\"bytes\":\"2326\"}\n");
    cr_assert_null(run(c, "garbage\n"));
    cr_assert_eq(proc_chain_counters(c, 0)->dropped, 1);
    proc_chain_free(c);

    c = chain_of("[{\"optionName\":\"LOGTOJSON\",\"logFormat\":\"COMBINEDAPACHELOG\",\"customFieldNames\":"
                 "[\"h\",\"i\",\"u\",\"t\",\"r\",\"s\",\"b\",\"ref\",\"ua\"]}]");
    cr_assert_str_eq(run(c, "1.2.3.4 - - [x] \"GET / HTTP/1.1\" 304 - \"http://e/\" \"curl/8 \\\"q\\\"\"\n"),
                     "{\"h\":\"1.2.3.4\",\"i\":\"-\",\"u\":\"-\",\"t\":\"x\",\"r\":\"GET / HTTP/1.1\",\"s\":\"304\","
                     "\"b\":\"-\",\"ref\":\"http://e/\",\"ua\":\"curl/8 \\\\\\\"q\\\\\\\"\"}\n");
    proc_chain_free(c);

    c = chain_of("[{\"optionName\":\"LOGTOJSON\",\"logFormat\":\"APACHEERRORLOG\"}]");
    cr_assert_str_eq(run(c, "[Fri Sep 09 10:42:29.902022 2011] [core:error] [pid 35708:tid 4328636416] [client "
                            "72.15.99.187] File does not exist: /a\n"),
                     "{\"timestamp\":\"Fri Sep 09 10:42:29.902022 2011\",\"module\":\"core\",\"severity\":\"error\","
                     "\"processid\":\"35708\",\"threadid\":\"4328636416\",\"client\":\"72.15.99.187\","
                     "\"message\":\"File does not exist: /a\"}\n");
    /* optional parts left out */
    cr_assert_str_eq(run(c, "[Fri Sep 09 10:42:29 2011] [error] [pid 1] oops\n"),
                     "{\"timestamp\":\"Fri Sep 09 10:42:29 2011\",\"severity\":\"error\",\"processid\":\"1\","
                     "\"message\":\"oops\"}\n");
    proc_chain_free(c);
}

Test(process, logtojson_syslog_formats_and_custom_pattern)
{
    proc_chain_t *c = chain_of("[{\"optionName\":\"LOGTOJSON\",\"logFormat\":\"SYSLOG\"}]");
    cr_assert_str_eq(run(c, "Mar 12 12:00:08 server2 rcd[308]: Loaded 12 packages\n"),
                     "{\"timestamp\":\"Mar 12 12:00:08\",\"hostname\":\"server2\",\"program\":\"rcd\",\"processid\":"
                     "\"308\",\"message\":\"Loaded 12 packages\"}\n");
    cr_assert_str_eq(run(c, "Mar  2 01:00:08 h cron: job\n"),
                     "{\"timestamp\":\"Mar  2 01:00:08\",\"hostname\":\"h\",\"program\":\"cron\",\"message\":\"job\"}\n");
    proc_chain_free(c);
    c = chain_of("[{\"optionName\":\"LOGTOJSON\",\"logFormat\":\"RFC3339SYSLOG\",\"onMismatch\":\"RAW\"}]");
    cr_assert_str_eq(run(c, "2024-05-01T10:00:00.123+02:00 web1 nginx[77]: up\n"),
                     "{\"timestamp\":\"2024-05-01T10:00:00.123+02:00\",\"hostname\":\"web1\",\"program\":\"nginx\","
                     "\"processid\":\"77\",\"message\":\"up\"}\n");
    cr_assert_str_eq(run(c, "Mar 12 12:00:08 not rfc3339\n"), "Mar 12 12:00:08 not rfc3339\n");
    cr_assert_eq(proc_chain_counters(c, 0)->kept_raw, 1);
    proc_chain_free(c);
    c = chain_of("[{\"optionName\":\"LOGTOJSON\",\"logFormat\":\"COMMONAPACHELOG\",\"matchPattern\":"
                 "\"^(\\\\w+)=(\\\\d+)$\",\"customFieldNames\":[\"key\",\"value\"],\"jsonFormat\":\"COMPACT\"}]");
    cr_assert_str_eq(run(c, "speed=42\n"), "{\"key\":\"speed\",\"value\":\"42\"}\n");
    cr_assert_null(run(c, "speed=fast\n"));
    proc_chain_free(c);
}

Test(process, addmetadata_and_brackets_in_a_chain)
{
    proc_chain_t *c = chain_of("[{\"optionName\":\"SINGLELINE\"},{\"optionName\":\"ADDMETADATA\",\"timestamp\":\"true\","
                               "\"metadata\":{\"env\":\"prod\",\"n\":1}},{\"optionName\":\"ADDBRACKETS\"}]");
    cr_assert_str_eq(run(c, "a\n b\n"),
                     "[{\"metadata\":{\"env\":\"prod\",\"n\":1},\"message\":\"ab\",\"ts\":\"2023-11-14T22:13:20.123Z\"}\n]");
    cr_assert_eq(proc_chain_length(c), 3);
    cr_assert_str_eq(proc_chain_option(c, 1), "ADDMETADATA");
    proc_chain_free(c);
}

Test(process, addec2metadata_with_and_without_metadata)
{
    proc_chain_t *c = chain_of("[{\"optionName\":\"ADDEC2METADATA\",\"metadataFields\":[\"instanceId\",\"region\"]}]");
    cr_assert(proc_chain_wants_ec2(c));
    cr_assert_str_eq(run(c, "x\n"), "x\n"); /* no metadata (not on EC2): unchanged */
    proc_chain_set_ec2_metadata(c, "{\"instanceId\":\"i-1\",\"region\":\"eu-west-1\",\"amiId\":\"ami-9\"}");
    cr_assert_str_eq(run(c, "x\n"), "{\"metadata\":{\"instanceId\":\"i-1\",\"region\":\"eu-west-1\"},\"message\":\"x\"}\n");
    proc_chain_free(c);
}

Test(process, ec2_fetch_gives_up_quickly_without_a_service)
{
    char err[256];
    /* a closed local port: the answer is "none", at once */
    char *json = proc_ec2_fetch_metadata("http://127.0.0.1:9", 500, err, sizeof err);
    cr_assert_null(json);
    cr_assert(strstr(err, "no EC2 instance metadata") != NULL, "%s", err);
}

Test(process, bad_parameters_are_named)
{
    refused("[{\"optionName\":\"NOPE\"}]", "dataProcessingOptions[0].optionName \"NOPE\" is unknown");
    refused("[{\"optionName\":\"USINGPLUGGIN\"}]", "not supported");
    refused("[{\"optionName\":\"CSVTOJSON\"}]", "CSVTOJSON needs customFieldNames");
    refused("[{\"optionName\":\"CSVTOJSON\",\"customFieldNames\":[\"a\"],\"delimiter\":\"(\"}]",
            "dataProcessingOptions[0].delimiter: invalid regular expression");
    refused("[{\"optionName\":\"LOGTOJSON\",\"logFormat\":\"SYSLOG\",\"customFieldNames\":[\"a\"]}]",
            "1 customFieldNames for a pattern with 5 capture groups");
    refused("[{\"optionName\":\"LOGTOJSON\",\"logFormat\":\"SYSLOG\",\"matchPattern\":\"(a)\"}]",
            "a matchPattern needs customFieldNames");
    refused("[{\"optionName\":\"SINGLELINE\",\"parseOptions\":[\"X\"]}]", "expected NO_TRIM or ESCAPE_NEW_LINE");
    refused("[{\"optionName\":\"ADDMETADATA\",\"timestamp\":\"yes\"}]", "timestamp must be \"true\" or \"false\"");
    refused("[{\"optionName\":\"ADDEC2METADATA\",\"logFormat\":\"SYSLOG\"}]", "put a LOGTOJSON option before it");
    refused("[{\"optionName\":\"LOGTOJSON\",\"logFormat\":\"SYSLOG\",\"onMismatch\":\"NULL\"}]", "DROP or RAW");
    refused("[{\"optionName\":\"ADDBRACKETS\",\"x\":1}]", "ADDBRACKETS takes no parameters");
}

Test(process, hostile_records_do_not_crash)
{
    proc_chain_t *c = chain_of("[{\"optionName\":\"LOGTOJSON\",\"logFormat\":\"COMBINEDAPACHELOG\",\"onMismatch\":"
                               "\"RAW\"},{\"optionName\":\"CSVTOJSON\",\"customFieldNames\":[\"a\"]}]");
    char big[3000];
    memset(big, ',', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    cr_assert_not_null(run(c, big));
    const char bad_utf8[] = "\xff\xfe\x80 - - [x] \"\xc3\" 200 1\n";
    const char *o;
    size_t n;
    cr_assert_eq(proc_chain_run(c, bad_utf8, sizeof bad_utf8 - 1, 0, &o, &n), PROC_OK);
    cr_assert_eq(proc_chain_run(c, "", 0, 0, &o, &n), PROC_OK);
    proc_chain_free(c);
}
