/* The pod sandbox's process (what Kubernetes' pause does): sleep as pid 1 of the pod, exit 0
 * on SIGINT/SIGTERM, reap whatever gets reparented to it. busybox `sleep` as pid 1 would ignore
 * SIGTERM (the kernel drops signals to a pid-namespace init that has no handler), so CRI's
 * StopPodSandbox would wait out its grace period and SIGKILL. Built static by
 * scripts/cri-env.sh into the local pause image. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void quit(int sig) { (void)sig; _exit(0); }

static void reap(int sig) {
  (void)sig;
  while (waitpid(-1, 0, WNOHANG) > 0) {
  }
}

int main(void) {
  struct sigaction q = {.sa_handler = quit}, r = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP};
  sigaction(SIGINT, &q, 0);
  sigaction(SIGTERM, &q, 0);
  sigaction(SIGCHLD, &r, 0);
  for (;;) pause();
}
