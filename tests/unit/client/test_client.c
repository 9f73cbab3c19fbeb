/*
 * client tests: libeddy's Kinesis client (src/client/client.c).
 *
 * Pure parts first: configuration from the environment and eddy_config_set, credentials (explicit >
 * environment > shared file), endpoints, error replies, the retry decision and the backoff's bounds. Then
 * end to end against the real eddy binary (EDDY_BIN), started per test on a free loopback port with a
 * temporary data folder: operations, an AWS error, signatures checked with --credentials, HTTP/2 with prior
 * knowledge, HTTPS with ALPN and a verified certificate, 200 concurrent calls, a throttled call retried, a
 * refused connection and a timeout, SubscribeToShard as a streaming call paused after every event and resumed,
 * cancelled, and refused. Synchronisation is by waiting on a condition with a deadline, never by
 * sleeping; the suite's fini stops the servers and removes the folders even when an assertion fails (and
 * the servers die with the test process: PR_SET_PDEATHSIG).
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "client/client_private.h"
#include "eddy/client.h"
#include "eddy/error.h"

#define KEY "AKIDCLIENTTEST"
#define SECRET "client/test+secret"

static const char *const aws_vars[] = {
    "AWS_ENDPOINT_URL_KINESIS", "AWS_ENDPOINT_URL", "AWS_REGION",  "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",        "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE",
};

static void clear_aws_env(void)
{
    for (size_t i = 0; i < sizeof aws_vars / sizeof aws_vars[0]; i++) {
        unsetenv(aws_vars[i]);
    }
}

/* ---- temporary folders ---- */

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void remove_tree(const char *dir)
{
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static char tmp_dirs[8][64];
static size_t ntmp_dirs;

static const char *make_tmp_dir(void)
{
    cr_assert(ntmp_dirs < 8);
    char *d = tmp_dirs[ntmp_dirs];
    snprintf(d, 64, "/tmp/eddy-client-test-XXXXXX");
    cr_assert_not_null(mkdtemp(d), "mkdtemp: %s", strerror(errno));
    ntmp_dirs++;
    return d;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    fputs(text, f);
    fclose(f);
    chmod(path, 0600);
}

static void cleanup_tmp_dirs(void)
{
    for (size_t i = 0; i < ntmp_dirs; i++) {
        remove_tree(tmp_dirs[i]);
    }
    ntmp_dirs = 0;
}

/* ---- configuration ---- */

TestSuite(config, .init = clear_aws_env);

Test(config, defaults_without_environment)
{
    eddy_config_t *cfg = eddy_config_new();
    cr_assert_not_null(cfg);
    cr_assert_null(cfg->endpoint);
    cr_assert_str_eq(cfg->region, "us-east-1");
    cr_assert_eq(cfg->http2, CLIENT_HTTP2_ON);
    cr_assert_eq(cfg->max_connections, 24);
    cr_assert_eq(cfg->request_timeout_ms, 6000);
    cr_assert_eq(cfg->connect_timeout_ms, 6000);
    cr_assert_eq(cfg->max_retries, 3);
    cr_assert_eq(cfg->retry_base_ms, 25);
    cr_assert_eq(cfg->retry_max_ms, 2000);
    cr_assert(cfg->verify_tls);
    cr_assert_null(cfg->env_access_key_id);
    cr_assert_null(cfg->profile);
    cr_assert_null(cfg->credentials_file);
    eddy_config_free(cfg);
}

Test(config, the_environment_as_documented)
{
    setenv("AWS_ENDPOINT_URL", "http://generic:1", 1);
    setenv("AWS_DEFAULT_REGION", "eu-west-1", 1);
    setenv("AWS_ACCESS_KEY_ID", "AKIDENV", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
    setenv("AWS_SESSION_TOKEN", "envtoken", 1);
    setenv("AWS_PROFILE", "work", 1);
    setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials", 1);
    eddy_config_t *cfg = eddy_config_new();
    cr_assert_str_eq(cfg->endpoint, "http://generic:1");
    cr_assert_str_eq(cfg->region, "eu-west-1");
    cr_assert_str_eq(cfg->env_access_key_id, "AKIDENV");
    cr_assert_str_eq(cfg->env_secret_access_key, "envsecret");
    cr_assert_str_eq(cfg->env_session_token, "envtoken");
    cr_assert_str_eq(cfg->profile, "work");
    cr_assert_str_eq(cfg->credentials_file, "/nonexistent/credentials");
    cr_assert_null(cfg->access_key_id, "the environment's keys are not explicit ones");
    eddy_config_free(cfg);

    /* the specific variables win over the generic ones */
    setenv("AWS_ENDPOINT_URL_KINESIS", "http://kinesis-only:2", 1);
    setenv("AWS_REGION", "ap-south-1", 1);
    cfg = eddy_config_new();
    cr_assert_str_eq(cfg->endpoint, "http://kinesis-only:2");
    cr_assert_str_eq(cfg->region, "ap-south-1");
    eddy_config_free(cfg);

    /* empty variables count as unset */
    setenv("AWS_ENDPOINT_URL_KINESIS", "", 1);
    setenv("AWS_REGION", "", 1);
    cfg = eddy_config_new();
    cr_assert_str_eq(cfg->endpoint, "http://generic:1");
    cr_assert_str_eq(cfg->region, "eu-west-1");
    eddy_config_free(cfg);
}

static int set(eddy_config_t *cfg, const char *key, const char *value, char *err)
{
    err[0] = '\0';
    return eddy_config_set(cfg, key, value, err, 256);
}

Test(config, set_accepts_good_values)
{
    eddy_config_t *cfg = eddy_config_new();
    char err[256];
    cr_assert_eq(set(cfg, "endpoint", "http://127.0.0.1:4567", err), 0, "%s", err);
    cr_assert_str_eq(cfg->endpoint, "http://127.0.0.1:4567");
    cr_assert_eq(set(cfg, "endpoint", "", err), 0);
    cr_assert_null(cfg->endpoint, "\"\" goes back to the default");
    cr_assert_eq(set(cfg, "region", "eu-central-1", err), 0);
    cr_assert_str_eq(cfg->region, "eu-central-1");
    cr_assert_eq(set(cfg, "access_key_id", "AKID", err), 0);
    cr_assert_eq(set(cfg, "secret_access_key", "s", err), 0);
    cr_assert_eq(set(cfg, "session_token", "t", err), 0);
    cr_assert_str_eq(cfg->access_key_id, "AKID");
    cr_assert_str_eq(cfg->secret_access_key, "s");
    cr_assert_str_eq(cfg->session_token, "t");
    cr_assert_eq(set(cfg, "profile", "p", err), 0);
    cr_assert_eq(set(cfg, "credentials_file", "/x/y", err), 0);
    cr_assert_str_eq(cfg->profile, "p");
    cr_assert_str_eq(cfg->credentials_file, "/x/y");
    cr_assert_eq(set(cfg, "http2", "false", err), 0);
    cr_assert_eq(cfg->http2, CLIENT_HTTP2_OFF);
    cr_assert_eq(set(cfg, "http2", "prior-knowledge", err), 0);
    cr_assert_eq(cfg->http2, CLIENT_HTTP2_PRIOR_KNOWLEDGE);
    cr_assert_eq(set(cfg, "http2", "true", err), 0);
    cr_assert_eq(cfg->http2, CLIENT_HTTP2_ON);
    cr_assert_eq(set(cfg, "max_connections", "7", err), 0);
    cr_assert_eq(set(cfg, "request_timeout_ms", "1500", err), 0);
    cr_assert_eq(set(cfg, "connect_timeout_ms", "250", err), 0);
    cr_assert_eq(set(cfg, "max_retries", "0", err), 0);
    cr_assert_eq(set(cfg, "retry_base_ms", "10", err), 0);
    cr_assert_eq(set(cfg, "retry_max_ms", "100", err), 0);
    cr_assert_eq(cfg->max_connections, 7);
    cr_assert_eq(cfg->request_timeout_ms, 1500);
    cr_assert_eq(cfg->connect_timeout_ms, 250);
    cr_assert_eq(cfg->max_retries, 0);
    cr_assert_eq(cfg->retry_base_ms, 10);
    cr_assert_eq(cfg->retry_max_ms, 100);
    cr_assert_eq(set(cfg, "verify_tls", "false", err), 0);
    cr_assert_not(cfg->verify_tls);
    cr_assert_eq(set(cfg, "ca_file", "/etc/hostname", err), 0, "%s", err);
    cr_assert_eq(set(cfg, "user_agent_suffix", "my-app/1.2", err), 0);
    cr_assert_str_eq(cfg->user_agent_suffix, "my-app/1.2");
    eddy_config_free(cfg);
}

Test(config, set_rejects_bad_values_with_a_reason)
{
    eddy_config_t *cfg = eddy_config_new();
    char err[256];
    struct {
        const char *key, *value, *reason;
    } bad[] = {
        {"endpoint", "ftp://x", "must start with http:// or https://"},
        {"endpoint", "http://", "has no host"},
        {"endpoint", "http://h:0", "bad port"},
        {"endpoint", "http://h:70000", "bad port"},
        {"endpoint", "http://h:12ab", "bad port"},
        {"endpoint", "http://user@h", "user information"},
        {"endpoint", "http://h/?a=b", "query"},
        {"region", "", "not a region name"},
        {"region", "US EAST", "not a region name"},
        {"http2", "maybe", "\"true\", \"false\" or \"prior-knowledge\""},
        {"max_connections", "0", "from 1 to 1000"},
        {"max_connections", "12x", "whole number"},
        {"request_timeout_ms", "", "whole number"},
        {"max_retries", "-1", "from 0 to 100"},
        {"retry_max_ms", "99999999999999999999", "whole number"},
        {"verify_tls", "yes please", "\"true\" or \"false\""},
        {"ca_file", "/nonexistent/ca.pem", "cannot be read"},
        {"session_token", "a\r\nInjected: 1", "control characters"},
        {"access_key_id", "AKID/x", "without '/'"},
        {"no_such_key", "1", "unknown configuration key 'no_such_key'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_expect_eq(set(cfg, bad[i].key, bad[i].value, err), EDDY_ERR_INVALID, "%s=%s", bad[i].key, bad[i].value);
        cr_expect(strstr(err, bad[i].reason) != NULL, "%s=%s: '%s'", bad[i].key, bad[i].value, err);
    }
    cr_assert_eq(eddy_config_set(cfg, "region", NULL, err, sizeof err), EDDY_ERR_INVALID);
    cr_assert_eq(eddy_config_set(cfg, "region", "x", NULL, 0), 0, "err may be NULL");
    /* nothing was changed by the rejected values */
    cr_assert_str_eq(cfg->region, "x");
    cr_assert_null(cfg->endpoint);
    cr_assert_eq(cfg->max_connections, 24);
    eddy_config_free(cfg);
}

/* ---- endpoints ---- */

Test(endpoint, parsed_and_normalised)
{
    client_endpoint_t e;
    char err[256];
    cr_assert_eq(client_parse_endpoint("http://127.0.0.1:4567", &e, err, sizeof err), 0);
    cr_assert_not(e.https);
    cr_assert_str_eq(e.authority, "127.0.0.1:4567");
    cr_assert_str_eq(e.path, "/");
    cr_assert_str_eq(e.url, "http://127.0.0.1:4567/");
    cr_assert_str_eq(e.display, "http://127.0.0.1:4567");
    client_endpoint_dispose(&e);
    cr_assert_eq(client_parse_endpoint("HTTPS://kinesis.us-east-1.amazonaws.com/", &e, err, sizeof err), 0);
    cr_assert(e.https);
    cr_assert_str_eq(e.authority, "kinesis.us-east-1.amazonaws.com");
    cr_assert_str_eq(e.display, "https://kinesis.us-east-1.amazonaws.com");
    client_endpoint_dispose(&e);
    cr_assert_eq(client_parse_endpoint("http://[::1]:4567/prefix/", &e, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(e.authority, "[::1]:4567");
    cr_assert_str_eq(e.path, "/prefix/");
    cr_assert_str_eq(e.url, "http://[::1]:4567/prefix/");
    client_endpoint_dispose(&e);
    cr_assert_eq(client_parse_endpoint("http://[]:1", &e, err, sizeof err), EDDY_ERR_INVALID);
    cr_assert_eq(client_parse_endpoint("http://[::1", &e, err, sizeof err), EDDY_ERR_INVALID);
    cr_assert_eq(client_parse_endpoint("http://h x", &e, err, sizeof err), EDDY_ERR_INVALID);
}

/* ---- credentials ---- */

TestSuite(credentials, .init = clear_aws_env, .fini = cleanup_tmp_dirs);

static const char *credentials_file(void)
{
    static char path[128];
    snprintf(path, sizeof path, "%s/credentials", make_tmp_dir());
    write_file(path, "# the shared credentials file\r\n"
                     "[default]\r\n"
                     "aws_access_key_id = AKIDDEFAULT\r\n"
                     "aws_secret_access_key = default/secret+\r\n"
                     "\n"
                     "; another profile, with spaces and a token\n"
                     "[ work ]\n"
                     "  aws_access_key_id=AKIDWORK  \n"
                     "\taws_secret_access_key\t=\twork secret = with equals\n"
                     "aws_session_token = tok/en==\n"
                     "region = eu-west-1\n"
                     "[half]\n"
                     "aws_access_key_id = AKIDHALF\n"
                     "[empty]\n");
    return path;
}

static int resolve(eddy_config_t *cfg, client_credentials_t *out, char *err)
{
    err[0] = '\0';
    return client_resolve_credentials(cfg, out, err, 512);
}

Test(credentials, explicit_beats_environment_beats_file)
{
    const char *path = credentials_file();
    setenv("AWS_SHARED_CREDENTIALS_FILE", path, 1);
    setenv("AWS_ACCESS_KEY_ID", "AKIDENV", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
    eddy_config_t *cfg = eddy_config_new();
    char err[512];
    client_credentials_t c;

    cr_assert_eq(eddy_config_set(cfg, "access_key_id", "AKIDEXPLICIT", err, sizeof err), 0);
    cr_assert_eq(eddy_config_set(cfg, "secret_access_key", "explicit", err, sizeof err), 0);
    cr_assert_eq(resolve(cfg, &c, err), 0, "%s", err);
    cr_assert_str_eq(c.key_id, "AKIDEXPLICIT");
    cr_assert_str_eq(c.secret, "explicit");
    cr_assert_null(c.token);
    cr_assert_str_eq(c.source, "configuration");
    client_credentials_dispose(&c);

    eddy_config_set(cfg, "access_key_id", "", err, sizeof err);
    eddy_config_set(cfg, "secret_access_key", "", err, sizeof err);
    cr_assert_eq(resolve(cfg, &c, err), 0, "%s", err);
    cr_assert_str_eq(c.key_id, "AKIDENV");
    cr_assert_str_eq(c.source, "environment");
    client_credentials_dispose(&c);
    eddy_config_free(cfg);

    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    cfg = eddy_config_new();
    cr_assert_eq(resolve(cfg, &c, err), 0, "%s", err);
    cr_assert_str_eq(c.key_id, "AKIDDEFAULT");
    cr_assert_str_eq(c.secret, "default/secret+");
    cr_assert(strstr(c.source, "[default]") != NULL);
    client_credentials_dispose(&c);
    eddy_config_free(cfg);
}

Test(credentials, profiles_from_aws_profile_or_the_configuration)
{
    const char *path = credentials_file();
    setenv("AWS_SHARED_CREDENTIALS_FILE", path, 1);
    setenv("AWS_PROFILE", "work", 1);
    eddy_config_t *cfg = eddy_config_new();
    char err[512];
    client_credentials_t c;
    cr_assert_eq(resolve(cfg, &c, err), 0, "%s", err);
    cr_assert_str_eq(c.key_id, "AKIDWORK");
    cr_assert_str_eq(c.secret, "work secret = with equals");
    cr_assert_str_eq(c.token, "tok/en==");
    client_credentials_dispose(&c);
    cr_assert_eq(eddy_config_set(cfg, "profile", "default", err, sizeof err), 0);
    cr_assert_eq(resolve(cfg, &c, err), 0, "%s", err);
    cr_assert_str_eq(c.key_id, "AKIDDEFAULT");
    client_credentials_dispose(&c);
    eddy_config_free(cfg);
}

Test(credentials, the_default_file_is_under_home)
{
    const char *dir = make_tmp_dir();
    char aws[128], path[160];
    snprintf(aws, sizeof aws, "%s/.aws", dir);
    cr_assert_eq(mkdir(aws, 0700), 0);
    snprintf(path, sizeof path, "%s/credentials", aws);
    write_file(path, "[default]\naws_access_key_id=AKIDHOME\naws_secret_access_key=home\n");
    setenv("HOME", dir, 1);
    eddy_config_t *cfg = eddy_config_new();
    char err[512];
    client_credentials_t c;
    cr_assert_eq(resolve(cfg, &c, err), 0, "%s", err);
    cr_assert_str_eq(c.key_id, "AKIDHOME");
    client_credentials_dispose(&c);
    eddy_config_free(cfg);
}

Test(credentials, what_is_missing_is_said)
{
    const char *path = credentials_file();
    eddy_config_t *cfg = eddy_config_new();
    char err[512];
    client_credentials_t c;
    struct {
        const char *profile, *reason;
    } cases[] = {
        {"nobody", "no profile [nobody]"},
        {"half", "has no aws_secret_access_key"},
        {"empty", "has no aws_access_key_id"},
    };
    eddy_config_set(cfg, "credentials_file", path, err, sizeof err);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        eddy_config_set(cfg, "profile", cases[i].profile, err, sizeof err);
        cr_expect_eq(resolve(cfg, &c, err), EDDY_ERR_CREDENTIALS);
        cr_expect(strstr(err, cases[i].reason) != NULL, "%s", err);
        cr_expect(strstr(err, "no credentials") != NULL, "%s", err);
    }
    eddy_config_set(cfg, "credentials_file", "/nonexistent/credentials", err, sizeof err);
    cr_assert_eq(resolve(cfg, &c, err), EDDY_ERR_CREDENTIALS);
    cr_assert(strstr(err, "No such file") != NULL, "%s", err);

    /* half a pair, explicit or in the environment */
    eddy_config_set(cfg, "access_key_id", "AKID", err, sizeof err);
    cr_assert_eq(resolve(cfg, &c, err), EDDY_ERR_CREDENTIALS);
    cr_assert(strstr(err, "secret_access_key is missing") != NULL, "%s", err);
    eddy_config_free(cfg);
    setenv("AWS_SECRET_ACCESS_KEY", "s", 1);
    cfg = eddy_config_new();
    cr_assert_eq(resolve(cfg, &c, err), EDDY_ERR_CREDENTIALS);
    cr_assert(strstr(err, "AWS_SECRET_ACCESS_KEY is set in the environment but AWS_ACCESS_KEY_ID is not") != NULL,
              "%s", err);
    eddy_config_free(cfg);

    /* eddy_client_new says the same, frees the configuration and returns NULL */
    unsetenv("AWS_SECRET_ACCESS_KEY");
    cfg = eddy_config_new();
    eddy_config_set(cfg, "credentials_file", "/nonexistent/credentials", err, sizeof err);
    err[0] = '\0';
    cr_assert_null(eddy_client_new(cfg, err, sizeof err));
    cr_assert(strstr(err, "no credentials") != NULL, "%s", err);
}

/* ---- errors and retries ---- */

Test(errors, reply_types_and_messages)
{
    char type[64], msg[64];
    const char *b1 = "{\"__type\":\"ResourceNotFoundException\",\"message\":\"Stream s not found\"}";
    client_parse_error(b1, strlen(b1), NULL, type, sizeof type, msg, sizeof msg);
    cr_assert_str_eq(type, "ResourceNotFoundException");
    cr_assert_str_eq(msg, "Stream s not found");
    const char *b2 = "{\"__type\":\"com.amazonaws.kinesis.v20131202#ProvisionedThroughputExceededException\","
                     "\"Message\":\"Rate exceeded\"}";
    client_parse_error(b2, strlen(b2), NULL, type, sizeof type, msg, sizeof msg);
    cr_assert_str_eq(type, "ProvisionedThroughputExceededException");
    cr_assert_str_eq(msg, "Rate exceeded");
    const char *b3 = "<html>502 Bad Gateway</html>";
    client_parse_error(b3, strlen(b3), "UnrecognizedClientException:http://internal.amazon.com/coral/x/", type,
                       sizeof type, msg, sizeof msg);
    cr_assert_str_eq(type, "UnrecognizedClientException");
    cr_assert_str_eq(msg, "");
    client_parse_error("", 0, NULL, type, sizeof type, msg, sizeof msg);
    cr_assert_str_eq(type, "");
    const char *b4 = "{\"__type\":\"A\",\"message\":\"a message far longer than the eight bytes given\"}";
    client_parse_error(b4, strlen(b4), NULL, type, sizeof type, msg, 8);
    cr_assert_str_eq(msg, "a messa");
    const char *b5 = "{\"__type\":42,\"message\":null}";
    client_parse_error(b5, strlen(b5), NULL, type, sizeof type, msg, sizeof msg);
    cr_assert_str_eq(type, "");
    cr_assert_str_eq(msg, "");
}

Test(errors, retriable_from_the_kinesis_error_table_and_the_status)
{
    cr_assert(client_error_retriable(400, "ProvisionedThroughputExceededException"));
    cr_assert(client_error_retriable(400, "LimitExceededException"));
    cr_assert(client_error_retriable(400, "KMSThrottlingException"));
    cr_assert(client_error_retriable(500, "InternalFailure"));
    cr_assert(client_error_retriable(503, "ServiceUnavailable"));
    cr_assert_not(client_error_retriable(400, "ResourceNotFoundException"));
    cr_assert_not(client_error_retriable(400, "ValidationException"));
    cr_assert_not(client_error_retriable(403, "InvalidSignatureException"));
    cr_assert_not(client_error_retriable(400, "UnrecognizedClientException"));
    cr_assert_not(client_error_retriable(400, "SomethingNewException"));
    cr_assert(client_error_retriable(502, "SomethingNewException"), "5xx is retriable whatever the type");
    cr_assert(client_error_retriable(503, ""));
    cr_assert(client_error_retriable(429, ""));
    cr_assert_not(client_error_retriable(404, ""));
}

Test(errors, names_and_retriable_codes)
{
    cr_assert_str_eq(eddy_err_name(EDDY_OK), "EDDY_OK");
    cr_assert_str_eq(eddy_err_name(EDDY_ERR_TIMEOUT), "EDDY_ERR_TIMEOUT");
    cr_assert_str_eq(eddy_err_name(EDDY_ERR_TOO_LARGE), "EDDY_ERR_TOO_LARGE");
    cr_assert_str_eq(eddy_err_name(-1000), "EDDY_ERR_UNKNOWN");
    for (int e = EDDY_ERR_TOO_LARGE; e <= EDDY_OK; e++) {
        cr_assert(strncmp(eddy_err_name(e), "EDDY_", 5) == 0);
    }
    cr_assert(eddy_err_retriable(EDDY_ERR_TRANSPORT));
    cr_assert(eddy_err_retriable(EDDY_ERR_TIMEOUT));
    cr_assert(eddy_err_retriable(EDDY_ERR_WOULD_BLOCK));
    cr_assert_not(eddy_err_retriable(EDDY_ERR_INVALID));
    cr_assert_not(eddy_err_retriable(EDDY_ERR_NOMEM));
    cr_assert_not(eddy_err_retriable(EDDY_ERR_CREDENTIALS));
    cr_assert_not(eddy_err_retriable(EDDY_OK));
}

Test(errors, backoff_is_full_jitter_within_bounds)
{
    uint64_t rng = 0x9E3779B97F4A7C15ULL;
    for (int retry = 0; retry < 12; retry++) {
        int64_t cap = 25LL << retry;
        if (cap > 2000) {
            cap = 2000;
        }
        int64_t lo = cap, hi = 0;
        for (int i = 0; i < 4000; i++) {
            int64_t ms = client_backoff_ms(25, 2000, retry, &rng);
            cr_assert(ms >= 0 && ms <= cap, "retry %d: %lld not in [0, %lld]", retry, (long long)ms, (long long)cap);
            lo = ms < lo ? ms : lo;
            hi = ms > hi ? ms : hi;
        }
        /* the whole range is used: near 0 and near the cap */
        cr_assert(lo <= cap / 20 && hi >= cap - cap / 20, "retry %d: [%lld, %lld] of %lld", retry, (long long)lo,
                  (long long)hi, (long long)cap);
    }
    cr_assert_eq(client_backoff_ms(25, 2000, 1000, &rng) <= 2000, true, "huge retry counts do not overflow");
    cr_assert_eq(client_backoff_ms(5000, 100, 0, &rng) <= 100, true, "max caps base");
}

/* ---- end to end: the real eddy ---- */

typedef struct server {
    pid_t pid;
    char dir[64];
    char endpoint[128];     /* http://127.0.0.1:PORT */
    char tls_endpoint[128]; /* https://localhost:PORT, with --tls-cert */
} server_t;

static server_t servers[2];
static size_t nservers;

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Finds "eddy listening on SCHEME://HOST:PORT" in the log and copies the URL. */
static bool find_listening(const char *log, const char *scheme, char *out, size_t cap)
{
    char key[64];
    snprintf(key, sizeof key, "eddy listening on %s://", scheme);
    const char *at = strstr(log, key);
    if (at == NULL) {
        return false;
    }
    at += strlen("eddy listening on ");
    size_t n = strcspn(at, "\r\n");
    if (at[n] == '\0') {
        return false; /* the line is not complete yet */
    }
    snprintf(out, cap, "%.*s", (int)n, at);
    return true;
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return NULL;
    }
    static char text[65536];
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    return text;
}

/* Starts eddy on a free loopback port with a fresh data folder and extra arguments (NULL-terminated), and
 * waits (with a deadline) for its "listening" line(s) on stderr, which goes to a file in the folder. */
static server_t *server_start(const char *const *extra, bool tls)
{
    const char *bin = getenv("EDDY_BIN");
    cr_assert_not_null(bin, "EDDY_BIN must name the eddy binary");
    cr_assert(nservers < 2);
    server_t *s = &servers[nservers];
    memset(s, 0, sizeof *s);
    snprintf(s->dir, sizeof s->dir, "/tmp/eddy-client-e2e-XXXXXX");
    cr_assert_not_null(mkdtemp(s->dir));
    char data[128], log[128];
    snprintf(data, sizeof data, "%s/data", s->dir);
    snprintf(log, sizeof log, "%s/stderr.log", s->dir);
    const char *argv[32] = {bin, "serve", "--host", "127.0.0.1", "--port", "0", "--data", data,
                            "--state-delay-ms", "0"};
    size_t argc = 10;
    for (size_t i = 0; extra != NULL && extra[i] != NULL && argc < 31; i++) {
        argv[argc++] = extra[i];
    }
    argv[argc] = NULL;
    pid_t parent = getpid();
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* the server dies with the test, even when it crashes */
        if (getppid() != parent) {
            _exit(127);
        }
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int devnull = open("/dev/null", O_RDWR);
        if (fd < 0 || devnull < 0) {
            _exit(127);
        }
        dup2(devnull, 0);
        dup2(devnull, 1);
        dup2(fd, 2);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    s->pid = pid;
    nservers++;
    int64_t deadline = now_ms() + 15000;
    for (;;) {
        const char *text = read_all(log);
        if (text != NULL && find_listening(text, "http", s->endpoint, sizeof s->endpoint) &&
            (!tls || find_listening(text, "https", s->tls_endpoint, sizeof s->tls_endpoint))) {
            return s;
        }
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            s->pid = 0;
            cr_assert_fail("eddy exited before listening (status %d):\n%s", status, text ? text : "");
        }
        cr_assert(now_ms() < deadline, "eddy did not listen within 15 s:\n%s", text ? text : "");
        sleep_ms(5); /* polling the log, under the deadline above */
    }
}

static void stop_servers(void)
{
    for (size_t i = 0; i < nservers; i++) {
        server_t *s = &servers[i];
        if (s->pid > 0) {
            kill(s->pid, SIGTERM);
            int64_t deadline = now_ms() + 10000;
            while (waitpid(s->pid, NULL, WNOHANG) == 0) {
                if (now_ms() > deadline) {
                    kill(s->pid, SIGKILL);
                    waitpid(s->pid, NULL, 0);
                    break;
                }
                sleep_ms(5);
            }
            s->pid = 0;
        }
        remove_tree(s->dir);
    }
    nservers = 0;
    cleanup_tmp_dirs();
}

static void e2e_init(void)
{
    clear_aws_env();
    setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials", 1);
}

TestSuite(e2e, .init = e2e_init, .fini = stop_servers, .timeout = 120);

/* A client for endpoint with the test key and extra "key", "value" pairs (NULL-terminated). */
static eddy_client_t *client_for(const char *endpoint, const char *const *kv)
{
    eddy_config_t *cfg = eddy_config_new();
    cr_assert_not_null(cfg);
    char err[512];
    cr_assert_eq(eddy_config_set(cfg, "endpoint", endpoint, err, sizeof err), 0, "%s", err);
    cr_assert_eq(eddy_config_set(cfg, "access_key_id", KEY, err, sizeof err), 0);
    cr_assert_eq(eddy_config_set(cfg, "secret_access_key", SECRET, err, sizeof err), 0);
    for (size_t i = 0; kv != NULL && kv[i] != NULL; i += 2) {
        cr_assert_eq(eddy_config_set(cfg, kv[i], kv[i + 1], err, sizeof err), 0, "%s: %s", kv[i], err);
    }
    eddy_client_t *c = eddy_client_new(cfg, err, sizeof err);
    cr_assert_not_null(c, "%s", err);
    return c;
}

static eddy_response_t *call_ok(eddy_client_t *c, const char *op, const char *body)
{
    eddy_response_t *r;
    int rc = eddy_client_call(c, op, body, strlen(body), &r);
    cr_assert_eq(rc, EDDY_OK, "%s: %s %s (HTTP %d): %s", op, eddy_err_name(rc), r->error_type, r->http_status,
                 r->message);
    cr_assert_eq(r->err, EDDY_OK);
    cr_assert_eq(r->http_status, 200);
    cr_assert_str_eq(r->message, "");
    cr_assert_eq(r->body_len, strlen(r->body));
    return r;
}

static void create_stream(eddy_client_t *c, const char *name, int shards)
{
    char body[256];
    snprintf(body, sizeof body, "{\"StreamName\":\"%s\",\"ShardCount\":%d}", name, shards);
    eddy_response_free(call_ok(c, "CreateStream", body));
}

/* The basics over one connection setting: CreateStream, PutRecord, ListShards, an error. */
static void basic_operations(eddy_client_t *c)
{
    create_stream(c, "basics", 2);
    eddy_response_t *r = call_ok(c, "PutRecord", "{\"StreamName\":\"basics\",\"Data\":\"aGVsbG8=\",\"PartitionKey\":\"k\"}");
    cr_assert(strstr(r->body, "\"SequenceNumber\"") != NULL, "%s", r->body);
    cr_assert(strstr(r->body, "\"ShardId\"") != NULL, "%s", r->body);
    cr_assert_eq(r->attempts, 1);
    cr_assert_not(r->retriable);
    cr_assert(r->latency_us > 0);
    cr_assert(r->request_id[0] != '\0', "x-amzn-RequestId is read");
    eddy_response_free(r);
    r = call_ok(c, "ListShards", "{\"StreamName\":\"basics\"}");
    cr_assert(strstr(r->body, "shardId-000000000000") != NULL && strstr(r->body, "shardId-000000000001") != NULL,
              "%s", r->body);
    eddy_response_free(r);

    /* an AWS error: reported as such and not retried */
    int rc = eddy_client_call(c, "DescribeStream", "{\"StreamName\":\"missing\"}", 25, &r);
    cr_assert_eq(rc, EDDY_ERR_SERVICE);
    cr_assert_eq(r->err, EDDY_ERR_SERVICE);
    cr_assert_eq(r->http_status, 400);
    cr_assert_str_eq(r->error_type, "ResourceNotFoundException");
    cr_assert(strstr(r->message, "missing") != NULL, "%s", r->message);
    cr_assert_not(r->retriable);
    cr_assert_eq(r->attempts, 1);
    cr_assert(strstr(r->body, "ResourceNotFoundException") != NULL);
    eddy_response_free(r);
}

Test(e2e, operations_over_http1)
{
    server_t *s = server_start(NULL, false);
    eddy_client_t *c = client_for(s->endpoint, NULL);
    cr_assert_str_eq(eddy_client_endpoint(c), s->endpoint);
    basic_operations(c);
    eddy_client_free(c);
}

Test(e2e, operations_over_http2_prior_knowledge)
{
    server_t *s = server_start(NULL, false);
    const char *kv[] = {"http2", "prior-knowledge", NULL};
    eddy_client_t *c = client_for(s->endpoint, kv);
    basic_operations(c);
    eddy_client_free(c);
}

static void write_server_credentials(char *path, size_t cap)
{
    const char *dir = make_tmp_dir();
    snprintf(path, cap, "%s/keys.json", dir);
    write_file(path, "{\"keys\": ["
                     "{\"access_key_id\": \"" KEY "\", \"secret_access_key\": \"" SECRET "\"},"
                     "{\"access_key_id\": \"AKIDWITHTOKEN\", \"secret_access_key\": \"tok-secret\","
                     " \"session_token\": \"the/session+token\"}"
                     "]}");
}

static int call_with_key(const server_t *s, const char *key, const char *secret, const char *token,
                         const char *http2, eddy_response_t **r)
{
    const char *kv[] = {"access_key_id", key, "secret_access_key", secret, "session_token", token ? token : "",
                        "http2", http2, NULL};
    eddy_client_t *c = client_for(s->endpoint, kv);
    int rc = eddy_client_call(c, "ListStreams", "{}", 2, r);
    eddy_client_free(c);
    return rc;
}

Test(e2e, signatures_are_verified_by_eddy)
{
    char creds[128];
    write_server_credentials(creds, sizeof creds);
    const char *args[] = {"--credentials", creds, NULL};
    server_t *s = server_start(args, false);
    const char *modes[] = {"false", "prior-knowledge"};
    for (size_t m = 0; m < 2; m++) {
        eddy_response_t *r;
        cr_assert_eq(call_with_key(s, KEY, SECRET, NULL, modes[m], &r), EDDY_OK, "%s: %s", modes[m], r->message);
        eddy_response_free(r);
        cr_assert_eq(call_with_key(s, "AKIDWITHTOKEN", "tok-secret", "the/session+token", modes[m], &r), EDDY_OK,
                     "%s: %s", modes[m], r->message);
        eddy_response_free(r);

        cr_assert_eq(call_with_key(s, KEY, "the wrong secret", NULL, modes[m], &r), EDDY_ERR_SERVICE);
        cr_assert_str_eq(r->error_type, "InvalidSignatureException", "%s", r->message);
        cr_assert_eq(r->http_status, 403);
        cr_assert_not(r->retriable);
        cr_assert_eq(r->attempts, 1);
        eddy_response_free(r);

        cr_assert_eq(call_with_key(s, "AKIDNOBODY", SECRET, NULL, modes[m], &r), EDDY_ERR_SERVICE);
        cr_assert_str_eq(r->error_type, "UnrecognizedClientException", "%s", r->message);
        cr_assert_not(r->retriable);
        eddy_response_free(r);

        cr_assert_eq(call_with_key(s, "AKIDWITHTOKEN", "tok-secret", "another token", modes[m], &r),
                     EDDY_ERR_SERVICE);
        cr_assert_str_eq(r->error_type, "UnrecognizedClientException", "%s", r->message);
        eddy_response_free(r);
    }
}

/* ---- many calls at once ---- */

typedef struct tally {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int done;
    int calls[512];    /* how many times each call's callback ran */
    int err[512];
    int attempts[512];
    char error_type[512][64];
} tally_t;

typedef struct slot {
    tally_t *t;
    int index;
} slot_t;

static void on_done(void *arg, const eddy_response_t *r)
{
    slot_t *slot = arg;
    tally_t *t = slot->t;
    pthread_mutex_lock(&t->lock);
    t->calls[slot->index]++;
    t->err[slot->index] = r->err;
    t->attempts[slot->index] = r->attempts;
    snprintf(t->error_type[slot->index], sizeof t->error_type[0], "%s", r->error_type);
    t->done++;
    pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->lock);
}

/* Static storage: a failed assertion leaves nothing to free. */
static tally_t tallies[2];
static size_t ntallies;

static tally_t *tally_new(void)
{
    cr_assert(ntallies < 2);
    tally_t *t = &tallies[ntallies++];
    memset(t, 0, sizeof *t);
    pthread_mutex_init(&t->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&t->cond, &attr);
    pthread_condattr_destroy(&attr);
    return t;
}

/* Waits until n callbacks ran, or the deadline. */
static bool tally_wait(tally_t *t, int n, int timeout_ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&t->lock);
    int rc = 0;
    while (t->done < n && rc != ETIMEDOUT) {
        rc = pthread_cond_timedwait(&t->cond, &t->lock, &until);
    }
    bool ok = t->done >= n;
    pthread_mutex_unlock(&t->lock);
    return ok;
}

static size_t append_metrics(char *data, size_t size, size_t n, void *arg)
{
    char *text = arg;
    size_t have = strlen(text), len = size * n;
    if (have + len >= 65536) {
        return 0;
    }
    memcpy(text + have, data, len);
    text[have + len] = '\0';
    return len;
}

/* eddy's open client connections (the eddy_connections gauge of GET /metrics, summed over the loops),
 * this scrape's own connection included. */
static long server_connections(const server_t *s)
{
    static char text[65536];
    text[0] = '\0';
    char url[160];
    snprintf(url, sizeof url, "%s/metrics", s->endpoint);
    CURL *e = curl_easy_init();
    cr_assert_not_null(e);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, append_metrics);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, (void *)text);
    cr_assert_eq(curl_easy_perform(e), CURLE_OK);
    curl_easy_cleanup(e);
    long total = 0;
    for (const char *p = text; (p = strstr(p, "\neddy_connections{")) != NULL; p++) {
        const char *value = strchr(p, '}');
        cr_assert_not_null(value);
        total += strtol(value + 1, NULL, 10);
    }
    return total;
}

