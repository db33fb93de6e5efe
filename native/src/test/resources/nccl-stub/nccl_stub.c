/* A stand-in for libnccl.so.2 that NcclStubTest builds with gcc: the functions nccl_glue.cpp looks
 * up, with NCCL's ABI, for a world of one on host memory. It lets the host tests drive the JNI
 * entry points, their error paths and NcclChannel's grouping for real, without a GPU, and it is
 * stricter than it needs to be where that catches mistakes on our side:
 *   - a send or receive outside a group fails (NCCL would block on a send to itself there);
 *   - at ncclGroupEnd the i-th send meets the i-th receive: same size, communicator and stream,
 *     else the whole group fails and nothing is copied; then every pair is copied (memcpy);
 *   - any datatype but ncclUint8 (1), a peer other than 0, an unknown communicator, a null buffer
 *     with bytes to move fail;
 *   - ncclCommInitRank takes only a world of one and only the id ncclGetUniqueId made last, all 128
 *     bytes of it (the id travels by value), so a garbled id fails;
 *   - ncclCommInitRankConfig wants NCCL_CONFIG_INITIALIZER's magic, a version of 2.14 or later and
 *     blocking 0 or 1. A non-blocking communicator behaves as NCCL's: its set-up, ncclGroupEnd and
 *     ncclCommFinalize return ncclInProgress and stay in progress for STUB_POLLS polls of
 *     ncclCommGetAsyncError; any call on it while in progress fails with ncclInvalidArgument (NCCL
 *     wants the poll first), and so does any call on it after an error (NCCL's ncclCommEnsureReady
 *     hands that error back): a failed ncclGroupEnd leaves its non-blocking communicators in its
 *     error, as NCCL's group clean-up does. Stricter than NCCL: it must be finalized before
 *     ncclCommDestroy (NCCL would finalize it itself; we always do). In a world of more than one its set-up never
 *     finishes (a peer that never arrives) until ncclCommAbort; stub_fail_next_init makes the next
 *     set-up end in ncclRemoteError.
 * Failures return NCCL's codes with a text for ncclGetLastError. Built with -DSTUB_WITHOUT_RECV it
 * lacks ncclRecv (the missing-function path). stub_live_comms, stub_groups and stub_aborts are the
 * test's view of what happened (communicators not destroyed yet; groups ended successfully;
 * communicators aborted). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define ID_BYTES 128
typedef struct {
  char internal[ID_BYTES];
} ncclUniqueId;
typedef int ncclResult_t;
enum { SUCCESS = 0, INVALID_ARGUMENT = 4, INVALID_USAGE = 5, REMOTE_ERROR = 6, IN_PROGRESS = 7 };
enum { UINT8 = 1 };
#define STUB_POLLS 3
#define FOREVER -1

typedef struct {
  size_t size;
  unsigned int magic;
  unsigned int version;
  int blocking;
} ncclConfig_t; /* NCCL 2.14's fields; NCCL reads a config up to the size it states */

struct comm {
  int live;
  int nonblocking;
  int polls;    /* polls of ncclCommGetAsyncError left before the last call is done; FOREVER: never */
  int outcome;  /* what the last call ends in */
  int finalized;
};
#define MAX_COMMS 16
#define MAX_OPS 64
static struct comm comms[MAX_COMMS];
static ncclUniqueId lastId;
static unsigned ids;
static int groups;
static int aborts;
static int failNextInit;

/* NCCL's group state and last error are per thread */
static __thread char lastError[256];
static __thread int depth;
static __thread int nops;
static __thread struct op {
  int send;
  void* buf;
  size_t bytes;
  void* comm;
  void* stream;
} ops[MAX_OPS];

static ncclResult_t fail(ncclResult_t r, const char* what) {
  snprintf(lastError, sizeof lastError, "stub: %s", what);
  return r;
}

static int known(void* c) {
  for (int i = 0; i < MAX_COMMS; i++)
    if (c == (void*)&comms[i] && comms[i].live) return 1;
  return 0;
}

ncclResult_t ncclGetVersion(int* version) {
  if (version == NULL) return fail(INVALID_ARGUMENT, "ncclGetVersion: version is NULL");
  *version = 22804;
  return SUCCESS;
}

ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
  if (id == NULL) return fail(INVALID_ARGUMENT, "ncclGetUniqueId: id is NULL");
  ids++;
  for (int i = 0; i < ID_BYTES; i++) lastId.internal[i] = (char)(i * 31 + ids * 7 + 1);
  *id = lastId;
  return SUCCESS;
}

