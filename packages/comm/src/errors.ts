/** Base class of every error raised by @hpdl/comm. */
export class CommError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** A peer died, or its connection dropped: names the rank and the operation that needed it. */
export class PeerLostError extends CommError {
  constructor(readonly lostRank: number, readonly operation: string, detail: string) {
    super(`${operation} failed: rank ${lostRank} was lost (${detail})`);
  }
}

/** An operation did not complete within its timeout. */
export class CommTimeoutError extends CommError {
  constructor(readonly operation: string, readonly timeoutMs: number) {
    super(`${operation} did not complete within ${timeoutMs} ms`);
  }
}

/** Ranks called different collectives, or the same one with different arguments (debug mode). */
export class CollectiveMismatchError extends CommError {}

/** A received frame is malformed, oversized or unauthenticated. */
export class ProtocolError extends CommError {}

/** Bad arguments: wrong types, ranks out of range, buffers too small. */
export class CommUsageError extends CommError {}