/* n PutRecords at once: each callback runs exactly once; afterwards eddy has at most expected_max
 * connections from the client. */
static void concurrent_puts(eddy_client_t *c, const server_t *s, int n, long expected_max)
{
    cr_assert(n <= 512);
    tally_t *t = tally_new();
    static slot_t slots[512];
    for (int i = 0; i < n; i++) {
        slots[i] = (slot_t){t, i};
        char body[160];
        int len = snprintf(body, sizeof body, "{\"StreamName\":\"many\",\"Data\":\"AAEC\",\"PartitionKey\":\"key-%d\"}", i);
        cr_assert_eq(eddy_client_call_async(c, "PutRecord", body, (size_t)len, on_done, &slots[i]), EDDY_OK);
    }
    cr_assert(tally_wait(t, n, 60000), "only %d of %d calls completed", t->done, n);
    for (int i = 0; i < n; i++) {
        cr_assert_eq(t->calls[i], 1, "call %d completed %d times", i, t->calls[i]);
        cr_assert_eq(t->err[i], EDDY_OK, "call %d: %s %s", i, eddy_err_name(t->err[i]), t->error_type[i]);
    }
    long connections = server_connections(s) - 1; /* the scrape's own is not the client's */
    cr_assert(connections >= 1 && connections <= expected_max, "%ld connections (at most %ld)", connections,
              expected_max);
    cr_assert_eq(t->done, n, "no callback ran twice");
}

