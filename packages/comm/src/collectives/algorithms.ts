// Collective algorithms over point-to-point messages, chosen by size as MPI libraries do.
// Every function takes a Channel: the communicator's ranks and an internal send/receive pair whose
// messages are private to one collective call.
import { alloc, dtypeCode, type Buf } from '../dtypes.js';
import { finishAvg, reduceInto, type ReduceOp } from './ops.js';
import { scratchPool } from '../scratch.js';
import type { Arena, Summable } from './simd.js';

/** The point-to-point pair one collective call runs on (ranks are communicator ranks). */
export interface Channel {
  rank: number;
  size: number;
  /** Resolves when the buffer may be reused; undefined when it already may (a small message). */
  send(dst: number, buf: Buf): Promise<void> | undefined;
  recv(src: number, into?: Buf): Promise<Buf>;
}

/** Messages below this many bytes use latency-bound algorithms (recursive doubling, trees). */
export const SMALL_BYTES = 64 * 1024;

/** Block boundaries splitting n elements into p nearly equal parts (sizes differ by at most one). */
export function blocks(n: number, p: number): number[] {
  const b = new Array<number>(p + 1);
  const q = Math.floor(n / p);
  const r = n % p;
  for (let i = 0; i <= p; i++) b[i] = i * q + Math.min(i, r);
  return b;
}

const mod = (a: number, p: number) => ((a % p) + p) % p;

const DONE: Promise<void> = Promise.resolve();
/** ch.send as a promise in every case (a small message is sent at once and returns none). */
const sendPromise = (ch: Channel, dst: number, buf: Buf): Promise<void> => ch.send(dst, buf) ?? DONE;

// Scratch memory for reductions comes from the process's pool (scratch.ts): WebAssembly memory
// where SIMD runs, so that blocks received into it are summed in place. Collectives may run
// concurrently on several communicators: each call takes its own buffer. A call that fails does not
// give its buffer back: a message it was waiting for may still arrive into it.
interface Scratch {
  buf: Buf;
  arena: Arena | null;
  release(): void;
}

/** A scratch typed array of `length` elements like `like`. */
function acquire(like: Buf, length: number): Scratch {
  const entry = scratchPool.take(length * like.BYTES_PER_ELEMENT, { arena: true });
  const ctor = like.constructor as new (b: ArrayBuffer, o: number, n: number) => Buf;
  return { buf: new ctor(entry.buffer, 0, length), arena: entry.arena, release: () => scratchPool.give(entry) };
}

/** acc op= other, where acc is scratch: sums run in place in WebAssembly memory when they can. */
function accumulate(scratch: Scratch, acc: Buf, other: Buf, op: ReduceOp): void {
  if ((op === 'sum' || op === 'avg') && scratch.arena?.add(acc as Summable, other as Summable)) return;
  reduceInto(acc, other, op); // every operator is commutative: acc holds the other rank's part
}

async function exchange(ch: Channel, dst: number, out: Buf, src: number, into?: Buf): Promise<Buf> {
  // The receive is posted before the send: measured on loopback, twice as fast as the other order.
  const got = ch.recv(src, into);
  const sent = ch.send(dst, out);
  if (sent) await Promise.all([sent, got]);
  return got;
}

/** Dissemination barrier: ceil(log2 p) rounds of empty messages. */
export async function barrier(ch: Channel): Promise<void> {
  const empty = new Uint8Array(0);
  for (let k = 1; k < ch.size; k *= 2) await exchange(ch, mod(ch.rank + k, ch.size), empty, mod(ch.rank - k, ch.size));
}

/** Binomial-tree broadcast from `root`, in place. */
export async function broadcast(ch: Channel, buf: Buf, root: number): Promise<void> {
  const { size } = ch;
  const rel = mod(ch.rank - root, size);
  let mask = 1;
  while (mask < size) {
    if (rel & mask) {
      await ch.recv(mod(rel - mask + root, size), buf);
      break;
    }
    mask <<= 1;
  }
  mask >>= 1;
  const sends: Promise<void>[] = [];
  while (mask > 0) {
    if (rel + mask < size) sends.push(sendPromise(ch, mod(rel + mask + root, size), buf));
    mask >>= 1;
  }
  await Promise.all(sends);
}

