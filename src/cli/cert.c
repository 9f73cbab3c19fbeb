/*
 * cert: `eddy cert` (see cert.h): a local certificate authority and a server certificate it signs.
 *
 * Keys are ECDSA P-256 (for the CA and the server): every TLS client eddy serves (OpenSSL, Node.js, Python,
 * Java, Go, browsers, the AWS SDKs) accepts it, a key takes about a millisecond to make (RSA 2048: tens to
 * hundreds of milliseconds), and it gives 128-bit security with small keys and handshakes.
 * Signatures are ECDSA with SHA-256.
 *
 * The certificates (what clients and Apple's and browsers' rules check):
 *   CA      subject O=eddy development CA, OU=user@host, CN=eddy local CA <random id>; valid 10 years;
 *           basicConstraints critical CA:TRUE, pathlen:0; keyUsage critical keyCertSign, cRLSign;
 *           subjectKeyIdentifier.
 *   server  a fresh key each run; valid --days (at most 825 days between notBefore and notAfter, and never
 *           beyond the CA); basicConstraints critical CA:FALSE; keyUsage critical digitalSignature;
 *           extendedKeyUsage serverAuth; subjectAltName: localhost, 127.0.0.1, ::1 and each --host;
 *           subject and authority key identifiers.
 * Both start an hour in the past so that a client whose clock is a little behind accepts them at once;
 * serial numbers are 16 random bytes (126 random bits, always positive and 16 bytes long).
 *
 * Order of work, so that a failure leaves the folder as it was:
 *   1. parse the options (usage errors exit 2 before anything is touched);
 *   2. look at the folder: a CA there (ca.pem + ca-key.pem) is loaded and checked and then reused, so that
 *      clients that trust it keep working; the CA is never overwritten; existing server files need --force;
 *   3. make keys and certificates in memory, as PEM;
 *   4. write each file to a temporary file in the folder (its final mode set with fchmod, so the umask
 *      does not matter; keys are never readable by others, even briefly) and fsync it;
 *   5. rename them into place, CA first; files that must not exist are renamed with RENAME_NOREPLACE, so
 *      a file that appeared since step 2 is not clobbered; then fsync the folder. If a rename fails, files
 *      this run created are removed again; a server file already replaced under --force stays replaced.
 */
#include "cli/cert.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "common/fsutil.h"

enum {
    CA_DAYS = 3650,
    SERVER_DAYS_MAX = 825, /* Apple's limit for TLS server certificates (browsers' is lower today) */
    BACKDATE_SECONDS = 3600,
    MAX_HOSTS = 64,
    ERR_LEN = 1024,
    NAME_MAX_LEN = 64, /* upper bound of CN, O and OU (RFC 5280 ub-common-name etc.) */
};

#define DEFAULT_OUT_DIR "./eddy-certs"

/* One subjectAltName entry. */
typedef struct {
    bool is_ip;
    unsigned char ip[16];
    int ip_len;     /* 4 or 16 when is_ip */
    char text[256]; /* DNS name in lower case, or the address in canonical form */
} san_t;

typedef struct {
    char out_dir[PATH_MAX]; /* without trailing slashes */
    int days;
    bool force;
    int n_hosts;
    int first_user_host; /* index of the first --host that was not a default, or -1 */
    san_t hosts[MAX_HOSTS];
} cert_opts_t;

/* The files, in the order they are renamed into place (a CA certificate never appears without its key). */
enum { F_CA_KEY, F_CA, F_SERVER_KEY, F_SERVER, F_COUNT };

static const struct {
    const char *name;
    mode_t mode;
    const char *what;
} FILES[F_COUNT] = {
    {"ca-key.pem", 0600, "CA private key: keep it private, it can issue certificates your clients trust"},
    {"ca.pem", 0644, "CA certificate: the file clients trust"},
    {"server-key.pem", 0600, "server private key"},
    {"server.pem", 0644, "server certificate (signed by the CA; the leaf only)"},
};