Test(e2e, two_hundred_concurrent_calls_complete_once_each_http1)
{
    server_t *s = server_start(NULL, false);
    const char *kv[] = {"http2", "false", "max_connections", "8", NULL};
    eddy_client_t *c = client_for(s->endpoint, kv);
    create_stream(c, "many", 4);
    concurrent_puts(c, s, 200, 8); /* keep-alive connections, no more than max_connections */
    eddy_client_free(c);
}

Test(e2e, two_hundred_concurrent_calls_complete_once_each_http2)
{
    server_t *s = server_start(NULL, false);
    const char *kv[] = {"http2", "prior-knowledge", NULL};
    eddy_client_t *c = client_for(s->endpoint, kv);
    create_stream(c, "many", 4);
    /* within eddy's 100 concurrent streams per connection: all multiplexed on the one connection */
    concurrent_puts(c, s, 60, 1);
    /* beyond it, libcurl opens more connections (up to max_connections, 24) */
    concurrent_puts(c, s, 200, 24);
    eddy_client_free(c);
}

Test(e2e, free_drains_the_calls_in_flight)
{
    server_t *s = server_start(NULL, false);
    eddy_client_t *c = client_for(s->endpoint, NULL);
    enum { N = 50 };
    tally_t *t = tally_new();
    slot_t slots[N];
    for (int i = 0; i < N; i++) {
        slots[i] = (slot_t){t, i};
        cr_assert_eq(eddy_client_call_async(c, "ListStreams", NULL, 0, on_done, &slots[i]), EDDY_OK);
    }
    eddy_client_free(c); /* returns once every callback ran */
    cr_assert_eq(t->done, N);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(t->calls[i], 1);
        cr_assert_eq(t->err[i], EDDY_OK, "%s", eddy_err_name(t->err[i]));
    }
}

