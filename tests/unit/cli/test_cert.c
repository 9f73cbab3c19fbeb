/*
 * Unit tests for cli/cert (`eddy cert`): runs cert_main in a temporary folder and checks the files with
 * OpenSSL: the server certificate verifies against the CA for the hosts in its subjectAltName, the
 * extensions and validity periods clients require, file modes, no leftover temporary files, reuse of an
 * existing CA, refusal to overwrite without --force, and the usage and error exit statuses.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cli/cert.h"

static char dir[64];
static char out_text[16384], err_text[16384];

static void make_dir(void)
{
    snprintf(dir, sizeof dir, "/tmp/eddy-test-cert-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void remove_dir(void)
{
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(cert, .init = make_dir, .fini = remove_dir);

static void read_back(FILE *f, char *out, size_t size)
{
    fflush(f);
    rewind(f);
    size_t n = fread(out, 1, size - 1, f);
    out[n] = '\0';
    fclose(f);
}

/* Runs cert_main(argc, argv); stdout and stderr go to out_text and err_text. */
static int run_argv(int argc, char **argv)
{
    FILE *out = tmpfile(), *err = tmpfile();
    cr_assert(out != NULL && err != NULL);
    fflush(stdout);
    fflush(stderr);
    int saved_out = dup(1), saved_err = dup(2);
    dup2(fileno(out), 1);
    dup2(fileno(err), 2);
    int status = cert_main(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(saved_out, 1);
    dup2(saved_err, 2);
    close(saved_out);
    close(saved_err);
    read_back(out, out_text, sizeof out_text);
    read_back(err, err_text, sizeof err_text);
    return status;
}

/* Runs cert_main with "cert" and the NULL-terminated arguments (see run_argv). */
static int run(const char *first, ...)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = "cert";
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a != NULL; a = va_arg(ap, const char *)) {
        cr_assert_lt(argc, 31);
        argv[argc++] = (char *)a;
    }
    va_end(ap);
    argv[argc] = NULL;
    return run_argv(argc, argv);
}

static const char *path(const char *name)
{
    static char p[4][256];
    static int next;
    char *s = p[next++ % 4];
    snprintf(s, sizeof p[0], "%s/%s", dir, name);
    return s;
}

static X509 *load_cert(const char *name)
{
    FILE *f = fopen(path(name), "r");
    cr_assert_not_null(f, "%s", name);
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    cr_assert_not_null(x, "%s holds no certificate", name);
    /* server.pem holds the leaf only. */
    X509 *more = PEM_read_X509(f, NULL, NULL, NULL);
    cr_assert_null(more, "%s holds more than one certificate", name);
    ERR_clear_error();
    fclose(f);
    return x;
}

static EVP_PKEY *load_key(const char *name)
{
    FILE *f = fopen(path(name), "r");
    cr_assert_not_null(f, "%s", name);
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    cr_assert_not_null(k, "%s holds no key", name);
    fclose(f);
    return k;
}

/* Verifies leaf against a store holding only ca, as a TLS client would for host (a name or an address). */
static int verify(X509 *ca, X509 *leaf, const char *host)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    cr_assert(store != NULL && ctx != NULL);
    cr_assert_eq(X509_STORE_add_cert(store, ca), 1);
    cr_assert_eq(X509_STORE_CTX_init(ctx, store, leaf, NULL), 1);
    X509_VERIFY_PARAM *param = X509_STORE_CTX_get0_param(ctx);
    cr_assert_eq(X509_VERIFY_PARAM_set_purpose(param, X509_PURPOSE_SSL_SERVER), 1);
    if (host != NULL) {
        if (X509_VERIFY_PARAM_set1_ip_asc(param, host) != 1) {
            cr_assert_eq(X509_VERIFY_PARAM_set1_host(param, host, 0), 1);
        }
    }
    int result = X509_verify_cert(ctx) == 1 ? X509_V_OK : X509_STORE_CTX_get_error(ctx);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    ERR_clear_error();
    return result;
}