typedef struct {
    char path[PATH_MAX];
    char tmp[PATH_MAX]; /* the temporary file while it exists, else "" */
    BIO *pem;           /* the content; NULL when this run does not write the file */
    bool existed;
    bool installed;
} out_file_t;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: eddy cert [options]\n\n"
            "Creates a local certificate authority (CA) and a server certificate signed by it, so that\n"
            "clients can verify eddy's TLS by trusting the CA. A CA already in the folder is reused, so\n"
            "clients that trust it keep working when the server certificate is renewed.\n\n"
            "options:\n"
            "  --out DIR     folder for the files, created if missing (default " DEFAULT_OUT_DIR ")\n"
            "  --host NAME   a host name or IP address the server certificate is valid for, besides\n"
            "                localhost, 127.0.0.1 and ::1; repeat for more (IPv6 may be in brackets)\n"
            "  --days N      validity of the server certificate in days, 1 to %d (default %d, the most\n"
            "                Apple platforms accept)\n"
            "  --force       replace an existing server.pem and server-key.pem (the CA is never replaced)\n"
            "  --help        print this help\n\n"
            "files in DIR:\n"
            "  ca.pem          the CA certificate (mode 0644, valid 10 years): give it to clients\n"
            "  ca-key.pem      the CA's private key (0600): keep it private\n"
            "  server.pem      the server certificate (0644), the leaf only\n"
            "  server-key.pem  the server's private key (0600)\n\n"
            "Keys are ECDSA P-256. To start over with a new CA, delete ca.pem and ca-key.pem (clients must\n"
            "then trust the new ca.pem). A CA of your own can be used by putting its ca.pem and ca-key.pem\n"
            "(unencrypted) in DIR.\n",
            SERVER_DAYS_MAX, SERVER_DAYS_MAX);
}

static int fail(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Records the message in err (ERR_LEN bytes) and returns -1. */
static int fail(char *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, ERR_LEN, fmt, ap);
    va_end(ap);
    return -1;
}

/* Like fail, with OpenSSL's reason for the most recent error appended; clears OpenSSL's error queue. */
static int ssl_fail(char *err, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    char reason[256] = "unknown error";
    if (e != 0) {
        ERR_error_string_n(e, reason, sizeof reason);
    }
    ERR_clear_error();
    return fail(err, "%s: %s", what, reason);
}

/* ---- options ---- */

static bool is_ascii_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/*
 * A DNS name as certificates allow it: letters, digits and hyphens in labels of 1 to 63 characters, not
 * starting or ending with a hyphen, 253 characters at most; "*." may open it (a wildcard for one label)
 * when two labels follow. A name whose last label is all digits is refused: it is a mistyped address
 * ("127.1", "10.0.0.256"), not a name.
 */
static bool valid_dns_name(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > 253) {
        return false;
    }
    const char *p = name;
    bool wildcard = strncmp(p, "*.", 2) == 0;
    if (wildcard) {
        p += 2;
    }
    int labels = 0;
    bool last_numeric = false;
    for (;;) {
        const char *start = p;
        bool numeric = true;
        while (*p != '\0' && *p != '.') {
            if (!is_ascii_alnum(*p) && *p != '-') {
                return false;
            }
            if (*p < '0' || *p > '9') {
                numeric = false;
            }
            p++;
        }
        size_t n = (size_t)(p - start);
        if (n == 0 || n > 63 || start[0] == '-' || p[-1] == '-') {
            return false;
        }
        labels++;
        last_numeric = numeric;
        if (*p == '\0') {
            break;
        }
        p++;
    }
    return !last_numeric && (!wildcard || labels >= 2);
}

/* Parses a --host value: an IPv4 or IPv6 address (IPv6 optionally in brackets) or a DNS name. */
static bool parse_host(const char *arg, san_t *out)
{
    char s[256];
    size_t len = strlen(arg);
    bool bracketed = len >= 2 && arg[0] == '[' && arg[len - 1] == ']';
    if (len == 0 || len >= sizeof s) {
        return false;
    }
    if (bracketed) {
        memcpy(s, arg + 1, len - 2);
        s[len - 2] = '\0';
    } else {
        memcpy(s, arg, len + 1);
    }
    memset(out, 0, sizeof *out);
    if (!bracketed && inet_pton(AF_INET, s, out->ip) == 1) {
        out->is_ip = true;
        out->ip_len = 4;
    } else if (inet_pton(AF_INET6, s, out->ip) == 1) {
        out->is_ip = true;
        out->ip_len = 16;
    }
    if (out->is_ip) {
        return inet_ntop(out->ip_len == 4 ? AF_INET : AF_INET6, out->ip, out->text, sizeof out->text) != NULL;
    }
    if (bracketed || !valid_dns_name(s)) {
        return false;
    }
    for (size_t i = 0; i <= len; i++) {
        out->text[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] - 'A' + 'a') : s[i];
    }
    return true;
}

