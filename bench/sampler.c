/*
 * The benchmark's sampler: a tiny static process that bench.py drives over a
 * pipe. For each command it forks, execs, waits with wait4 and reports the
 * wall time (fork to reap) and ru_maxrss.
 *
 * Why not time from Python: ru_maxrss includes the high-water RSS of the
 * memory the child had *before* execve, which for a child of Python
 * (posix_spawn shares Python's mm; fork copies its page tables) is Python's
 * ~17 MiB. A fork of this static helper starts from ~0.1 MiB, so the figure
 * is the runtime's own (plus the children it reaps itself). Timing here also
 * keeps Python's spawn cost out of the figures.
 *
 * Protocol, stdin: "<bytes>\n" then argv as NUL-terminated strings.
 * stdout: "<ns> <maxrss KiB> <wait status>\n". A command still running after
 * TIMEOUT_S gets SIGKILL (its status says so).
 * The child gets stdin/stdout on /dev/null and stderr appended to argv[1].
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

#define TIMEOUT_S 60

static void on_alarm(int sig)
{
    (void)sig;
}

static char buf[1 << 16];
static char *args[256];

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: sampler STDERR_FILE\n");
        return 2;
    }
    int err = open(argv[1], O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (err < 0 || null < 0) {
        perror("sampler: open");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sigaction sa = {.sa_handler = on_alarm}; /* no SA_RESTART */
    sigaction(SIGALRM, &sa, NULL);
    for (;;) {
        size_t len;
        if (scanf("%zu", &len) != 1 || getchar() != '\n' || len >= sizeof buf)
            return 0;
        if (fread(buf, 1, len, stdin) != len)
            return 0;
        int n = 0;
        for (size_t i = 0; i < len && n < 255; i += strlen(buf + i) + 1)
            args[n++] = buf + i;
        args[n] = NULL;
        long long t0 = now_ns();
        pid_t pid = fork();
        if (pid == 0) {
            dup2(null, 0);
            dup2(null, 1);
            dup2(err, 2);
            execv(args[0], args);
            _exit(127);
        }
        if (pid < 0) {
            perror("sampler: fork");
            return 2;
        }
        int status = 0;
        struct rusage ru;
        alarm(TIMEOUT_S);
        while (wait4(pid, &status, 0, &ru) < 0)
            kill(pid, SIGKILL); /* EINTR: the alarm went off */
        alarm(0);
        long long t1 = now_ns();
        printf("%lld %ld %d\n", t1 - t0, ru.ru_maxrss, status);
    }
}