static int validity_days(X509 *x, int *seconds)
{
    int days = 0, secs = 0;
    cr_assert_eq(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(x), X509_get0_notAfter(x)), 1);
    *seconds = secs;
    return days;
}

static mode_t mode_of(const char *name)
{
    struct stat st;
    cr_assert_eq(stat(path(name), &st), 0, "%s missing", name);
    return st.st_mode & 07777;
}

static bool exists(const char *name)
{
    struct stat st;
    return lstat(path(name), &st) == 0;
}

/* The names in the folder, sorted and joined with spaces. */
static const char *listing(void)
{
    static char text[1024];
    struct dirent **names = NULL;
    int n = scandir(dir, &names, NULL, alphasort);
    cr_assert_geq(n, 0);
    text[0] = '\0';
    for (int i = 0; i < n; i++) {
        if (strcmp(names[i]->d_name, ".") != 0 && strcmp(names[i]->d_name, "..") != 0) {
            strncat(text, names[i]->d_name, sizeof text - strlen(text) - 2);
            strcat(text, " ");
        }
        free(names[i]);
    }
    free(names);
    return text;
}

static char *slurp(const char *name)
{
    FILE *f = fopen(path(name), "rb");
    cr_assert_not_null(f, "%s", name);
    static char buf[4][8192];
    static int next;
    char *b = buf[next++ % 4];
    size_t n = fread(b, 1, sizeof buf[0] - 1, f);
    b[n] = '\0';
    fclose(f);
    return b;
}

/* The subjectAltName entries as "DNS:x" / "IP:y", comma-separated. */
static void san_text(X509 *x, char *out, size_t size)
{
    GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    cr_assert_not_null(names);
    out[0] = '\0';
    for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
        GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
        int type = 0;
        ASN1_STRING *v = GENERAL_NAME_get0_value(gn, &type);
        char item[300];
        if (type == GEN_DNS) {
            snprintf(item, sizeof item, "DNS:%s", (const char *)ASN1_STRING_get0_data(v));
        } else {
            cr_assert_eq(type, GEN_IPADD);
            const unsigned char *b = ASN1_STRING_get0_data(v);
            if (ASN1_STRING_length(v) == 4) {
                snprintf(item, sizeof item, "IP:%u.%u.%u.%u", b[0], b[1], b[2], b[3]);
            } else {
                cr_assert_eq(ASN1_STRING_length(v), 16);
                int n = snprintf(item, sizeof item, "IP6:");
                for (int k = 0; k < 16; k++) {
                    n += snprintf(item + n, sizeof item - (size_t)n, "%02x", b[k]);
                }
            }
        }
        if (i > 0) {
            strncat(out, ",", size - strlen(out) - 1);
        }
        strncat(out, item, size - strlen(out) - 1);
    }
    GENERAL_NAMES_free(names);
}

Test(cert, writes_four_files_with_modes_and_no_leftovers)
{
    umask(077); /* certificates must still be 0644: the mode is set explicitly */
    cr_assert_eq(run("--out", dir, NULL), 0, "stderr: %s", err_text);
    cr_assert_str_eq(listing(), "ca-key.pem ca.pem server-key.pem server.pem ");
    cr_assert_eq(mode_of("ca-key.pem"), 0600);
    cr_assert_eq(mode_of("server-key.pem"), 0600);
    cr_assert_eq(mode_of("ca.pem"), 0644);
    cr_assert_eq(mode_of("server.pem"), 0644);
    /* What was written and what to set. */
    cr_assert_not_null(strstr(out_text, "ca.pem"));
    cr_assert_not_null(strstr(out_text, "server-key.pem"));
    cr_assert_not_null(strstr(out_text, "export AWS_CA_BUNDLE=/"), "%s", out_text);
    cr_assert_not_null(strstr(out_text, "export NODE_EXTRA_CA_CERTS=/"));
    cr_assert_not_null(strstr(out_text, "--ca-bundle"));
    cr_assert_str_eq(err_text, "");
}