/* Adds a host unless it is already there; returns false when the list is full. */
static bool add_host(cert_opts_t *opts, const san_t *h, bool user_given)
{
    for (int i = 0; i < opts->n_hosts; i++) {
        const san_t *o = &opts->hosts[i];
        if (o->is_ip == h->is_ip && strcmp(o->text, h->text) == 0) {
            return true;
        }
    }
    if (opts->n_hosts == MAX_HOSTS) {
        return false;
    }
    if (user_given && opts->first_user_host < 0) {
        opts->first_user_host = opts->n_hosts;
    }
    opts->hosts[opts->n_hosts++] = *h;
    return true;
}

enum { OPT_OUT = 1000, OPT_HOST, OPT_DAYS, OPT_FORCE, OPT_HELP };

/* clang-format off */
static const struct option cert_options[] = {
    {"out", required_argument, NULL, OPT_OUT},
    {"host", required_argument, NULL, OPT_HOST},
    {"days", required_argument, NULL, OPT_DAYS},
    {"force", no_argument, NULL, OPT_FORCE},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};
/* clang-format on */

/* Returns -1 to go on, or the exit status (0 after --help, 2 after a usage error, printed). */
static int parse_args(int argc, char **argv, cert_opts_t *opts)
{
    memset(opts, 0, sizeof *opts);
    snprintf(opts->out_dir, sizeof opts->out_dir, "%s", DEFAULT_OUT_DIR);
    opts->days = SERVER_DAYS_MAX;
    opts->first_user_host = -1;
    static const char *const defaults[] = {"localhost", "127.0.0.1", "::1"};
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++) {
        san_t h;
        parse_host(defaults[i], &h);
        add_host(opts, &h, false);
    }

    optind = 0; /* glibc: start over, even if getopt ran before in this process */
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, "", cert_options, NULL)) != -1) {
        const char *arg = optarg;
        switch (opt) {
        case OPT_OUT: {
            size_t len = strlen(arg);
            while (len > 1 && arg[len - 1] == '/') {
                len--;
            }
            if (len == 0 || len >= sizeof opts->out_dir) {
                fprintf(stderr, "eddy cert: --out needs a folder%s\n",
                        len == 0 ? "" : " (this name is too long)");
                return 2;
            }
            memcpy(opts->out_dir, arg, len);
            opts->out_dir[len] = '\0';
            break;
        }
        case OPT_HOST: {
            san_t h;
            if (!parse_host(arg, &h)) {
                fprintf(stderr,
                        "eddy cert: --host '%s' is not an IP address or a host name (letters, digits, "
                        "hyphens and dots; '*.' may open it)\n",
                        arg);
                return 2;
            }
            if (!add_host(opts, &h, true)) {
                fprintf(stderr, "eddy cert: too many --host (at most %d names in all)\n", MAX_HOSTS);
                return 2;
            }
            break;
        }
        case OPT_DAYS: {
            char *end = NULL;
            errno = 0;
            long v = strtol(arg, &end, 10);
            if (errno != 0 || end == arg || *end != '\0' || v < 1 || v > SERVER_DAYS_MAX) {
                fprintf(stderr, "eddy cert: --days must be a number from 1 to %d\n", SERVER_DAYS_MAX);
                return 2;
            }
            opts->days = (int)v;
            break;
        }
        case OPT_FORCE:
            opts->force = true;
            break;
        case OPT_HELP:
            usage(stdout);
            return 0;
        default: {
            const char *bad = argv[optind - 1];
            char short_opt[3] = {'-', (char)optopt, '\0'};
            if (optopt > 0 && optopt < 128) {
                bad = short_opt; /* an unknown short option; optind may still point at its word */
            }
            int has_arg = -1;
            for (const struct option *o = cert_options; o->name != NULL; o++) {
                if (o->val == optopt) {
                    has_arg = o->has_arg;
                }
            }
            if (has_arg == required_argument) {
                fprintf(stderr, "eddy cert: %s needs a value\n", bad);
            } else if (has_arg == no_argument) {
                fprintf(stderr, "eddy cert: %s takes no value\n", bad);
            } else {
                fprintf(stderr, "eddy cert: unknown option '%s'\n", bad);
            }
            fprintf(stderr, "eddy cert: see 'eddy cert --help'\n");
            return 2;
        }
        }
    }
    if (optind < argc) {
        fprintf(stderr, "eddy cert: unexpected argument '%s'\n", argv[optind]);
        fprintf(stderr, "eddy cert: see 'eddy cert --help'\n");
        return 2;
    }
    return -1;
}