/* ---- retries ---- */

Test(e2e, a_throttled_call_is_retried)
{
    server_t *s = server_start(NULL, false); /* per-shard limits are on by default: 1 MiB/s of writes */
    const char *kv[] = {"retry_base_ms", "200", "retry_max_ms", "1500", "max_retries", "8", NULL};
    eddy_client_t *c = client_for(s->endpoint, kv);
    create_stream(c, "narrow", 1);
    /* 600 KiB records: the shard takes one, then throttles until its budget refills */
    size_t data_len = 600 * 1024 / 3 * 4, n = 0;
    char *body = malloc(data_len + 128);
    cr_assert_not_null(body);
    n += (size_t)sprintf(body, "{\"StreamName\":\"narrow\",\"PartitionKey\":\"k\",\"Data\":\"");
    memset(body + n, 'A', data_len);
    n += data_len;
    n += (size_t)sprintf(body + n, "\"}");
    enum { N = 4 };
    tally_t *t = tally_new();
    slot_t slots[N];
    for (int i = 0; i < N; i++) {
        slots[i] = (slot_t){t, i};
        cr_assert_eq(eddy_client_call_async(c, "PutRecord", body, n, on_done, &slots[i]), EDDY_OK);
    }
    free(body);
    cr_assert(tally_wait(t, N, 60000));
    int retried = 0, succeeded = 0;
    for (int i = 0; i < N; i++) {
        cr_assert_eq(t->calls[i], 1);
        retried += t->attempts[i] > 1;
        if (t->err[i] == EDDY_OK) {
            succeeded++;
        } else {
            /* retries exhausted: still throttled, after every attempt allowed */
            cr_assert_eq(t->err[i], EDDY_ERR_SERVICE);
            cr_assert_str_eq(t->error_type[i], "ProvisionedThroughputExceededException");
            cr_assert_eq(t->attempts[i], 9);
        }
    }
    cr_assert(retried >= 1, "no call was throttled and retried");
    cr_assert(succeeded >= 2, "retried calls got through once the budget refilled (%d of %d)", succeeded, N);
    eddy_client_free(c);
}

