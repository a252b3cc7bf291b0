#include "ns_mpi.h"

#include <limits.h>
#include <mpi.h>
#include <stdlib.h>
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

/* The communicators of the slots, duplicated from MPI_COMM_WORLD on first use. */
static MPI_Comm *slot_comms = NULL;
static int slot_count = 0;

static int slot_comm(int slot, MPI_Comm *comm) {
    if (slot < 0) return MPI_ERR_ARG;
    if (slot >= slot_count) {
        MPI_Comm *grown = realloc(slot_comms, (size_t)(slot + 1) * sizeof(MPI_Comm));
        if (!grown) return MPI_ERR_NO_MEM;
        slot_comms = grown;
        for (int s = slot_count; s <= slot; s++) {
            int code = MPI_Comm_dup(MPI_COMM_WORLD, &slot_comms[s]);
            if (code != MPI_SUCCESS) { slot_count = s; return code; }
        }
        slot_count = slot + 1;
    }
    *comm = slot_comms[slot];
    return MPI_SUCCESS;
}

static int start(MPI_Request *r, void **request, int code) {
    if (code == MPI_SUCCESS) *request = r; else free(r);
    return code;
}

/* Starts MPI_Ialltoall (gather = 0) or MPI_Iallgather (gather = 1) of floats on the slot's
   communicator. */
static int start_floats(int gather, const float *send, long count, float *receive, int slot, void **request) {
    if (count > INT_MAX) return MPI_ERR_COUNT;
    MPI_Comm comm;
    int code = slot_comm(slot, &comm);
    if (code != MPI_SUCCESS) return code;
    MPI_Request *r = malloc(sizeof(MPI_Request));
    if (!r) return MPI_ERR_NO_MEM;
    code = gather ? MPI_Iallgather(send, (int)count, MPI_FLOAT, receive, (int)count, MPI_FLOAT, comm, r)
                  : MPI_Ialltoall(send, (int)count, MPI_FLOAT, receive, (int)count, MPI_FLOAT, comm, r);
    return start(r, request, code);
}

int ns_mpi_ialltoall_float(const float *send, long count, float *receive, int slot, void **request) {
    return start_floats(0, send, count, receive, slot, request);
}

int ns_mpi_iallgather_float(const float *send, long count, float *receive, int slot, void **request) {
    return start_floats(1, send, count, receive, slot, request);
}

int ns_mpi_test(void **request, int *done) {
    int flag = 0, code = MPI_Test((MPI_Request *)*request, &flag, MPI_STATUS_IGNORE);
    *done = flag;
    if (code == MPI_SUCCESS && flag) { free(*request); *request = NULL; }
    return code;
}

int ns_mpi_wait(void **request) {
    int code = MPI_Wait((MPI_Request *)*request, MPI_STATUS_IGNORE);
    free(*request);
    *request = NULL;
    return code;
}

int ns_mpi_broadcast_bytes(void *buffer, long count, int root) {
    if (count > INT_MAX) return MPI_ERR_COUNT;
    return MPI_Bcast(buffer, (int)count, MPI_BYTE, root, MPI_COMM_WORLD);
}

void ns_mpi_abort(int code) { MPI_Abort(MPI_COMM_WORLD, code); }

int ns_mpi_finalize(void) {
    for (int s = 0; s < slot_count; s++) MPI_Comm_free(&slot_comms[s]);
    free(slot_comms);
    slot_comms = NULL;
    slot_count = 0;
    return MPI_Finalize();
}

void ns_mpi_library_version(char *buffer, size_t size) {
    char version[MPI_MAX_LIBRARY_VERSION_STRING];
    int length = 0;
    MPI_Get_library_version(version, &length);
    if (size == 0) return;
    strncpy(buffer, version, size - 1);
    buffer[size - 1] = 0;
}