/* ---- certificates ---- */

/* Never prompts: a key with a passphrase is reported as unreadable instead. */
static int no_passphrase(char *buf, int size, int rwflag, void *userdata)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)userdata;
    return -1;
}

static void format_date(const ASN1_TIME *t, char *out, size_t size)
{
    struct tm tm;
    if (ASN1_TIME_to_tm(t, &tm) != 1 || strftime(out, size, "%Y-%m-%d", &tm) == 0) {
        snprintf(out, size, "(unknown date)");
    }
}

/* Loads and checks the CA in cert_path and key_path; on success *ca and *key are the caller's. */
static int load_ca(const char *cert_path, const char *key_path, X509 **ca_out, EVP_PKEY **key_out, char *err)
{
    int rc = -1;
    X509 *ca = NULL;
    EVP_PKEY *key = NULL;
    BIO *in = BIO_new_file(cert_path, "r");
    if (in == NULL) {
        int e = errno;
        ERR_clear_error();
        fail(err, "cannot read %s: %s", cert_path, strerror(e));
        goto out;
    }
    ca = PEM_read_bio_X509(in, NULL, no_passphrase, NULL);
    if (ca == NULL) {
        char what[PATH_MAX + 64];
        snprintf(what, sizeof what, "%s is not a PEM certificate", cert_path);
        ssl_fail(err, what);
        goto out;
    }
    BIO_free(in);
    in = BIO_new_file(key_path, "r");
    if (in == NULL) {
        int e = errno;
        ERR_clear_error();
        fail(err, "cannot read %s: %s", key_path, strerror(e));
        goto out;
    }
    key = PEM_read_bio_PrivateKey(in, NULL, no_passphrase, NULL);
    if (key == NULL) {
        char what[PATH_MAX + 64];
        snprintf(what, sizeof what, "cannot load the CA key in %s (an encrypted key cannot be used)",
                 key_path);
        ssl_fail(err, what);
        goto out;
    }
    if (X509_check_private_key(ca, key) != 1) {
        ERR_clear_error();
        fail(err, "%s is not the key of the certificate in %s", key_path, cert_path);
        goto out;
    }
    if (X509_check_ca(ca) != 1) {
        fail(err,
             "%s is not a CA certificate (it needs basicConstraints CA:TRUE and, if it has a key usage, "
             "keyCertSign); delete ca.pem and ca-key.pem to create a new CA",
             cert_path);
        goto out;
    }
    if (X509_cmp_current_time(X509_get0_notAfter(ca)) <= 0) {
        char date[32];
        format_date(X509_get0_notAfter(ca), date, sizeof date);
        fail(err,
             "the CA in %s expired on %s; delete ca.pem and ca-key.pem to create a new one (clients "
             "must then trust the new ca.pem)",
             cert_path, date);
        goto out;
    }
    *ca_out = ca;
    *key_out = key;
    ca = NULL;
    key = NULL;
    rc = 0;
out:
    BIO_free(in);
    X509_free(ca);
    EVP_PKEY_free(key);
    return rc;
}

static EVP_PKEY *new_key(void)
{
    return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
}

/* A positive random serial number of at most 16 bytes (RFC 5280 allows 20). */
static bool set_random_serial(X509 *x)
{
    unsigned char bytes[16];
    if (RAND_bytes(bytes, sizeof bytes) != 1) {
        return false;
    }
    bytes[0] &= 0x7f;
    bytes[0] |= 0x40; /* never zero, always 16 bytes */
    BIGNUM *bn = BN_bin2bn(bytes, sizeof bytes, NULL);
    bool ok = bn != NULL && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
    BN_free(bn);
    return ok;
}

/* user@host for the OU of the subjects, ASCII only and at most NAME_MAX_LEN characters. */
static void owner_name(char *out, size_t size)
{
    const struct passwd *pw = getpwuid(geteuid());
    char host[256] = "localhost";
    if (gethostname(host, sizeof host) != 0) {
        snprintf(host, sizeof host, "localhost");
    }
    host[sizeof host - 1] = '\0';
    snprintf(out, size, "%s@%s", pw != NULL && pw->pw_name != NULL ? pw->pw_name : "user", host);
    for (char *p = out; *p != '\0'; p++) {
        if (*p < 0x20 || *p > 0x7e) {
            *p = '?';
        }
    }
    if (strlen(out) > NAME_MAX_LEN) {
        out[NAME_MAX_LEN] = '\0';
    }
}