/* A loopback port that refuses connections (bound, then closed) or accepts but never answers (listening,
 * never accepted: the kernel completes the handshake). */
static int loopback_socket(bool listening, int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK), .sin_port = 0};
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    if (listening) {
        cr_assert_eq(listen(fd, 64), 0);
        return fd;
    }
    close(fd);
    return -1;
}

Test(e2e, connection_refused_is_a_transport_error_after_the_retries)
{
    int port;
    loopback_socket(false, &port);
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "http://127.0.0.1:%d", port);
    const char *kv[] = {"max_retries", "3", "retry_base_ms", "5", "retry_max_ms", "20", NULL};
    eddy_client_t *c = client_for(endpoint, kv);
    eddy_response_t *r;
    cr_assert_eq(eddy_client_call(c, "ListStreams", "{}", 2, &r), EDDY_ERR_TRANSPORT);
    cr_assert_eq(r->err, EDDY_ERR_TRANSPORT);
    cr_assert_eq(r->attempts, 4, "max_retries + 1 attempts");
    cr_assert(r->retriable);
    cr_assert_eq(r->http_status, 0);
    cr_assert_str_eq(r->body, "");
    cr_assert(r->message[0] != '\0');
    eddy_response_free(r);
    eddy_client_free(c);
}

Test(e2e, no_reply_is_a_timeout)
{
    int port;
    int fd = loopback_socket(true, &port);
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "http://127.0.0.1:%d", port);
    const char *kv[] = {"request_timeout_ms", "300", "max_retries", "1", "retry_base_ms", "1", NULL};
    eddy_client_t *c = client_for(endpoint, kv);
    int64_t start = now_ms();
    eddy_response_t *r;
    cr_assert_eq(eddy_client_call(c, "ListStreams", "{}", 2, &r), EDDY_ERR_TIMEOUT, "%s", r->message);
    int64_t took = now_ms() - start;
    cr_assert_eq(r->attempts, 2);
    cr_assert(r->retriable);
    cr_assert(r->latency_us >= 290 * 1000, "%lld us", (long long)r->latency_us);
    cr_assert(took >= 580 && took < 10000, "%lld ms for two 300 ms attempts", (long long)took);
    cr_assert(strstr(r->message, "300 ms") != NULL, "%s", r->message);
    eddy_response_free(r);
    eddy_client_free(c);
    close(fd);
}