/** Binomial-tree reduce to `root`: the result lands in `buf` on the root; other ranks' buf is unchanged. */
export async function reduce(ch: Channel, buf: Buf, root: number, op: ReduceOp): Promise<void> {
  const { size } = ch;
  const rel = mod(ch.rank - root, size);
  const acc = rel === 0 ? buf : (buf.slice() as Buf);
  const scratch = acquire(buf, buf.length);
  const tmp = scratch.buf;
  for (let mask = 1; mask < size; mask <<= 1) {
    if (rel & mask) {
      await ch.send(mod(rel - mask + root, size), acc);
      break;
    }
    if (rel + mask < size) {
      await ch.recv(mod(rel + mask + root, size), tmp);
      reduceInto(acc, tmp, op);
    }
  }
  scratch.release(); // not on failure: a message may still arrive into it
  if (rel === 0 && op === 'avg') finishAvg(buf, size);
}

/**
 * Recursive-doubling allreduce for small messages. A rank count that is not a power of two is
 * folded first: the first 2*(p - p') ranks pair up, odd ones hand their data to even ones and wait
 * for the result.
 */
async function allreduceRecursiveDoubling(ch: Channel, buf: Buf, op: ReduceOp): Promise<void> {
  const { rank, size } = ch;
  let pof2 = 1;
  while (pof2 * 2 <= size) pof2 *= 2;
  const rem = size - pof2;
  const tmp = alloc(dtypeCode(buf), buf.length);
  let newRank: number;
  if (rank < 2 * rem) {
    if (rank % 2 === 1) {
      await ch.send(rank - 1, buf);
      newRank = -1;
    } else {
      await ch.recv(rank + 1, tmp);
      reduceInto(buf, tmp, op);
      newRank = rank / 2;
    }
  } else newRank = rank - rem;
  if (newRank >= 0) {
    const real = (r: number) => (r < rem ? r * 2 : r + rem);
    for (let mask = 1; mask < pof2; mask <<= 1) {
      const partner = real(newRank ^ mask);
      await exchange(ch, partner, buf, partner, tmp);
      reduceInto(buf, tmp, op);
    }
  }
  if (rank < 2 * rem) {
    if (rank % 2 === 1) await ch.recv(rank - 1, buf);
    else await ch.send(rank + 1, buf);
  }
}

/**
 * Ring reduce-scatter of `buf` split into p blocks, leaving `buf` as it is: after p-1 steps the
 * reduction of block (rank + shift) mod p is in the returned scratch (the caller copies it out and
 * releases the scratch). Every step's receives are posted before anything is sent, each into a
 * scratch block of its own: a message that arrives before its receive is posted is read into other
 * memory and copied again. Each step's received block is reduced with this rank's block where it
 * landed, and sent on from there in the next step; sends and receives of a step overlap, and each
 * segment is reduced as soon as it arrives.
 */
