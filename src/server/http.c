/*
 * http: the HTTP front on h2o's evloop library (see http.h for the contract).
 *
 * Each loop thread owns an h2o_evloop, an h2o_context and its own h2o socket on the shared listening
 * descriptor. Stopping is a message through an h2o multithread queue so the loop itself closes its
 * listener and winds down; no other thread ever touches a loop's objects.
 */
#define H2O_USE_EPOLL 1
#include <h2o.h>

#include "server/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"

typedef struct loop_thread {
    struct http_server *srv;
    pthread_t tid;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    int listen_fd;
    h2o_socket_t *listener;
    h2o_accept_ctx_t tls_accept_ctx; /* the HTTPS listener's, when TLS is on */
    int tls_listen_fd;               /* -1 without TLS */
    h2o_socket_t *tls_listener;
    h2o_multithread_queue_t *queue;
    h2o_multithread_receiver_t stop_receiver;
    h2o_multithread_receiver_t later_receiver;
    h2o_multithread_message_t stop_message;
    bool stopping;
    int64_t stop_deadline_ms;
    size_t inflight; /* requests received and not yet disposed of (replied to, or the client went away) */
    _Atomic uint64_t connections; /* open (accepted, not yet closed) */
    _Atomic int64_t lag_us;       /* how long the last probe waited for the loop (http_server_probe) */
} loop_thread_t;

typedef struct handler {
    h2o_handler_t super;
    struct http_server *srv;
} handler_t;

struct http_server {
    http_config_t cfg;
    h2o_globalconf_t config;
    SSL_CTX *ssl_ctx; /* NULL without TLS */
    int fd;
    int tls_fd;
    int nthreads;
    loop_thread_t *threads;
    pthread_mutex_t ready_lock;
    pthread_cond_t ready_cond;
    int ready; /* loops that have set themselves up */
    uint64_t grace_ms;
};

/* Keeps the running server reachable for LeakSanitizer while threads wind down. */
static http_server_t *running_server;

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 413:
        return "Request Entity Too Large";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    default:
        return "Unknown";
    }
}

static h2o_req_t *h2o_of(http_request_t *req)
{
    return (h2o_req_t *)req;
}

static loop_thread_t *owner(h2o_req_t *r);

static void on_request_disposed(void *p)
{
    (*(loop_thread_t **)p)->inflight--;
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    handler_t *h = (handler_t *)self;
    /* counted until h2o disposes of the request, so that a graceful stop waits for requests, not for idle
     * keep-alive connections */
    loop_thread_t **counted = h2o_mem_alloc_shared(&req->pool, sizeof *counted, on_request_disposed);
    *counted = owner(req);
    (*counted)->inflight++;
    h->srv->cfg.handler((http_request_t *)req, h->srv->cfg.handler_arg);
    return 0;
}

const char *http_request_method(http_request_t *req, size_t *len)
{
    *len = h2o_of(req)->method.len;
    return h2o_of(req)->method.base;
}

const char *http_request_path(http_request_t *req, size_t *len)
{
    *len = h2o_of(req)->path.len;
    return h2o_of(req)->path.base;
}

bool http_request_header(http_request_t *req, const char *name, const char **value, size_t *len)
{
    h2o_req_t *r = h2o_of(req);
    ssize_t at = h2o_find_header_by_str(&r->headers, name, strlen(name), -1);
    if (at < 0) {
        return false;
    }
    *value = r->headers.entries[at].value.base;
    *len = r->headers.entries[at].value.len;
    return true;
}

const char *http_request_body(http_request_t *req, size_t *len)
{
    h2o_req_t *r = h2o_of(req);
    *len = r->entity.base ? r->entity.len : 0;
    return r->entity.base ? r->entity.base : "";
}

size_t http_request_headers(http_request_t *req, http_header_view_t *out, size_t max)
{
    h2o_req_t *r = h2o_of(req);
    for (size_t i = 0; i < r->headers.size && i < max; i++) {
        const h2o_header_t *h = &r->headers.entries[i];
        out[i] = (http_header_view_t){h->name->base, h->name->len, h->value.base, h->value.len};
    }
    return r->headers.size;
}

const char *http_request_authority(http_request_t *req, size_t *len)
{
    *len = h2o_of(req)->authority.len;
    return h2o_of(req)->authority.base;
}

bool http_request_is_tls(http_request_t *req)
{
    return h2o_of(req)->scheme == &H2O_URL_SCHEME_HTTPS;
}

int http_request_version(http_request_t *req)
{
    return h2o_of(req)->version >= 0x200 ? 2 : 1;
}

