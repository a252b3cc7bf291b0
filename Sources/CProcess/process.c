#include "ns_process.h"

#include <signal.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

int ns_terminate_with_parent(pid_t parent) {
#ifdef __linux__
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0) return -1;
    // The parent may have died between the fork and the request.
    if (getppid() != parent) raise(SIGTERM);
    return 0;
#else
    (void)parent;
    return -1;
#endif
}
