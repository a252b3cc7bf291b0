#ifndef NS_PROCESS_H
#define NS_PROCESS_H

#include <sys/types.h>

/// Asks the kernel to send SIGTERM to this process when the thread that started it exits
/// (Linux's PR_SET_PDEATHSIG; prctl is variadic, which Swift cannot call), then sends it at once
/// if `parent` is already gone (this process then has another parent). Returns 0, or -1 where
/// the system has no such request (the caller goes on without it).
int ns_terminate_with_parent(pid_t parent);

#endif
