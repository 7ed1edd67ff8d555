/* signals.c — SIGINT and SIGTERM in the long commands (run, train, eval).
 * The first signal only raises cli_stop: the training loop and the sweep
 * read it between steps, the work winds down and the command exits with
 * 128 + the signal number. Every file is written by a rename of a finished
 * temporary file, so what a stopped command leaves is complete or absent.
 * A second signal exits at once (a temporary file may stay behind; `recall
 * run --resume` removes it). */
#include "cli.h"

#include <string.h>
#include <unistd.h>

volatile sig_atomic_t cli_stop;
static int tty; /* stderr is a terminal: clear the progress line first */

static void on_signal(int sig) {
  if (cli_stop) { /* only async-signal-safe calls here */
    static const char clear[] = "\r\033[K\n", msg[] = "recall: interrupted again; exiting now\n";
    ssize_t k = tty ? write(2, clear, sizeof clear - 1) : 0;
    k = write(2, msg, sizeof msg - 1);
    (void)k;
    _exit(128 + sig);
  }
  cli_stop = sig;
}

void cli_catch_signals(void) {
  tty = isatty(2);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  /* blocking calls (reads, waits) carry on; the flag is polled */
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
}

int cli_stop_status(void) { return 128 + cli_stop; }
