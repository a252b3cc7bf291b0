#include "ns_mpi.h"

#include <limits.h>
#include <mpi.h>
#include <string.h>

int ns_mpi_init(void) {
    int provided = 0;
    return MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
}

int ns_mpi_active(void) {
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    return initialized && !finalized;
}

int ns_mpi_rank(void) {
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    return rank;
}

int ns_mpi_size(void) {
    int size = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    return size;
}

int ns_mpi_barrier(void) { return MPI_Barrier(MPI_COMM_WORLD); }

/* MPI counts are ints: the callers cut larger transfers into pieces of at most INT_MAX. */
int ns_mpi_allgather_float(const float *send, long count, float *receive) {
    if (count > INT_MAX) return MPI_ERR_COUNT;
    return MPI_Allgather(send, (int)count, MPI_FLOAT, receive, (int)count, MPI_FLOAT, MPI_COMM_WORLD);
}

int ns_mpi_allgather_double(const double *send, long count, double *receive) {
    if (count > INT_MAX) return MPI_ERR_COUNT;
    return MPI_Allgather(send, (int)count, MPI_DOUBLE, receive, (int)count, MPI_DOUBLE, MPI_COMM_WORLD);
}

int ns_mpi_alltoall_float(const float *send, long count, float *receive) {
    if (count > INT_MAX) return MPI_ERR_COUNT;
    return MPI_Alltoall(send, (int)count, MPI_FLOAT, receive, (int)count, MPI_FLOAT, MPI_COMM_WORLD);
}

int ns_mpi_broadcast_bytes(void *buffer, long count, int root) {
    if (count > INT_MAX) return MPI_ERR_COUNT;
    return MPI_Bcast(buffer, (int)count, MPI_BYTE, root, MPI_COMM_WORLD);
}

void ns_mpi_abort(int code) { MPI_Abort(MPI_COMM_WORLD, code); }

int ns_mpi_finalize(void) { return MPI_Finalize(); }

void ns_mpi_library_version(char *buffer, size_t size) {
    char version[MPI_MAX_LIBRARY_VERSION_STRING];
    int length = 0;
    MPI_Get_library_version(version, &length);
    if (size == 0) return;
    strncpy(buffer, version, size - 1);
    buffer[size - 1] = 0;
}