void http_add_header(http_request_t *req, const char *name, const char *value, size_t len)
{
    h2o_req_t *r = h2o_of(req);
    h2o_iovec_t v = h2o_strdup(&r->pool, value, len);
    h2o_add_header_by_str(&r->pool, &r->res.headers, name, strlen(name), 1, NULL, v.base, v.len);
}

/* The reply body lives in a heap block owned by the request pool: freed when the request is done. */
static void free_body(void *p)
{
    free(*(char **)p);
}

static void on_generator_stop(h2o_generator_t *self, h2o_req_t *req)
{
    (void)self;
    (void)req;
}

static void on_generator_proceed(h2o_generator_t *self, h2o_req_t *req)
{
    (void)self;
    (void)req;
}

static h2o_generator_t static_generator = {on_generator_proceed, on_generator_stop};

void http_reply(http_request_t *req, int status, const char *content_type, buf_t *body)
{
    h2o_req_t *r = h2o_of(req);
    size_t len = 0;
    char *data = buf_release(body, &len);
    char **holder = h2o_mem_alloc_shared(&r->pool, sizeof *holder, free_body);
    *holder = data;
    r->res.status = status;
    r->res.reason = reason_phrase(status);
    r->res.content_length = len;
    if (content_type != NULL) {
        h2o_add_header(&r->pool, &r->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, content_type,
                       strlen(content_type));
    }
    h2o_iovec_t iov = h2o_iovec_init(data, len);
    h2o_start_response(r, &static_generator);
    h2o_send(r, &iov, 1, H2O_SEND_STATE_FINAL);
}

void http_reply_text(http_request_t *req, int status, const char *content_type, const char *text)
{
    buf_t b = BUF_INIT;
    buf_puts(&b, text);
    http_reply(req, status, content_type, &b);
}

/* ---- streaming replies ---- */

struct http_stream {
    h2o_generator_t super; /* first: h2o hands back this pointer */
    h2o_req_t *req;
    http_stream_events_t events;
    buf_t pending;  /* written, not yet given to h2o */
    buf_t inflight; /* given to h2o, until it calls proceed */
    bool sending;   /* an h2o_send is in flight */
    bool ending;    /* http_stream_end was called */
    bool ended;     /* the final h2o_send was made */
    bool stopped;   /* the client went away: no more sends */
    bool closed;    /* on_close was called */
};

static void stream_flush(http_stream_t *st)
{
    if (st->sending || st->ended || st->stopped) {
        return;
    }
    if (st->pending.len == 0 && !st->ending) {
        return;
    }
    buf_t swap = st->inflight;
    st->inflight = st->pending;
    st->pending = swap;
    buf_reset(&st->pending);
    h2o_iovec_t iov = h2o_iovec_init(st->inflight.data, st->inflight.len);
    st->sending = true;
    if (st->ending) {
        st->ended = true;
    }
    h2o_send(st->req, &iov, st->inflight.len ? 1 : 0, st->ending ? H2O_SEND_STATE_FINAL : H2O_SEND_STATE_IN_PROGRESS);
}

static void on_stream_proceed(h2o_generator_t *self, h2o_req_t *req)
{
    (void)req;
    http_stream_t *st = (http_stream_t *)self;
    st->sending = false;
    buf_reset(&st->inflight);
    stream_flush(st);
    if (!st->sending && !st->closed && st->events.on_drain != NULL) {
        st->events.on_drain(st->events.arg);
    }
}

static void on_stream_stop(h2o_generator_t *self, h2o_req_t *req)
{
    (void)req;
    ((http_stream_t *)self)->stopped = true;
}

/* The request's pool is being cleared: the stream is over whatever happened. */
static void on_stream_dispose(void *p)
{
    http_stream_t *st = p;
    st->stopped = true;
    if (!st->closed) {
        st->closed = true;
        if (st->events.on_close != NULL) {
            st->events.on_close(st->events.arg);
        }
    }
    buf_dispose(&st->pending);
    buf_dispose(&st->inflight);
}

http_stream_t *http_stream_start(http_request_t *req, int status, const char *content_type,
                                 const http_stream_events_t *events)
{
    h2o_req_t *r = h2o_of(req);
    http_stream_t *st = h2o_mem_alloc_shared(&r->pool, sizeof *st, on_stream_dispose);
    memset(st, 0, sizeof *st);
    st->super.proceed = on_stream_proceed;
    st->super.stop = on_stream_stop;
    st->req = r;
    st->events = *events;
    r->res.status = status;
    r->res.reason = reason_phrase(status);
    if (content_type != NULL) {
        h2o_add_header(&r->pool, &r->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, content_type, strlen(content_type));
    }
    h2o_start_response(r, &st->super);
    return st;
}