async function ringReduceScatter(ch: Channel, buf: Buf, bounds: number[], op: ReduceOp, shift: number, after?: () => void): Promise<{ result: Buf; scratch: Scratch }> {
  const { rank, size } = ch;
  const right = mod(rank + 1, size);
  const left = mod(rank - 1, size);
  let maxBlock = 0;
  for (let i = 0; i < size; i++) maxBlock = Math.max(maxBlock, bounds[i + 1]! - bounds[i]!);
  const scratch = acquire(buf, maxBlock * (size - 1));
  const seg = Math.max(1, Math.floor(SEGMENT_BYTES / buf.BYTES_PER_ELEMENT));
  const block = (s: number, off: number) => mod(rank + shift - s - off, size);
  const landed: Buf[] = [];
  const recvs: Promise<Buf>[][] = [];
  for (let s = 0; s < size - 1; s++) {
    const rb = block(s, 2);
    const len = bounds[rb + 1]! - bounds[rb]!;
    const tmp = scratch.buf.subarray(s * maxBlock, s * maxBlock + len) as Buf;
    const step: Promise<Buf>[] = [];
    for (let o = 0; o < len || o === 0; o += seg) step.push(ch.recv(left, tmp.subarray(o, Math.min(o + seg, len)) as Buf));
    landed.push(tmp);
    recvs.push(step);
  }
  // The caller's later receives from the same neighbour queue behind these (see allreduce).
  after?.();
  // When one fails the rest fail too: mark them handled, so that only the first error surfaces
  // (an unhandled rejection would end the process before it could report).
  for (const q of recvs.flat()) q.catch(() => {});
  let prev: Buf | null = null;
  for (let s = 0; s < size - 1; s++) {
    const sb = block(s, 1);
    const rb = block(s, 2);
    const out = prev ?? (buf.subarray(bounds[sb]!, bounds[sb + 1]!) as Buf);
    const mine = buf.subarray(bounds[rb]!, bounds[rb + 1]!) as Buf;
    const acc = landed[s]!;
    const sends: Promise<void>[] = [];
    for (let o = 0; o < out.length || o === 0; o += seg) sends.push(sendPromise(ch, right, out.subarray(o, Math.min(o + seg, out.length)) as Buf));
    for (const q of sends) q.catch(() => {});
    const step = recvs[s]!;
    for (let i = 0; i < step.length; i++) {
      const got = await step[i]!;
      accumulate(scratch, acc.subarray(i * seg, i * seg + got.length) as Buf, mine.subarray(i * seg, i * seg + got.length) as Buf, op);
    }
    await Promise.all(sends);
    prev = acc;
  }
  return { result: prev!, scratch };
}

/** Size of the pieces a ring step's block is sent in, so reduction overlaps reception. */
export const SEGMENT_BYTES = 4 * 1024 * 1024;

/** Posts the receives of a ring allgather on `buf` (see ringAllgather), in step order. */
function postAllgather(ch: Channel, buf: Buf, bounds: number[], shift: number): Promise<Buf>[] {
  const { rank, size } = ch;
  const left = mod(rank - 1, size);
  const recvs: Promise<Buf>[] = [];
  for (let s = 0; s < size - 1; s++) {
    const rb = mod(rank + shift - s - 1, size);
    recvs.push(ch.recv(left, buf.subarray(bounds[rb]!, bounds[rb + 1]!) as Buf));
  }
  for (const q of recvs) q.catch(() => {});
  return recvs;
}

/**
 * Ring allgather on `buf` split into p blocks, rank r starting with block (r + shift) mod p.
 * Receives are posted up front (straight into their blocks), or were by the caller.
 */
async function ringAllgather(ch: Channel, buf: Buf, bounds: number[], shift: number, posted?: Promise<Buf>[]): Promise<void> {
  const { rank, size } = ch;
  const right = mod(rank + 1, size);
  const recvs = posted ?? postAllgather(ch, buf, bounds, shift);
  for (let s = 0; s < size - 1; s++) {
    const sb = mod(rank + shift - s, size);
    await Promise.all([ch.send(right, buf.subarray(bounds[sb]!, bounds[sb + 1]!) as Buf), recvs[s]!]);
  }
}

async function allreduceHalving(ch: Channel, buf: Buf, op: ReduceOp): Promise<void> {
  // The work is in Halving's small synchronous methods; this driver only awaits. (One async
  // function holding it all took TurboFan ~150 ms of CPU to optimise, on a benchmark's clock.)
  const h = new Halving(ch, buf, op);
  const n = h.steps.length;
  for (let i = 0; i < n; i++) {
    const sent = h.send(i);
    await h.halves[i];
    h.reduce(i);
    await sent;
  }
  h.reduced();
  for (let i = n - 1; i >= 0; i--) await Promise.all([h.sendBack(i), h.gathered[i]]);
}

interface HalvingStep {
  partner: number;
  keep: [number, number];
  give: [number, number];
}