static ncclResult_t init(void** comm, int nranks, ncclUniqueId* id, int rank, int nonblocking) {
  char why[128];
  if (comm == NULL) return fail(INVALID_ARGUMENT, "ncclCommInitRank: comm is NULL");
  if (rank < 0 || rank >= nranks || (!nonblocking && nranks != 1)) {
    snprintf(why, sizeof why, "a world of one only, asked for rank %d of %d", rank, nranks);
    return fail(INVALID_ARGUMENT, why);
  }
  if (ids == 0 || memcmp(id->internal, lastId.internal, ID_BYTES) != 0) return fail(INVALID_ARGUMENT, "not the unique id ncclGetUniqueId made last");
  for (int i = 0; i < MAX_COMMS; i++) {
    if (!comms[i].live) {
      memset(&comms[i], 0, sizeof comms[i]);
      comms[i].live = 1;
      comms[i].nonblocking = nonblocking;
      *comm = &comms[i];
      if (!nonblocking) return SUCCESS;
      comms[i].polls = nranks > 1 ? FOREVER : STUB_POLLS;
      comms[i].outcome = failNextInit ? REMOTE_ERROR : SUCCESS;
      failNextInit = 0;
      return IN_PROGRESS;
    }
  }
  return fail(INVALID_USAGE, "too many communicators");
}

ncclResult_t ncclCommInitRank(void** comm, int nranks, ncclUniqueId id, int rank) {
  return init(comm, nranks, &id, rank, 0);
}

ncclResult_t ncclCommInitRankConfig(void** comm, int nranks, ncclUniqueId id, int rank, ncclConfig_t* config) {
  char why[128];
  if (config == NULL) return init(comm, nranks, &id, rank, 0);
  if (config->size < sizeof(ncclConfig_t) || config->magic != 0xcafebeef) return fail(INVALID_ARGUMENT, "ncclConfig_t not from NCCL_CONFIG_INITIALIZER");
  if (config->version < 21400) {
    snprintf(why, sizeof why, "ncclConfig_t version %u has no blocking field", config->version);
    return fail(INVALID_ARGUMENT, why);
  }
  if (config->blocking != 0 && config->blocking != 1) {
    snprintf(why, sizeof why, "blocking = %d", config->blocking);
    return fail(INVALID_ARGUMENT, why);
  }
  return init(comm, nranks, &id, rank, !config->blocking);
}

/* A call on a non-blocking communicator whose last call is still in progress, or ended in an
 * error, fails (NCCL: ncclCommEnsureReady): ncclInvalidArgument, or that error. 0: ready. */
static ncclResult_t busy(struct comm* c, const char* call) {
  char why[160];
  if (!c->nonblocking) return SUCCESS;
  if (c->polls != 0) {
    snprintf(why, sizeof why, "%s while the communicator's last call is in progress", call);
    return fail(INVALID_ARGUMENT, why);
  }
  if (c->outcome != SUCCESS) {
    snprintf(why, sizeof why, "%s on a communicator in error %d", call, c->outcome);
    return fail(c->outcome, why);
  }
  return SUCCESS;
}

/* The last call of a non-blocking communicator goes on for a few polls. */
static ncclResult_t inProgress(struct comm* c) {
  if (!c->nonblocking) return SUCCESS;
  c->polls = STUB_POLLS;
  c->outcome = SUCCESS;
  return IN_PROGRESS;
}

ncclResult_t ncclCommGetAsyncError(void* comm, ncclResult_t* state) {
  if (!known(comm) || state == NULL) return fail(INVALID_ARGUMENT, "ncclCommGetAsyncError: unknown communicator");
  struct comm* c = comm;
  if (c->polls == FOREVER) {
    *state = IN_PROGRESS;
  } else if (c->polls > 0) {
    c->polls--;
    *state = IN_PROGRESS;
  } else {
    *state = c->outcome;
    if (c->outcome != SUCCESS) fail(c->outcome, "the set-up failed on a peer");
  }
  return SUCCESS;
}

ncclResult_t ncclCommAbort(void* comm) {
  if (!known(comm)) return fail(INVALID_ARGUMENT, "ncclCommAbort: unknown communicator");
  ((struct comm*)comm)->live = 0;
  aborts++;
  return SUCCESS;
}

ncclResult_t ncclCommFinalize(void* comm) {
  if (!known(comm)) return fail(INVALID_ARGUMENT, "ncclCommFinalize: unknown communicator");
  struct comm* c = comm;
  ncclResult_t r = busy(c, "ncclCommFinalize");
  if (r != SUCCESS) return r;
  c->finalized = 1;
  return inProgress(c);
}

ncclResult_t ncclCommCount(void* comm, int* count) {
  if (!known(comm) || count == NULL) return fail(INVALID_ARGUMENT, "ncclCommCount: unknown communicator");
  *count = 1;
  return SUCCESS;
}

ncclResult_t ncclCommDestroy(void* comm) {
  if (!known(comm)) return fail(INVALID_ARGUMENT, "ncclCommDestroy: unknown communicator");
  struct comm* c = comm;
  ncclResult_t r = busy(c, "ncclCommDestroy");
  if (r != SUCCESS) return r;
  if (c->nonblocking && !c->finalized) return fail(INVALID_USAGE, "ncclCommDestroy of a non-blocking communicator not finalized");
  ((struct comm*)comm)->live = 0;
  return SUCCESS;
}

ncclResult_t ncclGroupStart(void) {
  depth++;
  return SUCCESS;
}