void http_stream_write(http_stream_t *st, const void *data, size_t len)
{
    if (st->ending || st->stopped) {
        return;
    }
    buf_append(&st->pending, data, len);
    stream_flush(st);
}

size_t http_stream_pending(const http_stream_t *st)
{
    return st->pending.len + st->inflight.len;
}

void http_stream_end(http_stream_t *st)
{
    st->ending = true;
    stream_flush(st);
}

/* ---- deferred work and guards ---- */

typedef struct later {
    h2o_multithread_message_t super; /* first: the queue hands back this pointer */
    void (*fn)(void *arg);
    void *arg;
} later_t;

static loop_thread_t *owner(h2o_req_t *r)
{
    return (loop_thread_t *)((char *)r->conn->ctx - offsetof(loop_thread_t, ctx));
}

http_loop_t *http_request_loop(http_request_t *req)
{
    return (http_loop_t *)owner(h2o_of(req));
}

void http_loop_run_later(http_loop_t *loop, void (*fn)(void *arg), void *arg)
{
    later_t *l = calloc(1, sizeof *l);
    if (l == NULL) {
        abort();
    }
    l->fn = fn;
    l->arg = arg;
    h2o_multithread_send_message(&((loop_thread_t *)loop)->later_receiver, &l->super);
}

static void on_later_messages(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    (void)receiver;
    while (!h2o_linklist_is_empty(messages)) {
        later_t *l = H2O_STRUCT_FROM_MEMBER(later_t, super.link, messages->next);
        h2o_linklist_unlink(&l->super.link);
        l->fn(l->arg);
        free(l);
    }
}

/* ---- statistics ---- */

typedef struct probe {
    loop_thread_t *t;
    int64_t posted_us;
} probe_t;

static void on_probe(void *arg)
{
    probe_t *p = arg;
    atomic_store_explicit(&p->t->lag_us, clock_monotonic_us() - p->posted_us, memory_order_relaxed);
    free(p);
}

void http_server_probe(http_server_t *srv)
{
    for (int i = 0; i < srv->nthreads; i++) {
        probe_t *p = malloc(sizeof *p);
        if (p == NULL) {
            abort();
        }
        *p = (probe_t){&srv->threads[i], clock_monotonic_us()};
        http_loop_run_later((http_loop_t *)&srv->threads[i], on_probe, p);
    }
}

size_t http_server_stats(http_server_t *srv, http_loop_stats_t *out, size_t max)
{
    for (int i = 0; i < srv->nthreads && (size_t)i < max; i++) {
        loop_thread_t *t = &srv->threads[i];
        out[i].connections = atomic_load_explicit(&t->connections, memory_order_relaxed);
        out[i].lag_us = atomic_load_explicit(&t->lag_us, memory_order_relaxed);
    }
    return (size_t)srv->nthreads;
}

struct http_guard {
    void (*fn)(void *arg);
    void *arg;
};

static void on_guard_dispose(void *p)
{
    http_guard_t *g = p;
    if (g->fn != NULL) {
        g->fn(g->arg);
    }
}

http_guard_t *http_request_guard(http_request_t *req, void (*fn)(void *arg), void *arg)
{
    http_guard_t *g = h2o_mem_alloc_shared(&h2o_of(req)->pool, sizeof *g, on_guard_dispose);
    g->fn = fn;
    g->arg = arg;
    return g;
}

void http_guard_cancel(http_guard_t *guard)
{
    guard->fn = NULL;
}

/* ---- loops ---- */

/* One connection per wake-up: every loop is woken by a pending connection, so a burst of connects is
 * shared by the loops that are free rather than taken whole by the first one awake. (Strictly even
 * spreading was measured to be slower here: on 2 cores shared with a load generator, two equally busy loops
 * contend with it for the cores.) */
static void on_connection_closed(void *data)
{
    atomic_fetch_sub_explicit(&((loop_thread_t *)data)->connections, 1, memory_order_relaxed);
}

static void on_accept(h2o_socket_t *listener, const char *err)
{
    h2o_accept_ctx_t *actx = listener->data; /* the plain or the TLS one */
    if (err != NULL) {
        return;
    }
    h2o_socket_t *sock = h2o_evloop_socket_accept(listener);
    if (sock != NULL) {
        /* counted until h2o closes the socket (h2o's server side leaves on_close to its owner) */
        loop_thread_t *t = (loop_thread_t *)((char *)actx->ctx - offsetof(loop_thread_t, ctx));
        atomic_fetch_add_explicit(&t->connections, 1, memory_order_relaxed);
        sock->on_close.cb = on_connection_closed;
        sock->on_close.data = t;
        h2o_accept(actx, sock);
    }
}

