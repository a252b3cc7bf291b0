#ifndef NS_MPI_H
#define NS_MPI_H
/* MPI's predefined handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_DOUBLE, MPI_BYTE, ...) are macros,
   which Swift cannot import: these calls use them on MPI_COMM_WORLD. Each returns MPI's error
   code (MPI_SUCCESS, 0, when it worked); with MPI's default error handler a failed call ends
   the whole job instead. */
#include <stddef.h>

/* MPI_Init_thread asking for MPI_THREAD_FUNNELED (only the main thread calls MPI); 0 on success. */
int ns_mpi_init(void);
/* Whether MPI_Init has run and MPI_Finalize has not. */
int ns_mpi_active(void);
int ns_mpi_rank(void);
int ns_mpi_size(void);
int ns_mpi_barrier(void);
/* Every process's `count` floats (doubles, bytes) from `send`, rank after rank, into `receive`
   (size * count). */
int ns_mpi_allgather_float(const float *send, long count, float *receive);
int ns_mpi_allgather_double(const double *send, long count, double *receive);
/* Piece r of `send` (count floats each, size pieces) to rank r; piece r of `receive` from rank r. */
int ns_mpi_alltoall_float(const float *send, long count, float *receive);
/* Non-blocking forms of the two: they start the exchange and store its request in `*request`
   (an MPI_Request allocated here); ns_mpi_test sets `*done` once it has completed (then, and
   after ns_mpi_wait, the request is freed and `*request` is NULL). Only the main thread calls
   them, and the buffers must stay untouched until the request completes.
   Each `slot` (>= 0) has a communicator of its own (MPI_COMM_WORLD duplicated the first time
   the slot is used, which every process must do at the same point): MPI requires collectives
   on a communicator to start in the same order on every process, and a slot's exchanges start
   when each process sees the previous one complete, which differs between processes. */
int ns_mpi_ialltoall_float(const float *send, long count, float *receive, int slot, void **request);
int ns_mpi_iallgather_float(const float *send, long count, float *receive, int slot, void **request);
int ns_mpi_test(void **request, int *done);
int ns_mpi_wait(void **request);
/* Rank `root`'s `count` bytes at `buffer` into every process's `buffer`. */
int ns_mpi_broadcast_bytes(void *buffer, long count, int root);
/* Ends every process of the job with `code`. */
void ns_mpi_abort(int code);
int ns_mpi_finalize(void);
/* The library's version string (MPI_Get_library_version), into `buffer`. */
void ns_mpi_library_version(char *buffer, size_t size);

#endif