/**
 * Rabenseifner's allreduce for a power-of-two rank count: reduce-scatter by recursive halving (the
 * partner at distance p/2, then p/4, ...; each step exchanges half of what is left), then allgather
 * by recursive doubling in the reverse order. It moves the same bytes as the ring, in log2(p) steps
 * each way instead of p - 1, which matters when ranks share cores and every step costs wake-ups.
 * All receives are posted first: the reduce-scatter's into scratch, the allgather's straight into
 * the blocks they fill (a partner sends those only after it has all of this rank's data for them).
 * Step i's half lands in scratch, is reduced there with this rank's data for it, and the next step
 * sends from it and reduces into the next scratch part: buf is read, not written, until the final
 * block is copied out.
 */
class Halving {
  readonly steps: HalvingStep[] = [];
  /** The reduce-scatter's receives, by step. */
  readonly halves: Promise<Buf>[];
  /** The allgather's receives, by step. */
  readonly gathered: Promise<Buf>[];
  private readonly bounds: number[];
  private readonly scratch: Scratch;
  private readonly landed: Buf[] = []; // where each step's half lands, in scratch
  private cur: Buf | null = null; // the reduced data of the previous step's kept range
  private curLo = 0; // ... which starts at this element of buf

  constructor(
    private readonly ch: Channel,
    private readonly buf: Buf,
    private readonly op: ReduceOp,
  ) {
    const { rank, size } = ch;
    this.bounds = blocks(buf.length, size);
    let range: [number, number] = [0, size];
    for (let mask = size >> 1; mask >= 1; mask >>= 1) {
      const mid = (range[0] + range[1]) >> 1;
      const lower = (rank & mask) === 0;
      const keep: [number, number] = lower ? [range[0], mid] : [mid, range[1]];
      this.steps.push({ partner: rank ^ mask, keep, give: lower ? [mid, range[1]] : [range[0], mid] });
      range = keep;
    }
    let total = 0;
    for (const st of this.steps) total += this.len(st.keep);
    this.scratch = acquire(buf, total);
    let off = 0;
    for (const st of this.steps) {
      const len = this.len(st.keep);
      this.landed.push(this.scratch.buf.subarray(off, off + len) as Buf);
      off += len;
    }
    this.halves = this.steps.map((st, i) => ch.recv(st.partner, this.landed[i]!));
    this.gathered = this.steps.map((st) => ch.recv(st.partner, this.part(st.give)));
    for (const q of this.halves) q.catch(() => {});
    for (const q of this.gathered) q.catch(() => {});
  }

  private len(r: [number, number]): number {
    return this.bounds[r[1]]! - this.bounds[r[0]]!;
  }

  private part(r: [number, number]): Buf {
    return this.buf.subarray(this.bounds[r[0]]!, this.bounds[r[1]]!) as Buf;
  }

  /** This rank's current data for range r: reduced so far (scratch) or its own (buf). */
  private from(r: [number, number]): Buf {
    const c = this.cur;
    return c ? (c.subarray(this.bounds[r[0]]! - this.curLo, this.bounds[r[1]]! - this.curLo) as Buf) : this.part(r);
  }

  /** Reduce-scatter step i: sends the half the partner keeps. */
  send(i: number): Promise<void> {
    const sent = sendPromise(this.ch, this.steps[i]!.partner, this.from(this.steps[i]!.give));
    sent.catch(() => {});
    return sent;
  }

  /** Reduce-scatter step i, its half received: reduced into where it landed. */
  reduce(i: number): void {
    const st = this.steps[i]!;
    accumulate(this.scratch, this.landed[i]!, this.from(st.keep), this.op);
    this.cur = this.landed[i]!;
    this.curLo = this.bounds[st.keep[0]]!;
  }

  /** The reduce-scatter is done: this rank's block goes to buf, the scratch back to the pool. */
  reduced(): void {
    this.part(this.steps[this.steps.length - 1]!.keep).set(this.cur as never);
    this.scratch.release();
  }

  /** Allgather step i (run from the last reduce-scatter step back): sends all this rank has of step i's range. */
  sendBack(i: number): Promise<void> {
    return sendPromise(this.ch, this.steps[i]!.partner, this.part(this.steps[i]!.keep));
  }
}