/* ---- HTTPS ---- */

Test(e2e, https_with_alpn_and_certificate_verification)
{
    const char *bin = getenv("EDDY_BIN");
    cr_assert_not_null(bin);
    const char *dir = make_tmp_dir();
    char certs[128], cmd[512];
    snprintf(certs, sizeof certs, "%s/certs", dir);
    snprintf(cmd, sizeof cmd, "'%s' cert --out '%s' >/dev/null 2>&1", bin, certs);
    cr_assert_eq(system(cmd), 0, "eddy cert failed");
    char cert[160], key[160], ca[160];
    snprintf(cert, sizeof cert, "%s/server.pem", certs);
    snprintf(key, sizeof key, "%s/server-key.pem", certs);
    snprintf(ca, sizeof ca, "%s/ca.pem", certs);
    const char *args[] = {"--tls-cert", cert, "--tls-key", key, "--tls-port", "0", NULL};
    server_t *s = server_start(args, true);
    /* the certificate names localhost and 127.0.0.1 */
    const char *kv[] = {"ca_file", ca, NULL};
    eddy_client_t *c = client_for(s->tls_endpoint, kv);
    basic_operations(c);
    /* HTTP/2 by ALPN (the default for https:): concurrent calls share one connection */
    create_stream(c, "many", 4);
    concurrent_puts(c, s, 60, 1);
    eddy_client_free(c);

    /* without the CA: not trusted, and not retried */
    const char *untrusted[] = {"max_retries", "3", NULL};
    c = client_for(s->tls_endpoint, untrusted);
    eddy_response_t *r;
    cr_assert_eq(eddy_client_call(c, "ListStreams", "{}", 2, &r), EDDY_ERR_TRANSPORT);
    cr_assert_not(r->retriable);
    cr_assert_eq(r->attempts, 1);
    cr_assert(strstr(r->message, "TLS verification failed") != NULL, "%s", r->message);
    eddy_response_free(r);
    eddy_client_free(c);

    /* verification off */
    const char *off[] = {"verify_tls", "false", "http2", "false", NULL};
    c = client_for(s->tls_endpoint, off);
    eddy_response_free(call_ok(c, "ListStreams", "{}"));
    eddy_client_free(c);
}

