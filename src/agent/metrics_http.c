/* metrics_http: GET /metrics on the agent's poll loop (see metrics_http.h). */
#include "agent/metrics_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define HEAD_MAX 8192
#define CLIENT_TIMEOUT_MS 5000

typedef struct client {
    int fd;
    int64_t deadline_ms;
    char head[HEAD_MAX];
    size_t head_len;
    buf_t out;
    size_t sent;
    bool replying;
} client_t;

struct metrics_http {
    int listen_fd;
    char url[96];
    metrics_render_fn render;
    void *arg;
    client_t clients[METRICS_MAX_CLIENTS];
    size_t nclients;
    int fd_map[1 + METRICS_MAX_CLIENTS]; /* which client each filled pollfd is (-1: the listener) */
};

metrics_http_t *metrics_http_new(const char *listen_on, metrics_render_fn render, void *arg, char *err, size_t errlen)
{
    char host[64];
    const char *colon = strrchr(listen_on, ':');
    if (colon == NULL || (size_t)(colon - listen_on) >= sizeof host || colon[1] == '\0') {
        snprintf(err, errlen, "metrics address \"%s\": expected HOST:PORT", listen_on);
        return NULL;
    }
    snprintf(host, sizeof host, "%.*s", (int)(colon - listen_on), listen_on);
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *ai = NULL;
    int rc = getaddrinfo(host, colon + 1, &hints, &ai);
    if (rc != 0) {
        snprintf(err, errlen, "metrics address \"%s\": %s", listen_on, gai_strerror(rc));
        return NULL;
    }
    metrics_http_t *m = calloc(1, sizeof *m);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int on = 1;
    struct sockaddr_in bound;
    socklen_t blen = sizeof bound;
    if (m == NULL || fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 16) != 0 ||
        getsockname(fd, (struct sockaddr *)&bound, &blen) != 0) {
        snprintf(err, errlen, "metrics address \"%s\": %s", listen_on, strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        free(m);
        freeaddrinfo(ai);
        return NULL;
    }
    freeaddrinfo(ai);
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &bound.sin_addr, ip, sizeof ip);
    snprintf(m->url, sizeof m->url, "http://%s:%d", ip, ntohs(bound.sin_port));
    m->listen_fd = fd;
    m->render = render;
    m->arg = arg;
    return m;
}

static void drop(metrics_http_t *m, size_t i)
{
    close(m->clients[i].fd);
    buf_dispose(&m->clients[i].out);
    m->clients[i] = m->clients[--m->nclients];
}

void metrics_http_free(metrics_http_t *m)
{
    if (m == NULL) {
        return;
    }
    while (m->nclients > 0) {
        drop(m, m->nclients - 1);
    }
    close(m->listen_fd);
    free(m);
}

const char *metrics_http_url(const metrics_http_t *m)
{
    return m->url;
}

size_t metrics_http_fill(metrics_http_t *m, struct pollfd *fds)
{
    size_t n = 0;
    if (m->nclients < METRICS_MAX_CLIENTS) {
        fds[n] = (struct pollfd){.fd = m->listen_fd, .events = POLLIN};
        m->fd_map[n++] = -1;
    }
    for (size_t i = 0; i < m->nclients; i++) {
        fds[n] = (struct pollfd){.fd = m->clients[i].fd, .events = m->clients[i].replying ? POLLOUT : POLLIN};
        m->fd_map[n++] = (int)i;
    }
    return n;
}

static void prepare_reply(metrics_http_t *m, client_t *c)
{
    buf_t body = BUF_INIT;
    const char *status = "404 Not Found", *type = "text/plain; charset=utf-8";
    if (strncmp(c->head, "GET /metrics ", 13) == 0 || strncmp(c->head, "GET /metrics?", 13) == 0) {
        status = "200 OK";
        type = "text/plain; version=0.0.4; charset=utf-8";
        m->render(m->arg, &body);
    } else {
        buf_puts(&body, "eddy agent: GET /metrics\n");
    }
    buf_printf(&c->out, "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", status,
               type, body.len);
    buf_append(&c->out, body.data != NULL ? body.data : "", body.len);
    buf_dispose(&body);
    c->replying = true;
}

void metrics_http_handle(metrics_http_t *m, const struct pollfd *fds, size_t n, int64_t now_ms)
{
    /* walk backwards so that dropping a client (swap with the last) does not disturb the ones left */
    for (size_t k = n; k-- > 0;) {
        int which = m->fd_map[k];
        if (which < 0 || (size_t)which >= m->nclients || fds[k].revents == 0) {
            continue;
        }
        client_t *c = &m->clients[which];
        if (!c->replying) {
            ssize_t got = read(c->fd, c->head + c->head_len, HEAD_MAX - 1 - c->head_len);
            if (got <= 0 && !(got < 0 && errno == EAGAIN)) {
                drop(m, (size_t)which);
                continue;
            }
            if (got > 0) {
                c->head_len += (size_t)got;
                c->head[c->head_len] = '\0';
            }
            if (strstr(c->head, "\r\n\r\n") != NULL || strstr(c->head, "\n\n") != NULL) {
                prepare_reply(m, c);
            } else if (c->head_len >= HEAD_MAX - 1) {
                drop(m, (size_t)which);
            }
            continue;
        }
        ssize_t w = write(c->fd, c->out.data + c->sent, c->out.len - c->sent);
        if (w < 0 && errno == EAGAIN) {
            continue;
        }
        if (w <= 0 || (c->sent += (size_t)w) == c->out.len) {
            drop(m, (size_t)which);
        }
    }
    for (size_t i = m->nclients; i-- > 0;) {
        if (now_ms > m->clients[i].deadline_ms) {
            drop(m, i);
        }
    }
    for (size_t k = 0; k < n; k++) {
        if (m->fd_map[k] != -1 || !(fds[k].revents & POLLIN)) {
            continue;
        }
        while (m->nclients < METRICS_MAX_CLIENTS) {
            int fd = accept4(m->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0) {
                break;
            }
            client_t *c = &m->clients[m->nclients++];
            memset(c, 0, sizeof *c);
            c->fd = fd;
            c->deadline_ms = now_ms + CLIENT_TIMEOUT_MS;
        }
    }
}