/**
 * Allreduce in place: recursive doubling for small messages; for large ones Rabenseifner's when the
 * rank count is a power of two, else ring reduce-scatter + allgather.
 */
export async function allreduce(ch: Channel, buf: Buf, op: ReduceOp): Promise<void> {
  const { size } = ch;
  if (size > 1) {
    if (buf.byteLength < SMALL_BYTES || buf.length < size) await allreduceRecursiveDoubling(ch, buf, op);
    else if ((size & (size - 1)) === 0) await allreduceHalving(ch, buf, op);
    else {
      const bounds = blocks(buf.length, size);
      // The allgather's receives are posted with the reduce-scatter's, straight into their blocks.
      // The first can arrive while this rank still reduces, but only into the one block the
      // reduce-scatter neither reduces into nor sends late: (rank + shift - 1) mod p, sent at step 0.
      let gathered: Promise<Buf>[] = [];
      const { result, scratch } = await ringReduceScatter(ch, buf, bounds, op, 1, () => (gathered = postAllgather(ch, buf, bounds, 1)));
      buf.set(result as never, bounds[mod(ch.rank + 1, size)]!);
      scratch.release();
      await ringAllgather(ch, buf, bounds, 1, gathered);
    }
  }
  if (op === 'avg') finishAvg(buf, size);
}

/** Reduce-scatter of p equal blocks: `recv` gets block `rank` of the reduction of everyone's `send`. */
export async function reduceScatter(ch: Channel, send: Buf, recv: Buf, op: ReduceOp): Promise<void> {
  const n = recv.length;
  const bounds = Array.from({ length: ch.size + 1 }, (_, i) => i * n);
  if (ch.size > 1) {
    const { result, scratch } = await ringReduceScatter(ch, send, bounds, op, 0);
    recv.set(result as never);
    scratch.release();
  } else recv.set(send.subarray(0, n) as never);
  if (op === 'avg') finishAvg(recv, ch.size);
}

/** Allgather of equal blocks: `recv` (p blocks) gets everyone's `send` in rank order (ring). */
export async function allgather(ch: Channel, send: Buf, recv: Buf): Promise<void> {
  const n = send.length;
  recv.set(send as never, ch.rank * n);
  if (ch.size === 1 || n === 0) return;
  const bounds = Array.from({ length: ch.size + 1 }, (_, i) => i * n);
  await ringAllgather(ch, recv, bounds, 0);
}

/** Gather of equal blocks to `root` (recv used on the root only). */
export async function gather(ch: Channel, send: Buf, recv: Buf | null, root: number): Promise<void> {
  const n = send.length;
  if (ch.rank !== root) return ch.send(root, send);
  recv!.set(send as never, root * n);
  await Promise.all(
    Array.from({ length: ch.size }, (_, r) => r).filter((r) => r !== root).map((r) => ch.recv(r, recv!.subarray(r * n, (r + 1) * n) as Buf)),
  );
}

/** Scatter of equal blocks from `root`: rank r's `recv` gets block r of the root's `send`. */
export async function scatter(ch: Channel, send: Buf | null, recv: Buf, root: number): Promise<void> {
  const n = recv.length;
  if (ch.rank !== root) {
    await ch.recv(root, recv);
    return;
  }
  recv.set(send!.subarray(root * n, (root + 1) * n) as never);
  await Promise.all(
    Array.from({ length: ch.size }, (_, r) => r).filter((r) => r !== root).map((r) => ch.send(r, send!.subarray(r * n, (r + 1) * n) as Buf)),
  );
}

/** All-to-all of equal blocks by pairwise exchange: block j of `send` goes to rank j. */
export async function alltoall(ch: Channel, send: Buf, recv: Buf): Promise<void> {
  const { rank, size } = ch;
  const n = send.length / size;
  recv.set(send.subarray(rank * n, (rank + 1) * n) as never, rank * n);
  for (let s = 1; s < size; s++) {
    const dst = mod(rank + s, size);
    const src = mod(rank - s, size);
    await exchange(ch, dst, send.subarray(dst * n, (dst + 1) * n) as Buf, src, recv.subarray(src * n, (src + 1) * n) as Buf);
  }
}