static bool name_add(X509_NAME *name, const char *field, const char *value)
{
    return X509_NAME_add_entry_by_txt(name, field, MBSTRING_ASC, (const unsigned char *)value, -1, -1, 0) ==
           1;
}

/* Adds an extension written in OpenSSL's configuration syntax; issuer is x itself for a self-signed one. */
static bool add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, &ctx, nid, value);
    if (ext == NULL) {
        return false;
    }
    bool ok = X509_add_ext(x, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    return ok;
}

/* A v3 certificate for key with a random serial, valid from an hour ago for days days. */
static X509 *new_cert(EVP_PKEY *key, const X509_NAME *subject, const X509_NAME *issuer, int days)
{
    X509 *x = X509_new();
    if (x == NULL || X509_set_version(x, X509_VERSION_3) != 1 || !set_random_serial(x) ||
        X509_gmtime_adj(X509_getm_notBefore(x), -BACKDATE_SECONDS) == NULL ||
        X509_time_adj_ex(X509_getm_notAfter(x), days, -BACKDATE_SECONDS, NULL) == NULL ||
        X509_set_subject_name(x, subject) != 1 || X509_set_issuer_name(x, issuer) != 1 ||
        X509_set_pubkey(x, key) != 1) {
        X509_free(x);
        return NULL;
    }
    return x;
}

static const EVP_MD *sign_digest(EVP_PKEY *key)
{
    /* Ed25519 and Ed448 (a CA brought by the user) sign without a separate digest. */
    return EVP_PKEY_is_a(key, "ED25519") || EVP_PKEY_is_a(key, "ED448") ? NULL : EVP_sha256();
}