Test(cert, creates_missing_parent_folders)
{
    char out[128];
    snprintf(out, sizeof out, "%s/a/b", dir);
    cr_assert_eq(run("--out", out, NULL), 0, "stderr: %s", err_text);
    cr_assert(exists("a/b/server.pem"));
}

Test(cert, server_certificate_verifies_for_the_default_hosts)
{
    cr_assert_eq(run("--out", dir, NULL), 0, "stderr: %s", err_text);
    X509 *ca = load_cert("ca.pem"), *leaf = load_cert("server.pem");
    cr_assert_eq(verify(ca, leaf, NULL), X509_V_OK);
    cr_assert_eq(verify(ca, leaf, "localhost"), X509_V_OK);
    cr_assert_eq(verify(ca, leaf, "LOCALHOST"), X509_V_OK);
    cr_assert_eq(verify(ca, leaf, "127.0.0.1"), X509_V_OK);
    cr_assert_eq(verify(ca, leaf, "::1"), X509_V_OK);
    cr_assert_eq(verify(ca, leaf, "example.com"), X509_V_ERR_HOSTNAME_MISMATCH);
    cr_assert_eq(verify(ca, leaf, "127.0.0.2"), X509_V_ERR_IP_ADDRESS_MISMATCH);

    char sans[1024];
    san_text(leaf, sans, sizeof sans);
    cr_assert_str_eq(sans, "DNS:localhost,IP:127.0.0.1,IP6:00000000000000000000000000000001");

    /* A CA that is not this one does not verify it. */
    X509 *other_ca = NULL;
    {
        char other[128];
        snprintf(other, sizeof other, "%s/other", dir);
        cr_assert_eq(run("--out", other, NULL), 0);
        other_ca = load_cert("other/ca.pem");
    }
    cr_assert_neq(verify(other_ca, leaf, "localhost"), X509_V_OK);
    X509_free(other_ca);
    X509_free(ca);
    X509_free(leaf);
}

Test(cert, keys_are_p256_and_match_their_certificates)
{
    cr_assert_eq(run("--out", dir, NULL), 0, "stderr: %s", err_text);
    const char *pairs[2][2] = {{"ca.pem", "ca-key.pem"}, {"server.pem", "server-key.pem"}};
    for (int i = 0; i < 2; i++) {
        X509 *x = load_cert(pairs[i][0]);
        EVP_PKEY *k = load_key(pairs[i][1]);
        cr_assert_eq(X509_check_private_key(x, k), 1, "%s", pairs[i][1]);
        cr_assert(EVP_PKEY_is_a(k, "EC"));
        char curve[64] = "";
        size_t len = 0;
        cr_assert_eq(EVP_PKEY_get_utf8_string_param(k, "group", curve, sizeof curve, &len), 1);
        cr_assert_str_eq(curve, "prime256v1");
        cr_assert_eq(X509_get_signature_nid(x), NID_ecdsa_with_SHA256);
        cr_assert_eq(X509_get_version(x), X509_VERSION_3);
        EVP_PKEY_free(k);
        X509_free(x);
    }
    /* Keys are PKCS#8 PEM, readable by any TLS stack. */
    cr_assert_not_null(strstr(slurp("server-key.pem"), "-----BEGIN PRIVATE KEY-----"));
}

Test(cert, ca_is_a_ca_valid_ten_years)
{
    cr_assert_eq(run("--out", dir, NULL), 0, "stderr: %s", err_text);
    X509 *ca = load_cert("ca.pem");
    uint32_t flags = X509_get_extension_flags(ca);
    cr_assert(flags & EXFLAG_BCONS);
    cr_assert(flags & EXFLAG_CA, "basicConstraints CA:TRUE");
    cr_assert(flags & EXFLAG_SS, "self-signed");
    cr_assert(X509_get_key_usage(ca) & KU_KEY_CERT_SIGN);
    cr_assert_eq(X509_check_ca(ca), 1);
    int crit = -1;
    BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(ca, NID_basic_constraints, &crit, NULL);
    cr_assert_not_null(bc);
    cr_assert_eq(crit, 1, "basicConstraints is critical");
    cr_assert(bc->ca);
    BASIC_CONSTRAINTS_free(bc);
    ASN1_BIT_STRING *ku = X509_get_ext_d2i(ca, NID_key_usage, &crit, NULL);
    cr_assert_not_null(ku);
    cr_assert_eq(crit, 1, "keyUsage is critical");
    ASN1_BIT_STRING_free(ku);
    cr_assert_not_null(X509_get0_subject_key_id(ca));
    int secs = 0;
    cr_assert_eq(validity_days(ca, &secs), 3650);
    cr_assert_eq(secs, 0);
    /* Started a little in the past (clock skew), not in the future. */
    cr_assert_lt(X509_cmp_current_time(X509_get0_notBefore(ca)), 0);
    X509_free(ca);
}