static void close_listener(h2o_socket_t **listener)
{
    if (*listener != NULL) {
        h2o_socket_read_stop(*listener);
        h2o_socket_close(*listener);
        *listener = NULL;
    }
}

static void on_stop_message(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    loop_thread_t *t = (loop_thread_t *)((char *)receiver - offsetof(loop_thread_t, stop_receiver));
    while (!h2o_linklist_is_empty(messages)) {
        h2o_linklist_unlink(messages->next);
    }
    if (t->stopping) {
        return;
    }
    t->stopping = true;
    t->stop_deadline_ms = clock_monotonic_ms() + (int64_t)t->srv->grace_ms;
    close_listener(&t->listener);
    close_listener(&t->tls_listener);
    h2o_context_request_shutdown(&t->ctx);
}

/* No request is being handled (idle keep-alive connections do not count: they close with the process). */
static bool loop_idle(loop_thread_t *t)
{
    return t->inflight == 0;
}

static int open_listener(const http_config_t *cfg, int port_number, int *bound_port, char *errmsg, size_t errmsg_len)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char port[16];
    snprintf(port, sizeof port, "%d", port_number);
    int rc = getaddrinfo(cfg->host, port, &hints, &res);
    if (rc != 0) {
        snprintf(errmsg, errmsg_len, "cannot resolve %s: %s", cfg->host, gai_strerror(rc));
        return -EINVAL;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        rc = -errno;
        snprintf(errmsg, errmsg_len, "socket: %s", strerror(errno));
        freeaddrinfo(res);
        return rc;
    }
    int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    if (bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, SOMAXCONN) != 0) {
        rc = -errno;
        snprintf(errmsg, errmsg_len, "cannot listen on %s:%d: %s", cfg->host, port_number, strerror(errno));
        close(fd);
        freeaddrinfo(res);
        return rc;
    }
    freeaddrinfo(res);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    *bound_port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                           : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

/* Everything of a loop's that h2o allocates is set up here, on the loop's own thread: h2o sockets take
 * their input buffers' recycling allocator from the creating thread's thread-local
 * h2o_socket_buffer_prototype. Sockets made on the main thread (the context's and our message queues'
 * pipes, the listener) would have every loop share the main thread's unlocked free list, which corrupts the
 * heap under load. */
static void *loop_main(void *arg)
{
    loop_thread_t *t = arg;
    http_server_t *srv = t->srv;
    h2o_context_init(&t->ctx, h2o_evloop_create(), &srv->config);
    t->accept_ctx.ctx = &t->ctx;
    t->accept_ctx.hosts = srv->config.hosts;
    t->queue = h2o_multithread_create_queue(t->ctx.loop);
    h2o_multithread_register_receiver(t->queue, &t->stop_receiver, on_stop_message);
    h2o_multithread_register_receiver(t->queue, &t->later_receiver, on_later_messages);
    t->listener = h2o_evloop_socket_create(t->ctx.loop, t->listen_fd, H2O_SOCKET_FLAG_DONT_READ);
    t->listener->data = &t->accept_ctx;
    h2o_socket_read_start(t->listener, on_accept);
    if (t->tls_listen_fd >= 0) {
        t->tls_accept_ctx = t->accept_ctx;
        t->tls_accept_ctx.ssl_ctx = srv->ssl_ctx;
        t->tls_listener = h2o_evloop_socket_create(t->ctx.loop, t->tls_listen_fd, H2O_SOCKET_FLAG_DONT_READ);
        t->tls_listener->data = &t->tls_accept_ctx;
        h2o_socket_read_start(t->tls_listener, on_accept);
    }

    pthread_mutex_lock(&srv->ready_lock);
    srv->ready++;
    pthread_cond_broadcast(&srv->ready_cond);
    pthread_mutex_unlock(&srv->ready_lock);

    h2o_evloop_t *loop = t->ctx.loop;
    for (;;) {
        h2o_evloop_run(loop, t->stopping ? 10 : INT32_MAX);
        if (t->stopping && (loop_idle(t) || clock_monotonic_ms() >= t->stop_deadline_ms)) {
            break;
        }
    }
    return NULL;
}