/* ---- misuse ---- */

typedef struct nested {
    eddy_client_t *c;
    int sync_rc;
    tally_t *t;
} nested_t;

static void call_sync_from_callback(void *arg, const eddy_response_t *r)
{
    nested_t *n = arg;
    eddy_response_t *inner;
    n->sync_rc = eddy_client_call(n->c, "ListStreams", "{}", 2, &inner);
    eddy_response_free(inner);
    static slot_t slot;
    slot = (slot_t){n->t, 0};
    on_done(&slot, r);
}

Test(e2e, bad_arguments_and_a_sync_call_from_a_callback)
{
    server_t *s = server_start(NULL, false);
    eddy_client_t *c = client_for(s->endpoint, NULL);
    eddy_response_t *r;
    cr_assert_eq(eddy_client_call(c, "Bad Operation", "{}", 2, &r), EDDY_ERR_INVALID);
    cr_assert(r->message[0] != '\0');
    eddy_response_free(r);
    cr_assert_eq(eddy_client_call_async(c, "ListStreams", NULL, 5, on_done, NULL), EDDY_ERR_INVALID);
    cr_assert_eq(eddy_client_call_async(c, "ListStreams", "{}", 2, NULL, NULL), EDDY_ERR_INVALID);
    cr_assert_eq(eddy_client_call(c, "ListStreams", "{}", 2, NULL), EDDY_ERR_INVALID);
    /* an unknown operation reaches the server, which says so */
    cr_assert_eq(eddy_client_call(c, "NoSuchOperation", "{}", 2, &r), EDDY_ERR_SERVICE);
    cr_assert_str_eq(r->error_type, "UnknownOperationException", "%s", r->message);
    eddy_response_free(r);

    nested_t n = {c, 0, tally_new()};
    cr_assert_eq(eddy_client_call_async(c, "ListStreams", "{}", 2, call_sync_from_callback, &n), EDDY_OK);
    cr_assert(tally_wait(n.t, 1, 30000));
    cr_assert_eq(n.sync_rc, EDDY_ERR_INVALID);
    eddy_client_free(c);
}

/* ---- streaming calls (SubscribeToShard) ---- */

typedef struct subscription {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int events, records, paused;
    bool in_order, done;
    int done_err;
    char last_seq[130];
    char error_type[128];
} subscription_t;

static subscription_t subs[2];

/* Counts the records of each SubscribeToShardEvent (payload JSON) and pauses after every event: the test
 * thread resumes the stream, so every event crosses a pause. */
static int on_event(void *arg, const char *type, const char *payload, size_t len)
{
    subscription_t *s = arg;
    if (strcmp(type, "SubscribeToShardEvent") != 0) {
        return 0;
    }
    char *copy = strndup(payload, len);
    int n = 0;
    const char *p = copy;
    pthread_mutex_lock(&s->lock);
    while (copy != NULL && (p = strstr(p, "\"SequenceNumber\":\"")) != NULL) {
        p += strlen("\"SequenceNumber\":\"");
        const char *end = strchr(p, '"');
        char seq[130];
        snprintf(seq, sizeof seq, "%.*s", (int)(end - p), p);
        /* same length, so strcmp orders them */
        if (s->last_seq[0] != '\0' && strcmp(seq, s->last_seq) <= 0) {
            s->in_order = false;
        }
        snprintf(s->last_seq, sizeof s->last_seq, "%s", seq);
        n++;
    }
    free(copy);
    s->events++;
    s->records += n;
    s->paused++;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    return 1;
}

static void on_stream_done(void *arg, const eddy_response_t *r)
{
    subscription_t *s = arg;
    pthread_mutex_lock(&s->lock);
    s->done = true;
    s->done_err = r->err;
    snprintf(s->error_type, sizeof s->error_type, "%s", r->error_type);
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

/* Waits (deadline 30 s) until pred holds, resuming the stream whenever it paused. */
static bool stream_wait(subscription_t *s, eddy_stream_t *st, bool (*pred)(const subscription_t *, int), int arg)
{
    int64_t deadline = now_ms() + 30000;
    pthread_mutex_lock(&s->lock);
    while (!pred(s, arg) && now_ms() < deadline) {
        if (s->paused > 0) {
            s->paused = 0;
            pthread_mutex_unlock(&s->lock);
            eddy_stream_resume(st);
            pthread_mutex_lock(&s->lock);
            continue;
        }
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += 50 * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->cond, &s->lock, &until);
    }
    bool ok = pred(s, arg);
    pthread_mutex_unlock(&s->lock);
    return ok;
}

