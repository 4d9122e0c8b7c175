import { Arena } from './collectives/simd.js';

/**
 * A piece of memory kept for reuse: a plain ArrayBuffer, or WebAssembly memory (an Arena) in which
 * the SIMD kernels sum received blocks in place.
 */
export interface ScratchBuffer {
  readonly bytes: number;
  readonly buffer: ArrayBuffer;
  readonly arena: Arena | null;
}

/**
 * Memory reused by large messages that arrive before their receive and by the collectives'
 * reductions. Fresh memory is not free: the first write to each page faults, about 2 ms per MiB on
 * our machines, more than moving the bytes over loopback (16 ms for the 8 MiB a 16 MiB allreduce
 * receives into at p = 2, against 0.2 ms into memory used before). One pool serves both, so that
 * memory one of them freed serves the other.
 *
 * A buffer is taken whole by one user and given back (or kept by it: a receive without a buffer of
 * its own gets the memory its message arrived in; a collective that failed keeps its scratch, which
 * a message it waited for may still arrive into). `take` hands out a kept buffer of at least n and
 * at most twice n bytes, so that small messages do not tie up large buffers; the pool keeps at most
 * `maxBytes` and `maxBuffers`, dropping the smallest first (the large ones cost most to fault in).
 */
export class ScratchPool {
  private readonly free: ScratchBuffer[] = [];
  private held = 0;

  constructor(
    readonly maxBytes: number,
    readonly maxBuffers: number,
  ) {}

  /** A buffer of at least `bytes`; with `arena`, WebAssembly memory where SIMD is available. */
  take(bytes: number, o: { arena?: boolean } = {}): ScratchBuffer {
    const n = Math.max(bytes, 8);
    let best = -1;
    this.free.forEach((b, i) => {
      if (b.bytes < n || b.bytes > 2 * n || (o.arena && !b.arena && Arena.available())) return;
      if (best < 0 || b.bytes < this.free[best]!.bytes) best = i;
    });
    if (best >= 0) {
      const b = this.free.splice(best, 1)[0]!;
      this.held -= b.bytes;
      return b;
    }
    const arena = o.arena ? Arena.create(n) : null;
    return arena ? { bytes: n, buffer: arena.buffer, arena } : { bytes: n, buffer: new ArrayBuffer(n), arena: null };
  }

  /** Gives a buffer back for reuse. */
  give(b: ScratchBuffer): void {
    if (b.bytes > this.maxBytes) return;
    this.free.push(b);
    this.held += b.bytes;
    while (this.held > this.maxBytes || this.free.length > this.maxBuffers) {
      let smallest = 0;
      this.free.forEach((x, i) => {
        if (x.bytes < this.free[smallest]!.bytes) smallest = i;
      });
      this.held -= this.free.splice(smallest, 1)[0]!.bytes;
    }
  }

  /** Bytes kept for reuse now. */
  get heldBytes(): number {
    return this.held;
  }
}

/** The process's pool. */
export const scratchPool = new ScratchPool(256 * 1024 * 1024, 64);