static int make_ca(X509 **ca_out, EVP_PKEY **key_out, char *err)
{
    int rc = -1;
    X509 *ca = NULL;
    X509_NAME *name = X509_NAME_new();
    EVP_PKEY *key = new_key();
    unsigned char id[4];
    char owner[NAME_MAX_LEN + 1], cn[NAME_MAX_LEN + 1];
    if (name == NULL || key == NULL || RAND_bytes(id, sizeof id) != 1) {
        ssl_fail(err, "cannot make the CA key");
        goto out;
    }
    owner_name(owner, sizeof owner);
    snprintf(cn, sizeof cn, "eddy local CA %02x%02x%02x%02x", id[0], id[1], id[2], id[3]);
    if (!name_add(name, "O", "eddy development CA") || !name_add(name, "OU", owner) ||
        !name_add(name, "CN", cn) || (ca = new_cert(key, name, name, CA_DAYS)) == NULL ||
        !add_ext(ca, ca, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") ||
        !add_ext(ca, ca, NID_key_usage, "critical,keyCertSign,cRLSign") ||
        !add_ext(ca, ca, NID_subject_key_identifier, "hash") || X509_sign(ca, key, sign_digest(key)) == 0) {
        ssl_fail(err, "cannot make the CA certificate");
        goto out;
    }
    *ca_out = ca;
    *key_out = key;
    ca = NULL;
    key = NULL;
    rc = 0;
out:
    X509_NAME_free(name);
    X509_free(ca);
    EVP_PKEY_free(key);
    return rc;
}

static bool add_san(X509 *x, const cert_opts_t *opts)
{
    bool ok = false;
    GENERAL_NAMES *names = sk_GENERAL_NAME_new_null();
    if (names == NULL) {
        return false;
    }
    for (int i = 0; i < opts->n_hosts; i++) {
        const san_t *h = &opts->hosts[i];
        GENERAL_NAME *gn = GENERAL_NAME_new();
        ASN1_STRING *value = h->is_ip ? ASN1_OCTET_STRING_new() : ASN1_IA5STRING_new();
        bool set = gn != NULL && value != NULL &&
                   (h->is_ip ? ASN1_OCTET_STRING_set(value, h->ip, h->ip_len)
                             : ASN1_STRING_set(value, h->text, -1)) == 1;
        if (!set) {
            GENERAL_NAME_free(gn);
            ASN1_STRING_free(value);
            goto out;
        }
        GENERAL_NAME_set0_value(gn, h->is_ip ? GEN_IPADD : GEN_DNS, value);
        if (sk_GENERAL_NAME_push(names, gn) == 0) {
            GENERAL_NAME_free(gn);
            goto out;
        }
    }
    /* Not critical: the subject is not empty (RFC 5280 4.2.1.6). */
    ok = X509_add1_ext_i2d(x, NID_subject_alt_name, names, 0, X509V3_ADD_DEFAULT) == 1;
out:
    GENERAL_NAMES_free(names);
    return ok;
}

/* The server certificate for key, signed by ca; *clamped is set when the CA's expiry shortened it. */
static int make_server(const cert_opts_t *opts, X509 *ca, EVP_PKEY *ca_key, EVP_PKEY *key, X509 **out_cert,
                       bool *clamped, char *err)
{
    int rc = -1;
    X509 *x = NULL;
    X509_NAME *name = X509_NAME_new();
    char owner[NAME_MAX_LEN + 1];
    const char *cn = "localhost";
    if (opts->first_user_host >= 0 && strlen(opts->hosts[opts->first_user_host].text) <= NAME_MAX_LEN) {
        cn = opts->hosts[opts->first_user_host].text;
    }
    owner_name(owner, sizeof owner);
    if (name == NULL || !name_add(name, "O", "eddy development certificate") ||
        !name_add(name, "OU", owner) || !name_add(name, "CN", cn) ||
        (x = new_cert(key, name, X509_get_subject_name(ca), opts->days)) == NULL) {
        ssl_fail(err, "cannot make the server certificate");
        goto out;
    }
    *clamped = ASN1_TIME_compare(X509_get0_notAfter(x), X509_get0_notAfter(ca)) > 0;
    if (*clamped && X509_set1_notAfter(x, X509_get0_notAfter(ca)) != 1) {
        ssl_fail(err, "cannot make the server certificate");
        goto out;
    }
    if (!add_ext(x, ca, NID_basic_constraints, "critical,CA:FALSE") ||
        !add_ext(x, ca, NID_key_usage, "critical,digitalSignature") ||
        !add_ext(x, ca, NID_ext_key_usage, "serverAuth") || !add_san(x, opts) ||
        !add_ext(x, ca, NID_subject_key_identifier, "hash") ||
        !add_ext(x, ca, NID_authority_key_identifier, "keyid,issuer") ||
        X509_sign(x, ca_key, sign_digest(ca_key)) == 0) {
        ssl_fail(err, "cannot make the server certificate");
        goto out;
    }
    *out_cert = x;
    x = NULL;
    rc = 0;
out:
    X509_NAME_free(name);
    X509_free(x);
    return rc;
}

static BIO *cert_pem(X509 *x)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (b != NULL && PEM_write_bio_X509(b, x) != 1) {
        BIO_free(b);
        return NULL;
    }
    return b;
}

static BIO *key_pem(EVP_PKEY *key)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (b != NULL && PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL) != 1) {
        BIO_free(b);
        return NULL;
    }
    return b;
}

/* ---- files ---- */

/* Writes f->pem to a new temporary file next to f->path with mode, fsynced; sets f->tmp. */
static int write_temp(out_file_t *f, const char *dir, const char *name, mode_t mode, char *err)
{
    int n = snprintf(f->tmp, sizeof f->tmp, "%s/.%s.XXXXXX", dir, name);
    if (n < 0 || (size_t)n >= sizeof f->tmp) {
        f->tmp[0] = '\0';
        return fail(err, "%s: path too long", dir);
    }
    int fd = mkostemp(f->tmp, O_CLOEXEC); /* mode 0600 until fchmod */
    if (fd < 0) {
        int e = errno;
        f->tmp[0] = '\0';
        return fail(err, "cannot create a file in %s: %s", dir, strerror(e));
    }
    char *data = NULL;
    long len = BIO_get_mem_data(f->pem, &data);
    const char *what = "fchmod";
    bool ok = fchmod(fd, mode) == 0;
    for (long done = 0; ok && done < len;) {
        what = "write";
        ssize_t w = write(fd, data + done, (size_t)(len - done));
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w == 0) {
            errno = EIO;
        }
        ok = w > 0;
        done += ok ? w : 0;
    }
    if (ok) {
        what = "fsync";
        ok = fsync(fd) == 0;
    }
    int e = errno;
    if (close(fd) != 0 && ok) {
        what = "close";
        e = errno;
        ok = false;
    }
    return ok ? 0 : fail(err, "cannot write %s (%s): %s", f->tmp, what, strerror(e));
}