Test(cert, server_is_a_tls_server_leaf_valid_825_days)
{
    cr_assert_eq(run("--out", dir, NULL), 0, "stderr: %s", err_text);
    X509 *leaf = load_cert("server.pem"), *ca = load_cert("ca.pem");
    uint32_t flags = X509_get_extension_flags(leaf);
    cr_assert(flags & EXFLAG_BCONS, "basicConstraints present");
    cr_assert(!(flags & EXFLAG_CA), "CA:FALSE");
    cr_assert_eq(X509_check_ca(leaf), 0);
    cr_assert(flags & EXFLAG_XKUSAGE);
    cr_assert(X509_get_extended_key_usage(leaf) & XKU_SSL_SERVER);
    cr_assert(X509_get_key_usage(leaf) & KU_DIGITAL_SIGNATURE);
    cr_assert(!(X509_get_key_usage(leaf) & KU_KEY_CERT_SIGN));
    cr_assert_eq(X509_check_purpose(leaf, X509_PURPOSE_SSL_SERVER, 0), 1);
    cr_assert_eq(X509_check_issued(ca, leaf), X509_V_OK);
    const ASN1_OCTET_STRING *akid = X509_get0_authority_key_id(leaf);
    cr_assert_not_null(akid);
    cr_assert_eq(ASN1_OCTET_STRING_cmp(akid, X509_get0_subject_key_id(ca)), 0);
    int secs = 0;
    int days = validity_days(leaf, &secs);
    cr_assert(days == 825 && secs == 0, "%d days %d s", days, secs);
    X509_free(leaf);
    X509_free(ca);
}

Test(cert, days_sets_the_server_validity)
{
    char slash[128];
    snprintf(slash, sizeof slash, "%s//", dir);
    cr_assert_eq(run("--out", slash, "--days", "30", NULL), 0, "stderr: %s", err_text);
    cr_assert_null(strstr(out_text, "//"), "trailing slashes are dropped: %s", out_text);
    X509 *leaf = load_cert("server.pem");
    int secs = 0;
    cr_assert_eq(validity_days(leaf, &secs), 30);
    cr_assert_eq(secs, 0);
    X509_free(leaf);
    X509 *ca = load_cert("ca.pem");
    cr_assert_eq(validity_days(ca, &secs), 3650, "--days is for the server only");
    X509_free(ca);
}

Test(cert, bad_days_are_usage_errors)
{
    const char *bad[] = {"0", "826", "-5", "abc", "12x", "", "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(run("--out", dir, "--days", bad[i], NULL), 2, "--days '%s'", bad[i]);
        cr_assert_not_null(strstr(err_text, "--days"), "%s", err_text);
    }
    cr_assert_str_eq(listing(), "", "nothing written on a usage error");
}

