/* The reference: the OSU micro-benchmarks' loops (osu_latency, osu_bw, osu_allreduce, osu_bcast,
 * osu_allgather) against MPI, with the sizes and counts the Node side uses (passed as arguments).
 * Prints one JSON object per line: {"bench":..., "bytes":..., "us":...} (bw in MB/s as "mbps"). */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void counts(long bytes, long small, int *iters, int *skip, char **argv, int base) {
  int large = bytes > small;
  *iters = atoi(argv[base + (large ? 2 : 0)]);
  *skip = atoi(argv[base + (large ? 3 : 1)]);
}

int main(int argc, char **argv) {
  /* usage: osu MODE SMALL ITS_SMALL SKIP_SMALL ITS_LARGE SKIP_LARGE WINDOW SIZE... */
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const char *mode = argv[1];
  long small = atol(argv[2]);
  int window = atoi(argv[7]);
  for (int a = 8; a < argc; a++) {
    long bytes = atol(argv[a]);
    int iters, skip;
    counts(bytes, small, &iters, &skip, argv, 3);
    char *s = malloc(bytes > 0 ? bytes : 1), *r = malloc(bytes > 0 ? bytes : 1);
    memset(s, 1, bytes);
    memset(r, 0, bytes);
    double t0 = 0;
    if (!strcmp(mode, "latency")) {
      for (int i = 0; i < iters + skip; i++) {
        if (i == skip) t0 = MPI_Wtime();
        if (rank == 0) {
          MPI_Send(s, bytes, MPI_CHAR, 1, 1, MPI_COMM_WORLD);
          MPI_Recv(r, bytes, MPI_CHAR, 1, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        } else {
          MPI_Recv(r, bytes, MPI_CHAR, 0, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
          MPI_Send(s, bytes, MPI_CHAR, 0, 1, MPI_COMM_WORLD);
        }
      }
      if (rank == 0) printf("{\"bench\":\"latency\",\"bytes\":%ld,\"us\":%.3f}\n", bytes, (MPI_Wtime() - t0) * 1e6 / (2.0 * iters));
    } else if (!strcmp(mode, "bw")) {
      MPI_Request req[1024];
      char *big = malloc((bytes > 0 ? bytes : 1) * (size_t)window);
      for (int i = 0; i < iters + skip; i++) {
        if (i == skip) t0 = MPI_Wtime();
        if (rank == 0) {
          for (int w = 0; w < window; w++) MPI_Isend(s, bytes, MPI_CHAR, 1, 100, MPI_COMM_WORLD, &req[w]);
          MPI_Waitall(window, req, MPI_STATUSES_IGNORE);
          MPI_Recv(r, 4, MPI_CHAR, 1, 101, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        } else {
          for (int w = 0; w < window; w++) MPI_Irecv(big + (size_t)w * bytes, bytes, MPI_CHAR, 0, 100, MPI_COMM_WORLD, &req[w]);
          MPI_Waitall(window, req, MPI_STATUSES_IGNORE);
          MPI_Send(s, 4, MPI_CHAR, 0, 101, MPI_COMM_WORLD);
        }
      }
      if (rank == 0) printf("{\"bench\":\"bw\",\"bytes\":%ld,\"mbps\":%.3f}\n", bytes, bytes / 1e6 * iters * window / (MPI_Wtime() - t0));
      free(big);
    } else {
      /* collectives: float32 elements */
      long n = bytes / 4;
      float *fs = malloc((n > 0 ? n : 1) * 4 * (size_t)size), *fr = malloc((n > 0 ? n : 1) * 4 * (size_t)size);
      for (long i = 0; i < n; i++) fs[i] = 1.0f;
      double total = 0;
      for (int i = 0; i < iters + skip; i++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double t = MPI_Wtime();
        if (!strcmp(mode, "allreduce")) MPI_Allreduce(fs, fr, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        else if (!strcmp(mode, "bcast")) MPI_Bcast(fs, n, MPI_FLOAT, 0, MPI_COMM_WORLD);
        else MPI_Allgather(fs, n, MPI_FLOAT, fr, n, MPI_FLOAT, MPI_COMM_WORLD);
        if (i >= skip) total += MPI_Wtime() - t;
      }
      double avg = total / iters, maxavg;
      MPI_Reduce(&avg, &maxavg, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
      if (rank == 0) printf("{\"bench\":\"%s\",\"p\":%d,\"bytes\":%ld,\"us\":%.3f}\n", mode, size, bytes, maxavg * 1e6);
      free(fs);
      free(fr);
    }
    free(s);
    free(r);
  }
  MPI_Finalize();
  return 0;
}