static ncclResult_t enqueue(int send, const void* buf, size_t count, int datatype, int peer, void* comm, void* stream) {
  char why[128];
  const char* call = send ? "ncclSend" : "ncclRecv";
  if (depth == 0) {
    snprintf(why, sizeof why, "%s outside a group", call);
    return fail(INVALID_USAGE, why);
  }
  if (datatype != UINT8) {
    snprintf(why, sizeof why, "%s: datatype %d, not ncclUint8", call, datatype);
    return fail(INVALID_ARGUMENT, why);
  }
  if (peer != 0) {
    snprintf(why, sizeof why, "%s: peer %d in a world of one", call, peer);
    return fail(INVALID_ARGUMENT, why);
  }
  if (!known(comm)) {
    snprintf(why, sizeof why, "%s: unknown communicator", call);
    return fail(INVALID_ARGUMENT, why);
  }
  ncclResult_t ready = busy(comm, call);
  if (ready != SUCCESS) return ready;
  if (buf == NULL && count > 0) {
    snprintf(why, sizeof why, "%s: NULL buffer", call);
    return fail(INVALID_ARGUMENT, why);
  }
  if (nops == MAX_OPS) return fail(INVALID_USAGE, "too many calls in one group");
  ops[nops].send = send;
  ops[nops].buf = (void*)buf;
  ops[nops].bytes = count;
  ops[nops].comm = comm;
  ops[nops].stream = stream;
  nops++;
  return SUCCESS;
}

ncclResult_t ncclSend(const void* buf, size_t count, int datatype, int peer, void* comm, void* stream) {
  return enqueue(1, buf, count, datatype, peer, comm, stream);
}

#ifndef STUB_WITHOUT_RECV
ncclResult_t ncclRecv(void* buf, size_t count, int datatype, int peer, void* comm, void* stream) {
  return enqueue(0, buf, count, datatype, peer, comm, stream);
}
#endif

/* the k-th operation of one side (send or receive), or -1 */
static int nth(int send, int k) {
  for (int i = 0; i < nops; i++)
    if (ops[i].send == send && k-- == 0) return i;
  return -1;
}

ncclResult_t ncclGroupEnd(void) {
  char why[160];
  if (depth == 0) return fail(INVALID_USAGE, "ncclGroupEnd without ncclGroupStart");
  if (--depth > 0) return SUCCESS;
  ncclResult_t r = SUCCESS;
  int pairs = 0;
  for (int k = 0;; k++) {
    int s = nth(1, k), v = nth(0, k);
    if (s < 0 && v < 0) break;
    if (s < 0 || v < 0) {
      snprintf(why, sizeof why, "%s %d has no matching %s", s < 0 ? "receive" : "send", k, s < 0 ? "send" : "receive");
      r = fail(INVALID_USAGE, why);
      break;
    }
    if (ops[s].bytes != ops[v].bytes || ops[s].comm != ops[v].comm || ops[s].stream != ops[v].stream) {
      snprintf(why, sizeof why, "a send of %zu bytes meets a receive of %zu%s", ops[s].bytes, ops[v].bytes,
               ops[s].stream != ops[v].stream ? " on another stream" : ops[s].comm != ops[v].comm ? " on another communicator" : "");
      r = fail(INVALID_USAGE, why);
      break;
    }
    pairs++;
  }
  if (r == SUCCESS) {
    for (int k = 0; k < pairs; k++) {
      int s = nth(1, k), v = nth(0, k);
      if (ops[s].bytes > 0) memmove(ops[v].buf, ops[s].buf, ops[s].bytes);
    }
    groups++;
    /* the communicators of the group's calls go on for a while if non-blocking */
    for (int i = 0; i < nops; i++) {
      if (((struct comm*)ops[i].comm)->nonblocking) r = inProgress(ops[i].comm);
    }
  } else {
    /* NCCL's group clean-up: every non-blocking communicator of a failed group keeps the error */
    for (int i = 0; i < nops; i++) {
      struct comm* c = ops[i].comm;
      if (c->nonblocking) {
        c->polls = 0;
        c->outcome = r;
      }
    }
  }
  nops = 0;
  return r;
}

const char* ncclGetErrorString(ncclResult_t r) {
  switch (r) {
    case SUCCESS: return "stub: no error";
    case INVALID_ARGUMENT: return "stub: invalid argument";
    case INVALID_USAGE: return "stub: invalid usage";
    case REMOTE_ERROR: return "stub: remote error";
    case IN_PROGRESS: return "stub: in progress";
    default: return "stub: unknown result";
  }
}

const char* ncclGetLastError(void* comm) {
  (void)comm;
  return lastError;
}

int stub_live_comms(void) {
  int n = 0;
  for (int i = 0; i < MAX_COMMS; i++) n += comms[i].live;
  return n;
}

int stub_groups(void) {
  return groups;
}

int stub_aborts(void) {
  return aborts;
}

void stub_fail_next_init(void) {
  failNextInit = 1;
}