Test(cert, hosts_add_dns_names_and_ip_addresses)
{
    cr_assert_eq(run("--out", dir, "--host", "Eddy.Example.test", "--host", "10.1.2.3", "--host", "[fe80::1]",
                     "--host", "2001:db8::7", "--host", "localhost", "--host", "127.0.0.1", "--host", "[::1]",
                     "--host", "*.apps.test", "--host", "eddy", NULL),
                 0, "stderr: %s", err_text);
    X509 *ca = load_cert("ca.pem"), *leaf = load_cert("server.pem");
    char sans[2048];
    san_text(leaf, sans, sizeof sans);
    cr_assert_str_eq(sans, "DNS:localhost,IP:127.0.0.1,IP6:00000000000000000000000000000001,"
                           "DNS:eddy.example.test,IP:10.1.2.3,IP6:fe800000000000000000000000000001,"
                           "IP6:20010db8000000000000000000000007,DNS:*.apps.test,DNS:eddy");
    const char *ok[] = {"eddy.example.test", "10.1.2.3",    "fe80::1", "2001:db8::7",
                        "localhost",         "a.apps.test", "eddy"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        cr_assert_eq(verify(ca, leaf, ok[i]), X509_V_OK, "%s", ok[i]);
    }
    cr_assert_neq(verify(ca, leaf, "a.b.apps.test"), X509_V_OK, "a wildcard covers one label");
    cr_assert_neq(verify(ca, leaf, "10.1.2.4"), X509_V_OK);
    /* The first --host names the subject. */
    char cn[256] = "";
    X509_NAME_get_text_by_NID(X509_get_subject_name(leaf), NID_commonName, cn, sizeof cn);
    cr_assert_str_eq(cn, "eddy.example.test");
    cr_assert_not_null(strstr(out_text, "eddy.example.test"), "the hosts are printed");
    X509_free(ca);
    X509_free(leaf);
}

Test(cert, bad_hosts_are_usage_errors)
{
    const char *bad[] = {"",
                         "bad host",
                         "a,b",
                         "127.1",
                         "10.0.0.256",
                         "1.2.3.4.5",
                         "-x.test",
                         "x-.test",
                         "a..b",
                         ".a",
                         "a.",
                         "*",
                         "*.test",
                         "a.*.test",
                         "[127.0.0.1]",
                         "[not-an-ip]",
                         "fe80::1%eth0",
                         "https://x",
                         "under_score",
                         "caf\xc3\xa9.test"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(run("--out", dir, "--host", bad[i], NULL), 2, "--host '%s'", bad[i]);
        cr_assert_not_null(strstr(err_text, "--host"), "%s", err_text);
    }
    char longlabel[80];
    memset(longlabel, 'a', 64);
    strcpy(longlabel + 64, ".test");
    cr_assert_eq(run("--out", dir, "--host", longlabel, NULL), 2, "a label has 63 characters at most");
    cr_assert_str_eq(listing(), "");
}

Test(cert, refuses_to_overwrite_without_force)
{
    cr_assert_eq(run("--out", dir, NULL), 0, "stderr: %s", err_text);
    char before[2][8192];
    strcpy(before[0], slurp("server.pem"));
    strcpy(before[1], slurp("server-key.pem"));
    cr_assert_eq(run("--out", dir, NULL), 1);
    cr_assert_not_null(strstr(err_text, "server.pem already exists"), "%s", err_text);
    cr_assert_not_null(strstr(err_text, "--force"), "%s", err_text);
    cr_assert_str_eq(slurp("server.pem"), before[0]);
    cr_assert_str_eq(slurp("server-key.pem"), before[1]);
    cr_assert_str_eq(listing(), "ca-key.pem ca.pem server-key.pem server.pem ");
}