static bool has_records(const subscription_t *s, int n)
{
    return s->records >= n;
}

static bool is_done(const subscription_t *s, int unused)
{
    (void)unused;
    return s->done;
}

static void put_batch(eddy_client_t *c, const char *stream, int from, int n)
{
    char body[16384];
    int len = snprintf(body, sizeof body, "{\"StreamName\":\"%s\",\"Records\":[", stream);
    for (int i = 0; i < n; i++) {
        len += snprintf(body + len, sizeof body - (size_t)len, "%s{\"Data\":\"eA==\",\"PartitionKey\":\"k%d\"}",
                        i ? "," : "", from + i);
    }
    snprintf(body + len, sizeof body - (size_t)len, "]}");
    eddy_response_free(call_ok(c, "PutRecords", body));
}

static void subscribe_with_pauses(const char *const *kv, size_t index)
{
    server_t *s = server_start(NULL, false);
    eddy_client_t *c = client_for(s->endpoint, kv);
    create_stream(c, "sub", 1);
    for (int i = 0; i < 10; i++) {
        put_batch(c, "sub", i * 50, 50);
    }
    eddy_response_free(call_ok(c, "RegisterStreamConsumer",
                               "{\"StreamARN\":\"arn:aws:kinesis:us-east-1:000000000000:stream/sub\","
                               "\"ConsumerName\":\"c1\"}"));
    char arn_body[512];
    int64_t deadline = now_ms() + 30000;
    for (;;) {
        eddy_response_t *r = call_ok(c, "DescribeStreamConsumer",
                                     "{\"StreamARN\":\"arn:aws:kinesis:us-east-1:000000000000:stream/sub\","
                                     "\"ConsumerName\":\"c1\"}");
        bool active = strstr(r->body, "\"ACTIVE\"") != NULL;
        if (active) {
            const char *a = strstr(r->body, "\"ConsumerARN\":\"");
            cr_assert_not_null(a, "%s", r->body);
            a += strlen("\"ConsumerARN\":\"");
            snprintf(arn_body, sizeof arn_body,
                     "{\"ConsumerARN\":\"%.*s\",\"ShardId\":\"shardId-000000000000\","
                     "\"StartingPosition\":{\"Type\":\"TRIM_HORIZON\"}}",
                     (int)(strchr(a, '"') - a), a);
        }
        eddy_response_free(r);
        if (active) {
            break;
        }
        cr_assert(now_ms() < deadline, "the consumer never became ACTIVE");
        sleep_ms(20); /* polling the consumer's status with a deadline */
    }

    subscription_t *sub = &subs[index];
    memset(sub, 0, sizeof *sub);
    sub->in_order = true;
    pthread_mutex_init(&sub->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&sub->cond, &attr);
    pthread_condattr_destroy(&attr);
    eddy_stream_t *st = NULL;
    cr_assert_eq(eddy_client_stream_async(c, "SubscribeToShard", arn_body, strlen(arn_body), on_event,
                                          on_stream_done, sub, &st),
                 EDDY_OK);
    cr_assert_not_null(st);
    cr_assert(stream_wait(sub, st, has_records, 500), "500 records through paused events (got %d in %d events)",
              sub->records, sub->events);
    /* records put while subscribed arrive too */
    put_batch(c, "sub", 500, 20);
    cr_assert(stream_wait(sub, st, has_records, 520), "520 records (got %d)", sub->records);
    cr_assert_eq(sub->records, 520);
    cr_assert(sub->in_order);
    cr_assert_not(sub->done);
    eddy_stream_cancel(st);
    cr_assert(stream_wait(sub, st, is_done, 0));
    cr_assert_eq(sub->done_err, EDDY_ERR_CANCELLED);
    eddy_stream_free(st);

    /* an error reply (no such consumer) ends the call with the service's error and no event */
    subscription_t *bad = &subs[1 - index];
    memset(bad, 0, sizeof *bad);
    pthread_mutex_init(&bad->lock, NULL);
    pthread_cond_init(&bad->cond, NULL);
    const char *missing = "{\"ConsumerARN\":\"arn:aws:kinesis:us-east-1:000000000000:stream/sub/consumer/nope:1\","
                          "\"ShardId\":\"shardId-000000000000\",\"StartingPosition\":{\"Type\":\"LATEST\"}}";
    cr_assert_eq(eddy_client_stream_async(c, "SubscribeToShard", missing, strlen(missing), on_event, on_stream_done,
                                          bad, &st),
                 EDDY_OK);
    pthread_mutex_lock(&bad->lock);
    while (!bad->done) {
        pthread_cond_wait(&bad->cond, &bad->lock);
    }
    pthread_mutex_unlock(&bad->lock);
    cr_assert_eq(bad->done_err, EDDY_ERR_SERVICE);
    cr_assert_str_eq(bad->error_type, "ResourceNotFoundException");
    cr_assert_eq(bad->events, 0);
    eddy_stream_free(st);
    eddy_client_free(c);
}

Test(e2e, subscribe_to_shard_paused_and_resumed_http1)
{
    subscribe_with_pauses(NULL, 0);
}

Test(e2e, subscribe_to_shard_paused_and_resumed_http2)
{
    static const char *const kv[] = {"http2", "prior-knowledge", NULL};
    subscribe_with_pauses(kv, 1);
}

Test(config, service_dynamodb_takes_its_endpoint)
{
    setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1111", 1);
    setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:2222", 1);
    eddy_config_t *cfg = eddy_config_new();
    char err[256];
    cr_assert_eq(eddy_config_set(cfg, "service", "dynamodb", err, sizeof err), 0);
    cr_assert_str_eq(cfg->endpoint, "http://127.0.0.1:2222");
    cr_assert_eq(cfg->service, CLIENT_SERVICE_DYNAMODB);
    cr_assert_eq(eddy_config_set(cfg, "service", "s3", err, sizeof err), EDDY_ERR_INVALID);
    eddy_config_free(cfg);
    /* an explicit endpoint wins over the environment */
    cfg = eddy_config_new();
    cr_assert_eq(eddy_config_set(cfg, "endpoint", "http://127.0.0.1:3333", err, sizeof err), 0);
    cr_assert_eq(eddy_config_set(cfg, "service", "dynamodb", err, sizeof err), 0);
    cr_assert_str_eq(cfg->endpoint, "http://127.0.0.1:3333");
    eddy_config_free(cfg);
    unsetenv("AWS_ENDPOINT_URL_DYNAMODB");
    unsetenv("AWS_ENDPOINT_URL");
}

Test(e2e, a_borrowed_body_is_sent_as_is)
{
    server_t *s = server_start(NULL, false);
    eddy_client_t *c = client_for(s->endpoint, NULL);
    static char body[] = "{\"StreamName\":\"borrowed\",\"ShardCount\":1}";
    tally_t *t = tally_new();
    static slot_t slot;
    slot = (slot_t){t, 0};
    cr_assert_eq(eddy_client_call_async_borrowed(c, "CreateStream", body, strlen(body), on_done, &slot), EDDY_OK);
    cr_assert(tally_wait(t, 1, 30000));
    cr_assert_eq(t->err[0], EDDY_OK, "%s", t->error_type[0]);
    eddy_response_free(call_ok(c, "DescribeStreamSummary", "{\"StreamName\":\"borrowed\"}"));
    eddy_client_free(c);
}