/* The HTTPS context: the certificate chain and key, TLS 1.2 or later, ALPN h2 then http/1.1. */
static SSL_CTX *tls_context(const http_config_t *cfg, char *errmsg, size_t errmsg_len)
{
    static const h2o_iovec_t alpn[] = {{H2O_STRLIT("h2")}, {H2O_STRLIT("http/1.1")}, {NULL, 0}};
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        snprintf(errmsg, errmsg_len, "cannot create a TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert) != 1) {
        snprintf(errmsg, errmsg_len, "cannot load the TLS certificate %s (PEM expected)", cfg->tls_cert);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_key, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(errmsg, errmsg_len, "cannot load the TLS key %s, or it does not match the certificate %s",
                 cfg->tls_key, cfg->tls_cert);
        SSL_CTX_free(ctx);
        return NULL;
    }
    h2o_ssl_register_alpn_protocols(ctx, alpn);
    return ctx;
}

int http_server_start(const http_config_t *cfg, http_server_t **out, int *bound_port, int *bound_tls_port,
                      char *errmsg, size_t errmsg_len)
{
    bool tls = cfg->tls_cert != NULL && cfg->tls_key != NULL;
    SSL_CTX *ssl_ctx = NULL;
    if (tls && (ssl_ctx = tls_context(cfg, errmsg, errmsg_len)) == NULL) {
        return -EINVAL;
    }
    int fd = open_listener(cfg, cfg->port, bound_port, errmsg, errmsg_len);
    if (fd < 0) {
        SSL_CTX_free(ssl_ctx);
        return fd;
    }
    int tls_fd = -1;
    if (tls) {
        tls_fd = open_listener(cfg, cfg->tls_port, bound_tls_port, errmsg, errmsg_len);
        if (tls_fd < 0) {
            close(fd);
            SSL_CTX_free(ssl_ctx);
            return tls_fd;
        }
    }
    http_server_t *srv = calloc(1, sizeof *srv);
    if (srv == NULL) {
        close(fd);
        return -ENOMEM;
    }
    srv->cfg = *cfg;
    srv->fd = fd;
    srv->tls_fd = tls_fd;
    srv->ssl_ctx = ssl_ctx;
    srv->nthreads = cfg->threads > 0 ? cfg->threads : 1;
    pthread_mutex_init(&srv->ready_lock, NULL);
    pthread_cond_init(&srv->ready_cond, NULL);

    h2o_config_init(&srv->config);
    srv->config.server_name = h2o_iovec_init(H2O_STRLIT("eddy"));
    srv->config.max_request_entity_size = cfg->max_body;
    srv->config.http1.req_timeout = cfg->header_timeout_ms;
    srv->config.http2.idle_timeout = cfg->idle_timeout_ms;
    srv->config.http2.graceful_shutdown_timeout = 1000;
    h2o_hostconf_t *host = h2o_config_register_host(&srv->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    handler_t *h = (handler_t *)h2o_create_handler(path, sizeof *h);
    h->super.on_req = on_req;
    h->srv = srv;

    srv->threads = calloc((size_t)srv->nthreads, sizeof *srv->threads);
    if (srv->threads == NULL) {
        close(fd);
        free(srv);
        return -ENOMEM;
    }
    running_server = srv;
    for (int i = 0; i < srv->nthreads; i++) {
        loop_thread_t *t = &srv->threads[i];
        t->srv = srv;
        /* each loop owns a descriptor of its own on the shared socket: closing one leaves the others */
        t->listen_fd = i == 0 ? fd : fcntl(fd, F_DUPFD_CLOEXEC, 0);
        t->tls_listen_fd = tls_fd < 0 ? -1 : i == 0 ? tls_fd : fcntl(tls_fd, F_DUPFD_CLOEXEC, 0);
        if (t->listen_fd < 0 || (tls_fd >= 0 && t->tls_listen_fd < 0)) {
            abort();
        }
        if (pthread_create(&t->tid, NULL, loop_main, t) != 0) {
            snprintf(errmsg, errmsg_len, "cannot start loop thread: %s", strerror(errno));
            abort(); /* startup failure; nothing to recover */
        }
    }
    /* ready when every loop can take messages (stop) and connections */
    pthread_mutex_lock(&srv->ready_lock);
    while (srv->ready < srv->nthreads) {
        pthread_cond_wait(&srv->ready_cond, &srv->ready_lock);
    }
    pthread_mutex_unlock(&srv->ready_lock);
    *out = srv;
    return 0;
}

void http_server_stop(http_server_t *srv, uint64_t grace_ms)
{
    srv->grace_ms = grace_ms;
    for (int i = 0; i < srv->nthreads; i++) {
        h2o_multithread_send_message(&srv->threads[i].stop_receiver, &srv->threads[i].stop_message);
    }
    for (int i = 0; i < srv->nthreads; i++) {
        pthread_join(srv->threads[i].tid, NULL);
    }
    /* Each loop closed its own listening descriptor. Connections still open at the deadline are
     * abandoned with the process. */
}