Test(cert, force_reuses_the_ca_and_replaces_the_server_files)
{
    cr_assert_eq(run("--out", dir, NULL), 0, "stderr: %s", err_text);
    char ca_before[8192], ca_key_before[8192], server_before[8192], key_before[8192];
    strcpy(ca_before, slurp("ca.pem"));
    strcpy(ca_key_before, slurp("ca-key.pem"));
    strcpy(server_before, slurp("server.pem"));
    strcpy(key_before, slurp("server-key.pem"));
    X509 *old_ca = load_cert("ca.pem");

    cr_assert_eq(run("--out", dir, "--force", "--host", "new.test", NULL), 0, "stderr: %s", err_text);
    cr_assert_not_null(strstr(out_text, "Reused"), "%s", out_text);
    cr_assert_str_eq(slurp("ca.pem"), ca_before);
    cr_assert_str_eq(slurp("ca-key.pem"), ca_key_before);
    cr_assert_str_neq(slurp("server.pem"), server_before);
    cr_assert_str_neq(slurp("server-key.pem"), key_before, "a new server key each time");
    cr_assert_eq(mode_of("server-key.pem"), 0600);
    cr_assert_eq(mode_of("server.pem"), 0644);
    cr_assert_str_eq(listing(), "ca-key.pem ca.pem server-key.pem server.pem ");

    /* Clients that trusted the old ca.pem trust the new certificate. */
    X509 *leaf = load_cert("server.pem");
    cr_assert_eq(verify(old_ca, leaf, "new.test"), X509_V_OK);
    cr_assert_eq(verify(old_ca, leaf, "localhost"), X509_V_OK);
    X509_free(leaf);
    X509_free(old_ca);
}

Test(cert, an_existing_ca_issues_without_force_when_server_files_are_absent)
{
    cr_assert_eq(run("--out", dir, NULL), 0, "stderr: %s", err_text);
    char ca_before[8192];
    strcpy(ca_before, slurp("ca.pem"));
    cr_assert_eq(unlink(path("server.pem")), 0);
    cr_assert_eq(unlink(path("server-key.pem")), 0);
    cr_assert_eq(run("--out", dir, NULL), 0, "stderr: %s", err_text);
    cr_assert_str_eq(slurp("ca.pem"), ca_before);
    X509 *ca = load_cert("ca.pem"), *leaf = load_cert("server.pem");
    cr_assert_eq(verify(ca, leaf, "localhost"), X509_V_OK);
    X509_free(ca);
    X509_free(leaf);
}

Test(cert, a_half_present_ca_is_never_replaced)
{
    cr_assert_eq(run("--out", dir, NULL), 0, "stderr: %s", err_text);
    char ca_before[8192];
    strcpy(ca_before, slurp("ca.pem"));
    cr_assert_eq(unlink(path("ca-key.pem")), 0);
    cr_assert_eq(run("--out", dir, "--force", NULL), 1);
    cr_assert_not_null(strstr(err_text, "ca-key.pem does not"), "%s", err_text);
    cr_assert_str_eq(slurp("ca.pem"), ca_before);
    cr_assert_str_eq(listing(), "ca.pem server-key.pem server.pem ");
}

Test(cert, a_broken_ca_is_an_error_and_changes_nothing)
{
    cr_assert_eq(run("--out", dir, NULL), 0, "stderr: %s", err_text);
    /* The key of another CA. */
    char other[128];
    snprintf(other, sizeof other, "%s/other", dir);
    cr_assert_eq(run("--out", other, NULL), 0);
    cr_assert_eq(rename(path("other/ca-key.pem"), path("ca-key.pem")), 0);
    char server_before[8192];
    strcpy(server_before, slurp("server.pem"));
    cr_assert_eq(run("--out", dir, "--force", NULL), 1);
    cr_assert_not_null(strstr(err_text, "is not the key of"), "%s", err_text);
    cr_assert_str_eq(slurp("server.pem"), server_before);

    /* Not PEM at all. */
    FILE *f = fopen(path("ca.pem"), "w");
    fputs("garbage\n", f);
    fclose(f);
    cr_assert_eq(run("--out", dir, "--force", NULL), 1);
    cr_assert_not_null(strstr(err_text, "not a PEM certificate"), "%s", err_text);
    cr_assert_str_eq(slurp("server.pem"), server_before);

    /* A leaf certificate is not a CA. */
    cr_assert_eq(rename(path("other/server.pem"), path("ca.pem")), 0);
    cr_assert_eq(rename(path("other/server-key.pem"), path("ca-key.pem")), 0);
    cr_assert_eq(run("--out", dir, "--force", NULL), 1);
    cr_assert_not_null(strstr(err_text, "not a CA certificate"), "%s", err_text);
    cr_assert_str_eq(slurp("server.pem"), server_before);
    cr_assert_str_eq(listing(), "ca-key.pem ca.pem other server-key.pem server.pem ");
}

