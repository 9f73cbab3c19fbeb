/*
 * eddy_process: for C tests that need a real eddy server: start the binary ($EDDY_BIN) on a free loopback
 * port with a fresh data folder, find its endpoint in its "eddy listening on http://..." line, stop it
 * gracefully or with SIGKILL, start it again on the same folder and port. Header-only (static functions);
 * only tests include it. Waits poll with a deadline.
 */
#ifndef EDDY_TESTS_SUPPORT_EDDY_PROCESS_H
#define EDDY_TESTS_SUPPORT_EDDY_PROCESS_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct eddy_process {
    pid_t pid;
    char dir[128];      /* data folder (removed by eddy_process_cleanup) */
    char log[160];      /* its stderr */
    char endpoint[128]; /* http://127.0.0.1:PORT */
    int port;
    char extra[8][64];  /* extra flags */
    int nextra;
} eddy_process_t;

static int64_t eddy_process_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void eddy_process_pause_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Starts eddy (port 0: a free one). Returns 0, or -1 (message on stderr). */
static int eddy_process_spawn(eddy_process_t *e, int port)
{
    const char *bin = getenv("EDDY_BIN");
    if (bin == NULL) {
        fprintf(stderr, "EDDY_BIN is not set\n");
        return -1;
    }
    char portarg[16];
    snprintf(portarg, sizeof portarg, "%d", port);
    char *argv[32] = {(char *)bin, "serve", "--port", portarg, "--data", e->dir, "--state-delay-ms", "0"};
    int argc = 8;
    for (int i = 0; i < e->nextra; i++) {
        argv[argc++] = e->extra[i];
    }
    argv[argc] = NULL;
    truncate(e->log, 0);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(e->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, 2);
        int devnull = open("/dev/null", O_RDWR);
        dup2(devnull, 0);
        dup2(devnull, 1);
        execv(bin, argv);
        _exit(127);
    }
    e->pid = pid;
    int64_t deadline = eddy_process_now_ms() + 15000;
    while (eddy_process_now_ms() < deadline) {
        FILE *f = fopen(e->log, "r");
        char line[512];
        while (f != NULL && fgets(line, sizeof line, f) != NULL) {
            const char *at = strstr(line, "eddy listening on http://");
            if (at != NULL) {
                at += strlen("eddy listening on ");
                line[strcspn(line, "\n")] = '\0';
                snprintf(e->endpoint, sizeof e->endpoint, "%s", at);
                const char *colon = strrchr(e->endpoint, ':');
                e->port = colon != NULL ? atoi(colon + 1) : 0;
                fclose(f);
                return 0;
            }
        }
        if (f != NULL) {
            fclose(f);
        }
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            fprintf(stderr, "eddy exited before listening (see %s)\n", e->log);
            e->pid = 0;
            return -1;
        }
        eddy_process_pause_ms(10);
    }
    fprintf(stderr, "eddy did not start in time (see %s)\n", e->log);
    return -1;
}

/* A fresh data folder and eddy; extra flags (at most 8) NULL-terminated. */
static int eddy_process_start(eddy_process_t *e, const char *const *extra)
{
    memset(e, 0, sizeof *e);
    snprintf(e->dir, sizeof e->dir, "/tmp/eddy-ctest-XXXXXX");
    if (mkdtemp(e->dir) == NULL) {
        return -1;
    }
    snprintf(e->log, sizeof e->log, "%s.log", e->dir);
    for (int i = 0; extra != NULL && extra[i] != NULL && i < 8; i++) {
        snprintf(e->extra[e->nextra++], sizeof e->extra[0], "%s", extra[i]);
    }
    return eddy_process_spawn(e, 0);
}

/* Stops it: SIGTERM (graceful) or SIGKILL, and waits for it. */
static void eddy_process_stop(eddy_process_t *e, bool kill9)
{
    if (e->pid <= 0) {
        return;
    }
    kill(e->pid, kill9 ? SIGKILL : SIGTERM);
    int status;
    waitpid(e->pid, &status, 0);
    e->pid = 0;
}

/* Starts it again on the same folder and port (polls until the port is free again). */
static int eddy_process_restart(eddy_process_t *e)
{
    int64_t deadline = eddy_process_now_ms() + 10000;
    int rc;
    while ((rc = eddy_process_spawn(e, e->port)) != 0 && eddy_process_now_ms() < deadline) {
        eddy_process_pause_ms(50);
    }
    return rc;
}

static void eddy_process_cleanup(eddy_process_t *e)
{
    eddy_process_stop(e, false);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", e->dir, e->log);
    if (system(cmd) != 0) {
        fprintf(stderr, "could not remove %s\n", e->dir);
    }
}

#endif
