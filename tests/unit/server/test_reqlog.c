/* Unit tests for server/reqlog: off writes nothing, JSON and text lines, switching at runtime, a bad path
 * keeps the previous settings. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/reqlog.h"

static char dir[64], path[128];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/eddy-reqlog-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/requests.log", dir);
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(reqlog, .init = setup, .fini = teardown);

static const reqlog_entry_t entry = {
    .time_ms = 1795336836123,
    .request_id = "0cefadd9-0858-4c0d-8e2a-a80ee6ee72f2",
    .operation = "PutRecords",
    .stream = "orders",
    .status = 400,
    .error = "ResourceNotFoundException",
    .latency_us = 512,
    .bytes_in = 5120,
    .bytes_out = 81,
};

/* The file's lines (at most 8), each malloc'd. */
static size_t read_lines(char *lines[8])
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return 0;
    }
    size_t n = 0;
    char line[1024];
    while (n < 8 && fgets(line, sizeof line, f) != NULL) {
        lines[n++] = strdup(line);
    }
    fclose(f);
    return n;
}

Test(reqlog, modes)
{
    reqlog_mode_t mode;
    cr_assert(reqlog_parse_mode("json", &mode) && mode == REQLOG_JSON);
    cr_assert(reqlog_parse_mode("text", &mode) && mode == REQLOG_TEXT);
    cr_assert(reqlog_parse_mode("off", &mode) && mode == REQLOG_OFF);
    cr_assert_not(reqlog_parse_mode("JSON", &mode));
    cr_assert_str_eq(reqlog_mode_name(REQLOG_TEXT), "text");
}

Test(reqlog, json_then_text_then_off)
{
    reqlog_t *rl = reqlog_new();
    cr_assert_not(reqlog_enabled(rl));
    char err[256];
    cr_assert_eq(reqlog_configure(rl, REQLOG_JSON, path, err, sizeof err), 0, "%s", err);
    cr_assert(reqlog_enabled(rl));
    reqlog_write(rl, &entry);
    cr_assert_eq(reqlog_configure(rl, REQLOG_TEXT, path, err, sizeof err), 0);
    reqlog_write(rl, &entry);
    cr_assert_eq(reqlog_configure(rl, REQLOG_OFF, path, err, sizeof err), 0);
    reqlog_write(rl, &entry);
    /* a file that cannot be opened keeps what was in force */
    cr_assert_lt(reqlog_configure(rl, REQLOG_JSON, "/nonexistent/dir/x.log", err, sizeof err), 0);
    cr_assert_not(reqlog_enabled(rl));
    reqlog_free(rl);

    char *lines[8];
    size_t n = read_lines(lines);
    cr_assert_eq(n, 2);
    cJSON *j = cJSON_Parse(lines[0]);
    cr_assert_not_null(j);
    cr_assert_str_eq(cJSON_GetObjectItem(j, "time")->valuestring, "2026-11-22T08:40:36.123Z");
    cr_assert_str_eq(cJSON_GetObjectItem(j, "request_id")->valuestring, entry.request_id);
    cr_assert_str_eq(cJSON_GetObjectItem(j, "operation")->valuestring, "PutRecords");
    cr_assert_str_eq(cJSON_GetObjectItem(j, "stream")->valuestring, "orders");
    cr_assert_eq(cJSON_GetObjectItem(j, "status")->valueint, 400);
    cr_assert_str_eq(cJSON_GetObjectItem(j, "error")->valuestring, "ResourceNotFoundException");
    cr_assert_eq(cJSON_GetObjectItem(j, "latency_us")->valueint, 512);
    cr_assert_eq(cJSON_GetObjectItem(j, "bytes_in")->valueint, 5120);
    cr_assert_eq(cJSON_GetObjectItem(j, "bytes_out")->valueint, 81);
    cJSON_Delete(j);
    cr_assert_str_eq(lines[1], "2026-11-22T08:40:36.123Z 0cefadd9-0858-4c0d-8e2a-a80ee6ee72f2 PutRecords stream=orders "
                               "status=400 error=ResourceNotFoundException latency_us=512 in=5120 out=81\n");
    for (size_t i = 0; i < n; i++) {
        free(lines[i]);
    }
}