/* Writes ca.pem and ca-key.pem: a CA of the user's own, RSA 2048, valid from `from` to `to` days from now. */
static void write_own_ca(long from, long to)
{
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();
    cr_assert(key != NULL && x != NULL && name != NULL);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"My Own CA", -1, -1, 0);
    X509_set_version(x, X509_VERSION_3);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 42);
    X509_time_adj_ex(X509_getm_notBefore(x), (int)from, 0, NULL);
    X509_time_adj_ex(X509_getm_notAfter(x), (int)to, 0, NULL);
    X509_set_subject_name(x, name);
    X509_set_issuer_name(x, name);
    X509_set_pubkey(x, key);
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    X509_EXTENSION *bc = X509V3_EXT_nconf_nid(NULL, &ctx, NID_basic_constraints, "critical,CA:TRUE");
    cr_assert_not_null(bc);
    X509_add_ext(x, bc, -1);
    X509_EXTENSION_free(bc);
    cr_assert_gt(X509_sign(x, key, EVP_sha256()), 0);
    FILE *f = fopen(path("ca.pem"), "w");
    cr_assert_eq(PEM_write_X509(f, x), 1);
    fclose(f);
    f = fopen(path("ca-key.pem"), "w");
    cr_assert_eq(PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
    X509_NAME_free(name);
    X509_free(x);
    EVP_PKEY_free(key);
}

Test(cert, a_ca_of_ones_own_issues_and_the_server_never_outlives_it)
{
    write_own_ca(-1, 10);
    char ca_before[8192];
    strcpy(ca_before, slurp("ca.pem"));
    cr_assert_eq(run("--out", dir, "--days", "30", NULL), 0, "stderr: %s", err_text);
    cr_assert_str_eq(slurp("ca.pem"), ca_before);
    cr_assert_not_null(strstr(out_text, "(when the CA expires)"), "%s", out_text);
    X509 *ca = load_cert("ca.pem"), *leaf = load_cert("server.pem");
    cr_assert_eq(verify(ca, leaf, "localhost"), X509_V_OK);
    cr_assert_eq(ASN1_TIME_compare(X509_get0_notAfter(leaf), X509_get0_notAfter(ca)), 0);
    cr_assert_eq(X509_get_signature_nid(leaf), NID_sha256WithRSAEncryption);
    X509_free(ca);
    X509_free(leaf);
}

Test(cert, an_expired_ca_is_an_error)
{
    write_own_ca(-20, -1);
    cr_assert_eq(run("--out", dir, NULL), 1);
    cr_assert_not_null(strstr(err_text, "expired"), "%s", err_text);
    cr_assert_str_eq(listing(), "ca-key.pem ca.pem ");
}

Test(cert, an_encrypted_ca_key_is_reported_not_prompted_for)
{
    cr_assert_eq(run("--out", dir, NULL), 0, "stderr: %s", err_text);
    EVP_PKEY *k = load_key("ca-key.pem");
    FILE *f = fopen(path("ca-key.pem"), "w");
    cr_assert_eq(PEM_write_PKCS8PrivateKey(f, k, EVP_aes_256_cbc(), "secret", 6, NULL, NULL), 1);
    fclose(f);
    EVP_PKEY_free(k);
    cr_assert_eq(unlink(path("server.pem")), 0);
    cr_assert_eq(unlink(path("server-key.pem")), 0);
    cr_assert_eq(run("--out", dir, NULL), 1);
    cr_assert_not_null(strstr(err_text, "encrypted"), "%s", err_text);
    cr_assert(!exists("server.pem"));
}

Test(cert, a_server_file_that_is_not_a_file_is_refused_before_any_change)
{
    cr_assert_eq(mkdir(path("server.pem"), 0755), 0);
    cr_assert_eq(run("--out", dir, "--force", NULL), 1);
    cr_assert_not_null(strstr(err_text, "not a file"), "%s", err_text);
    cr_assert_str_eq(listing(), "server.pem ", "no CA, no temporary files");
}

