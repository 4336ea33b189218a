/* The VMs' processes: start (a child held at a gate until the daemon has
 * recorded it), identity (PID plus start time from /proc, so that a reused PID
 * is never taken for the VM) and signals through pidfds. */
#ifndef CVISOR_DAEMON_PROC_H
#define CVISOR_DAEMON_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* How to start a VM process. */
struct vmproc_spawn {
	const char *exe;    /* the cvisor binary */
	char *const *argv;  /* its argv, NULL-terminated */
	const char *log;    /* stdout and stderr are appended here */
};

/* Fork the VM's process. It starts a new session, then waits at the gate:
 * vmproc_release lets it execute exe, vmproc_abort (or the daemon dying)
 * makes it exit without running anything. 0 with *pid and *gate set, or
 * -errno with one line in err. */
int vmproc_spawn(const struct vmproc_spawn *s, pid_t *pid, int *gate, char *err, size_t errlen);
/* Let the child go on and execute the VMM. 0 or -errno. */
int vmproc_release(int gate);
/* Make the child exit without executing anything. */
void vmproc_abort(int gate);
/* The start time of pid (field 22 of /proc/PID/stat, clock ticks after boot). 0 or -errno. */
int vmproc_start_time(pid_t pid, uint64_t *out);
/* The wait status of pid if it is a zombie not yet reaped by its parent (field
 * 52 of /proc/PID/stat): for a process that is not our child this is the only
 * way to its status. 0 with *status set, or -errno (gone, or not a zombie). */
int vmproc_zombie_status(pid_t pid, int *status);
/* Whether pid exists and has not exited (a zombie has). */
bool vmproc_alive(pid_t pid);
/* Whether one argument of pid's command line is exactly arg. */
bool vmproc_has_arg(pid_t pid, const char *arg);
/* Milliseconds since a process with this start time began, 0 if unknown. */
uint64_t vmproc_uptime_ms(uint64_t start_ticks);
/* A pidfd for pid (close-on-exec), or -errno. */
int vmproc_pidfd(pid_t pid);
/* Send sig to the process behind a pidfd. 0 or -errno. */
int vmproc_signal(int pidfd, int sig);
/* Milliseconds of CLOCK_MONOTONIC. */
int64_t vmproc_now_ms(void);

#endif