/* Renames the temporary file into place; without replace, an existing file is an error (-EEXIST). */
static int install(out_file_t *f, bool replace)
{
    if (replace) {
        if (rename(f->tmp, f->path) != 0) {
            return -errno;
        }
    } else if (renameat2(AT_FDCWD, f->tmp, AT_FDCWD, f->path, RENAME_NOREPLACE) != 0) {
        if (errno != EINVAL && errno != ENOSYS) {
            return -errno;
        }
        /* A file system without RENAME_NOREPLACE: a hard link cannot replace a file either. */
        if (link(f->tmp, f->path) != 0) {
            return -errno;
        }
        unlink(f->tmp);
    }
    f->tmp[0] = '\0';
    f->installed = true;
    return 0;
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return -errno;
    }
    int rc = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

/* Prints s as one shell word (single-quoted when it holds anything else than safe characters). */
static void print_shell_word(const char *s)
{
    if (*s != '\0' &&
        strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_./-+@%:,=") == strlen(s)) {
        fputs(s, stdout);
        return;
    }
    putchar('\'');
    for (; *s != '\0'; s++) {
        if (*s == '\'') {
            fputs("'\\''", stdout);
        } else {
            putchar(*s);
        }
    }
    putchar('\'');
}

static void report(const cert_opts_t *opts, const out_file_t *files, X509 *ca, X509 *server, bool new_ca,
                   bool clamped)
{
    char date[32];
    format_date(X509_get0_notAfter(ca), date, sizeof date);
    if (new_ca) {
        printf("Created a certificate authority, valid until %s:\n", date);
        for (int i = F_CA; i >= F_CA_KEY; i--) {
            printf("  %-*s  %s\n", (int)strlen(files[F_SERVER_KEY].path), files[i].path, FILES[i].what);
        }
    } else {
        printf("Reused the certificate authority in %s (valid until %s).\n", files[F_CA].path, date);
    }
    format_date(X509_get0_notAfter(server), date, sizeof date);
    printf("Issued a server certificate for ");
    for (int i = 0; i < opts->n_hosts; i++) {
        printf("%s%s", i > 0 ? ", " : "", opts->hosts[i].text);
    }
    printf(", valid until %s%s:\n", date, clamped ? " (when the CA expires)" : "");
    for (int i = F_SERVER; i >= F_SERVER_KEY; i--) {
        printf("  %-*s  %s\n", (int)strlen(files[F_SERVER_KEY].path), files[i].path, FILES[i].what);
    }

    char *abs_dir = realpath(opts->out_dir, NULL);
    char ca_path[PATH_MAX + 16];
    snprintf(ca_path, sizeof ca_path, "%s/%s", abs_dir != NULL ? abs_dir : opts->out_dir, FILES[F_CA].name);
    free(abs_dir);
    printf("\nMake clients trust the CA:\n  export AWS_CA_BUNDLE=");
    print_shell_word(ca_path);
    printf("        # AWS CLI, boto3 and other AWS SDKs\n  export NODE_EXTRA_CA_CERTS=");
    print_shell_word(ca_path);
    printf("  # Node.js (added to its built-in CAs)\n  aws --ca-bundle ");
    print_shell_word(ca_path);
    printf(" ...         # AWS CLI, one command\n"
           "AWS_CA_BUNDLE replaces the SDKs' default CAs: set it only where clients talk to eddy.\n");
    fflush(stdout);
}