Test(cert, out_must_be_a_folder)
{
    FILE *f = fopen(path("file"), "w");
    fclose(f);
    cr_assert_eq(run("--out", path("file"), NULL), 1);
    cr_assert_not_null(strstr(err_text, "not a folder"), "%s", err_text);
    cr_assert_eq(run("--out", path("file/sub"), NULL), 1);
    cr_assert_not_null(strstr(err_text, "cannot create the folder"), "%s", err_text);
}

Test(cert, an_unwritable_folder_is_an_error_and_leaves_nothing)
{
    if (geteuid() == 0) {
        remove_dir(); /* .fini does not run after a skip */
        cr_skip_test("root can write anywhere");
    }
    cr_assert_eq(chmod(dir, 0500), 0);
    cr_assert_eq(run("--out", dir, NULL), 1);
    cr_assert_not_null(strstr(err_text, "cannot create a file"), "%s", err_text);
    chmod(dir, 0700);
    cr_assert_str_eq(listing(), "");
}

Test(cert, default_folder_is_eddy_certs_in_the_working_directory)
{
    cr_assert_eq(chdir(dir), 0);
    cr_assert_eq(run(NULL), 0, "stderr: %s", err_text);
    cr_assert(exists("eddy-certs/ca.pem"));
    cr_assert(exists("eddy-certs/server.pem"));
    /* The environment lines name the absolute path. */
    char expect[256];
    snprintf(expect, sizeof expect, "AWS_CA_BUNDLE=%s/eddy-certs/ca.pem", dir);
    cr_assert_not_null(strstr(out_text, expect), "%s", out_text);
}

Test(cert, odd_paths_are_quoted_for_the_shell)
{
    char out[128];
    snprintf(out, sizeof out, "%s/it's here", dir);
    cr_assert_eq(run("--out", out, NULL), 0, "stderr: %s", err_text);
    char expect[256];
    snprintf(expect, sizeof expect, "NODE_EXTRA_CA_CERTS='%s/it'\\''s here/ca.pem'", dir);
    cr_assert_not_null(strstr(out_text, expect), "%s", out_text);
}

Test(cert, usage)
{
    cr_assert_eq(run("--help", NULL), 0);
    cr_assert_not_null(strstr(out_text, "usage: eddy cert"));
    cr_assert_not_null(strstr(out_text, "--host NAME"));
    cr_assert_eq(run("--bogus", NULL), 2);
    cr_assert_not_null(strstr(err_text, "unknown option '--bogus'"), "%s", err_text);
    cr_assert_eq(run("-x", NULL), 2);
    cr_assert_not_null(strstr(err_text, "unknown option '-x'"), "%s", err_text);
    cr_assert_eq(run("--out", NULL), 2);
    cr_assert_not_null(strstr(err_text, "--out needs a value"), "%s", err_text);
    cr_assert_eq(run("--out", "", NULL), 2);
    cr_assert_eq(run("--out", dir, "extra", NULL), 2);
    cr_assert_not_null(strstr(err_text, "unexpected argument 'extra'"), "%s", err_text);
    cr_assert_eq(run("--force=yes", NULL), 2);
    cr_assert_not_null(strstr(err_text, "--force=yes takes no value"), "%s", err_text);
    cr_assert_str_eq(listing(), "");
}

Test(cert, too_many_hosts_is_a_usage_error)
{
    static char names[70][16];
    char *argv[200];
    int argc = 0;
    argv[argc++] = "cert";
    argv[argc++] = "--out";
    argv[argc++] = dir;
    for (int i = 0; i < 70; i++) {
        snprintf(names[i], sizeof names[i], "h%d.test", i);
        argv[argc++] = "--host";
        argv[argc++] = names[i];
    }
    argv[argc] = NULL;
    cr_assert_eq(run_argv(argc, argv), 2);
    cr_assert_not_null(strstr(err_text, "too many --host"), "%s", err_text);
    cr_assert_str_eq(listing(), "");
}
