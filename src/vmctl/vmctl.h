/* `cvisor vm`: the client of cvisord (create, start, shutdown, destroy, pause,
 * resume, info, delete, console, list, set, events, metrics), virsh-style. */
#ifndef CVISOR_VMCTL_VMCTL_H
#define CVISOR_VMCTL_VMCTL_H

#define VMCTL_DEFAULT_SOCKET "/var/lib/cvisord/cvisord.sock"
#define VMCTL_DETACH_KEY 0x1d /* Ctrl-] */

/* `cvisor vm ...` (argv[0] is "vm"). Returns the exit status: 0 done, 1 the
 * daemon refused or did not answer, 2 bad usage or input. */
int vmctl_main(int argc, char **argv);
/* Attach to VM name's console through the daemon at sock until the detach
 * key (on a terminal), the end of input, or the daemon closing. Exit status. */
int vmctl_console(const char *sock, const char *name);

#endif