static int run(const cert_opts_t *opts, char *err)
{
    int rc = -1;
    X509 *ca = NULL, *server = NULL;
    EVP_PKEY *ca_key = NULL, *server_key = NULL;
    out_file_t *files = calloc(F_COUNT, sizeof *files);
    bool new_ca = false, clamped = false;
    if (files == NULL) {
        fail(err, "out of memory");
        goto out;
    }

    /* 2. The folder and what is in it. */
    int e = mkdir_p(opts->out_dir);
    struct stat st;
    if (e == 0 && stat(opts->out_dir, &st) != 0) {
        e = -errno;
    }
    if (e != 0) {
        fail(err, "cannot create the folder %s: %s", opts->out_dir, strerror(-e));
        goto out;
    }
    if (!S_ISDIR(st.st_mode)) {
        fail(err, "%s is not a folder", opts->out_dir);
        goto out;
    }
    for (int i = 0; i < F_COUNT; i++) {
        out_file_t *f = &files[i];
        int n = snprintf(f->path, sizeof f->path, "%s/%s", opts->out_dir, FILES[i].name);
        if (n < 0 || (size_t)n >= sizeof f->path) {
            fail(err, "%s: path too long", opts->out_dir);
            goto out;
        }
        if (lstat(f->path, &st) == 0) {
            f->existed = true;
            if (!S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode)) {
                fail(err, "%s exists and is not a file", f->path);
                goto out;
            }
        } else if (errno != ENOENT) {
            fail(err, "cannot look at %s: %s", f->path, strerror(errno));
            goto out;
        }
    }
    if (files[F_CA].existed && files[F_CA_KEY].existed) {
        if (load_ca(files[F_CA].path, files[F_CA_KEY].path, &ca, &ca_key, err) != 0) {
            goto out;
        }
    } else if (files[F_CA].existed || files[F_CA_KEY].existed) {
        int have = files[F_CA].existed ? F_CA : F_CA_KEY, missing = have == F_CA ? F_CA_KEY : F_CA;
        fail(err,
             "%s exists but %s does not; put it back to reuse this CA, or delete %s to create a new CA "
             "(the CA is never overwritten, even with --force)",
             files[have].path, files[missing].path, files[have].path);
        goto out;
    } else {
        new_ca = true;
    }
    for (int i = F_SERVER; i >= F_SERVER_KEY; i--) {
        if (files[i].existed && !opts->force) {
            fail(err,
                 "%s already exists; use --force to replace the server certificate and key (the CA is "
                 "kept)",
                 files[i].path);
            goto out;
        }
    }

    /* 3. Keys and certificates, in memory. */
    if (new_ca && make_ca(&ca, &ca_key, err) != 0) {
        goto out;
    }
    server_key = new_key();
    if (server_key == NULL) {
        ssl_fail(err, "cannot make the server key");
        goto out;
    }
    if (make_server(opts, ca, ca_key, server_key, &server, &clamped, err) != 0) {
        goto out;
    }
    if (new_ca &&
        ((files[F_CA_KEY].pem = key_pem(ca_key)) == NULL || (files[F_CA].pem = cert_pem(ca)) == NULL)) {
        ssl_fail(err, "cannot encode the CA as PEM");
        goto out;
    }
    if ((files[F_SERVER_KEY].pem = key_pem(server_key)) == NULL ||
        (files[F_SERVER].pem = cert_pem(server)) == NULL) {
        ssl_fail(err, "cannot encode the server certificate as PEM");
        goto out;
    }

    /* 4. Temporary files. */
    for (int i = 0; i < F_COUNT; i++) {
        if (files[i].pem != NULL &&
            write_temp(&files[i], opts->out_dir, FILES[i].name, FILES[i].mode, err) != 0) {
            goto out;
        }
    }

    /* 5. Into place. */
    for (int i = 0; i < F_COUNT; i++) {
        if (files[i].pem == NULL) {
            continue;
        }
        e = install(&files[i], opts->force && i >= F_SERVER_KEY);
        if (e != 0) {
            fail(err, "cannot write %s: %s%s", files[i].path, strerror(-e),
                 e == -EEXIST ? " (it appeared meanwhile)" : "");
            for (int j = 0; j < i; j++) {
                if (files[j].installed && !files[j].existed) {
                    unlink(files[j].path);
                }
            }
            goto out;
        }
    }
    e = fsync_dir(opts->out_dir);
    if (e != 0) {
        fail(err, "cannot sync the folder %s: %s", opts->out_dir, strerror(-e));
        goto out;
    }
    report(opts, files, ca, server, new_ca, clamped);
    rc = 0;
out:
    for (int i = 0; files != NULL && i < F_COUNT; i++) {
        if (files[i].tmp[0] != '\0') {
            unlink(files[i].tmp);
        }
        BIO_free(files[i].pem);
    }
    free(files);
    X509_free(ca);
    X509_free(server);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(server_key);
    return rc;
}

int cert_main(int argc, char **argv)
{
    cert_opts_t *opts = calloc(1, sizeof *opts);
    if (opts == NULL) {
        fprintf(stderr, "eddy cert: out of memory\n");
        return 1;
    }
    int status = parse_args(argc, argv, opts);
    if (status < 0) {
        char err[ERR_LEN] = "";
        status = run(opts, err) == 0 ? 0 : 1;
        if (status != 0) {
            fprintf(stderr, "eddy cert: %s\n", err);
        }
    }
    free(opts);
    return status;
}
