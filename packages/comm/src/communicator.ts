import * as algo from './collectives/algorithms.js';
import { checkOp, type ReduceOp } from './collectives/ops.js';
import { alloc, dtypeCode, dtypeName, type Buf } from './dtypes.js';
import type { Engine, Message } from './engine.js';
import { CollectiveMismatchError, CommUsageError } from './errors.js';
import { packObject, unpackObject } from './transport/frame.js';

/** The header of a sendObject message: its payload is the msgpack-encoded object. */
const OBJECT_MARK = 'hpdl:object';

const DONE: Promise<void> = Promise.resolve();

/** Per-call options. */
export interface OpOptions {
  /** Fail with CommTimeoutError after this many milliseconds (default: the communicator's). */
  timeoutMs?: number;
}

/** A pending non-blocking operation, as MPI_Request. */
export class Request<T> {
  private settled = false;
  private value: T | undefined;
  private error: unknown;
  readonly promise: Promise<T>;
  constructor(p: Promise<T>) {
    this.promise = p.then(
      (v) => {
        this.settled = true;
        this.value = v;
        return v;
      },
      (e) => {
        this.settled = true;
        this.error = e;
        throw e;
      },
    );
    this.promise.catch(() => {}); // observed through wait()
  }
  /** Waits for completion (rejects with the operation's error). */
  wait(): Promise<T> {
    return this.promise;
  }
  /** Whether it has completed (successfully or not), without waiting. */
  test(): boolean {
    return this.settled;
  }
  /** The result, once completed successfully. */
  get result(): T | undefined {
    if (this.error) throw this.error;
    return this.value;
  }
}

/** Waits for every request. */
export function waitAll<T>(reqs: Request<T>[]): Promise<T[]> {
  return Promise.all(reqs.map((r) => r.wait()));
}

/** Shared settings of a communicator. */
export interface CommSettings {
  timeoutMs: number;
  debug: boolean;
}

/**
 * A group of ranks that talk among themselves, as MPI_Comm or a torch.distributed process group.
 * Point-to-point messages between two ranks with the same tag arrive in the order they were sent.
 * Collectives must be called by every rank of the communicator in the same order.
 */
export class Communicator {
  /** This process's rank in the communicator. */
  readonly rank: number;
  /** The number of ranks. */
  readonly size: number;
  private collSeq = 0;
  private splitSeq = 0;

  constructor(
    /** Unique among communicators: messages carry it. */
    readonly id: string,
    /** World rank of each communicator rank. */
    readonly group: readonly number[],
    protected readonly engine: Engine,
    readonly settings: CommSettings,
  ) {
    this.rank = group.indexOf(engine.rank);
    this.size = group.length;
  }

  /** World rank of a communicator rank. */
  worldRank(r: number): number {
    return this.group[r]!;
  }

  private peer(r: number, what: string, op: string): number {
    if (!Number.isInteger(r) || r < 0 || r >= this.size) throw new CommUsageError(`${op}: ${what} ${r} is not a rank of this communicator of ${this.size}`);
    return this.group[r]!;
  }

  private userTag(tag: number, op: string): number {
    if (!Number.isInteger(tag) || tag < 0 || tag >= 2 ** 31) throw new CommUsageError(`${op}: tag ${tag} must be an integer in [0, 2^31)`);
    return tag;
  }

  private timeout(o?: OpOptions): number {
    return o?.timeoutMs ?? this.settings.timeoutMs;
  }

  // ---------------------------------------------------------------------------------------------
  // Point to point

  /** Non-blocking send of a typed array, with an optional small object travelling in its header. */
  isend(buf: Buf, dst: number, tag = 0, meta?: unknown, o?: OpOptions): Request<void> {
    const op = `send to rank ${dst} (tag ${tag})`;
    return new Request(
      (async () => {
        const code = dtypeCode(buf);
        await this.engine.send(this.id, this.group, this.peer(dst, 'destination', op), this.userTag(tag, op), buf, code, meta, op, this.timeout(o));
      })(),
    );
  }

  /** Sends a typed array; resolves when the buffer may be reused. */
  send(buf: Buf, dst: number, tag = 0, o?: OpOptions): Promise<void> {
    try {
      const op = `send to rank ${dst} (tag ${tag})`;
      return this.engine.send(this.id, this.group, this.peer(dst, 'destination', op), this.userTag(tag, op), buf, dtypeCode(buf), undefined, op, this.timeout(o)) ?? DONE;
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Non-blocking receive of the next message from `src` with `tag`, with its header object. */
  irecvMessage(src: number, tag = 0, into?: Buf, o?: OpOptions): Request<Message> {
    const op = `recv from rank ${src} (tag ${tag})`;
    return new Request(
      (async () => this.engine.recvMessage(this.id, this.group, this.peer(src, 'source', op), this.userTag(tag, op), into, op, this.timeout(o)))(),
    );
  }

  /** Non-blocking receive: into `into` if given (it must be large enough), else a new array. */
  irecv(src: number, tag = 0, into?: Buf, o?: OpOptions): Request<Buf> {
    const op = `recv from rank ${src} (tag ${tag})`;
    return new Request(
      (async () => this.engine.recvData(this.id, this.group, this.peer(src, 'source', op), this.userTag(tag, op), into, op, this.timeout(o)))(),
    );
  }

  /** Receives the next message from `src` with `tag`. */
  recv(src: number, tag = 0, into?: Buf, o?: OpOptions): Promise<Buf> {
    try {
      const op = `recv from rank ${src} (tag ${tag})`;
      return this.engine.recvData(this.id, this.group, this.peer(src, 'source', op), this.userTag(tag, op), into, op, this.timeout(o));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Receives the next message and its header object. */
  recvMessage(src: number, tag = 0, into?: Buf, o?: OpOptions): Promise<Message> {
    return this.irecvMessage(src, tag, into, o).wait();
  }

  /** Sends a plain object of any size (msgpack-encoded, as the message's payload). */
  sendObject(obj: unknown, dst: number, tag = 0, o?: OpOptions): Promise<void> {
    try {
      return this.isend(packObject(obj === undefined ? null : obj), dst, tag, OBJECT_MARK, o).wait();
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Receives a plain object sent with sendObject. */
  async recvObject<T = unknown>(src: number, tag = 0, o?: OpOptions): Promise<T> {
    const m = await this.recvMessage(src, tag, undefined, o);
    if (m.meta !== OBJECT_MARK || !(m.data instanceof Uint8Array)) {
      throw new CommUsageError(`recv object from rank ${src} (tag ${tag}): the message is a ${m.data.constructor.name} sent with send(), not an object sent with sendObject()`);
    }
    return unpackObject(m.data) as T;
  }

  // ---------------------------------------------------------------------------------------------
  // Collectives

  private collective<T>(name: string, fingerprint: unknown[], body: (ch: algo.Channel) => Promise<T>, o?: OpOptions): Promise<T> {
    const seq = this.collSeq++;
    const tag = -1 - (seq % 2 ** 30);
    const op = `${name} #${seq} on communicator '${this.id}'`;
    const timeoutMs = this.timeout(o);
    try {
      this.engine.checkAlive(this.group, op);
    } catch (e) {
      return Promise.reject(e);
    }
    const ch: algo.Channel = {
      rank: this.rank,
      size: this.size,
      send: (dst, buf) => this.engine.send(this.id, this.group, this.group[dst]!, tag, buf, dtypeCode(buf), undefined, op, timeoutMs),
      recv: (src, into) => this.engine.recvData(this.id, this.group, this.group[src]!, tag, into, op, timeoutMs),
    };
    if (this.settings.debug && this.size > 1) return this.agree(ch, op, [name, ...fingerprint]).then(() => body(ch));
    return body(ch);
  }

  /**
   * Debug mode: every rank sends what it is about to do to rank 0, which compares and answers; a
   * mismatch becomes an error on every rank instead of a hang or silent corruption.
   */
  private async agree(ch: algo.Channel, op: string, fp: unknown[]): Promise<void> {
    const enc = new TextEncoder();
    const dec = new TextDecoder();
    const mine = JSON.stringify(fp);
    if (ch.rank === 0) {
      const all = [mine];
      for (let r = 1; r < ch.size; r++) all.push(dec.decode(await ch.recv(r)));
      const bad = all.map((f, r) => [r, f] as const).filter(([, f]) => f !== mine);
      const verdict = bad.length ? `rank 0 called ${mine}, but ${bad.map(([r, f]) => `rank ${r} called ${f}`).join('; ')}` : '';
      const v = enc.encode(verdict);
      await Promise.all(Array.from({ length: ch.size - 1 }, (_, i) => ch.send(i + 1, v)));
      if (verdict) throw new CollectiveMismatchError(`${op}: collective mismatch: ${verdict}`);
    } else {
      await ch.send(0, enc.encode(mine));
      const verdict = dec.decode(await ch.recv(0));
      if (verdict) throw new CollectiveMismatchError(`${op}: collective mismatch: ${verdict}`);
    }
  }

  private root(root: number, op: string): number {
    if (!Number.isInteger(root) || root < 0 || root >= this.size) throw new CommUsageError(`${op}: root ${root} is not a rank of this communicator of ${this.size}`);
    return root;
  }

  private static describe(b: Buf): string {
    return `${b.length} ${dtypeName(dtypeCode(b))}`;
  }

  /** Blocks until every rank has called barrier. */
  barrier(o?: OpOptions): Promise<void> {
    return this.collective('barrier', [], (ch) => algo.barrier(ch), o);
  }

  /** Broadcasts `buf` from `root` to every rank, in place (binomial tree). */
  async broadcast<B extends Buf>(buf: B, root = 0, o?: OpOptions): Promise<B> {
    this.root(root, 'broadcast');
    await this.collective('broadcast', [Communicator.describe(buf), root], (ch) => algo.broadcast(ch, buf, root), o);
    return buf;
  }

  /** Reduces everyone's `buf` to `root`, in place on the root (binomial tree). */
  async reduce<B extends Buf>(buf: B, root = 0, op: ReduceOp = 'sum', o?: OpOptions): Promise<B> {
    this.root(root, 'reduce');
    checkOp(op);
    await this.collective('reduce', [Communicator.describe(buf), root, op], (ch) => algo.reduce(ch, buf, root, op), o);
    return buf;
  }

  /**
   * Reduces everyone's `buf` and leaves the result in every rank's `buf` (in place): recursive
   * doubling below 64 KiB; above, Rabenseifner's halving/doubling for a power-of-two rank count and
   * ring reduce-scatter + allgather otherwise.
   */
  async allreduce<B extends Buf>(buf: B, op: ReduceOp = 'sum', o?: OpOptions): Promise<B> {
    checkOp(op);
    await this.collective('allreduce', [Communicator.describe(buf), op], (ch) => algo.allreduce(ch, buf, op), o);
    return buf;
  }

  /** Gathers equal blocks from every rank into `recv` (size x send.length), in rank order, on every rank. */
  async allgather<B extends Buf>(send: B, recv?: B, o?: OpOptions): Promise<B> {
    const out = recv ?? (alloc(dtypeCode(send), send.length * this.size) as B);
    this.checkLength('allgather', 'recv', out, send.length * this.size, send);
    await this.collective('allgather', [Communicator.describe(send)], (ch) => algo.allgather(ch, send, out), o);
    return out;
  }

  /** Reduces `send` (size equal blocks) and gives rank r block r of the result (as MPI_Reduce_scatter_block). */
  async reduceScatter<B extends Buf>(send: B, recv?: B, op: ReduceOp = 'sum', o?: OpOptions): Promise<B> {
    checkOp(op);
    if (send.length % this.size !== 0) throw new CommUsageError(`reduceScatter: send has ${send.length} elements, not a multiple of the ${this.size} ranks`);
    const n = send.length / this.size;
    const out = recv ?? (alloc(dtypeCode(send), n) as B);
    this.checkLength('reduceScatter', 'recv', out, n, send);
    await this.collective('reduceScatter', [Communicator.describe(send), op], (ch) => algo.reduceScatter(ch, send, out, op), o);
    return out;
  }

  /** Gathers equal blocks to `root`; returns the gathered array on the root, null elsewhere. */
  async gather<B extends Buf>(send: B, root = 0, recv?: B, o?: OpOptions): Promise<B | null> {
    this.root(root, 'gather');
    const out = this.rank === root ? recv ?? (alloc(dtypeCode(send), send.length * this.size) as B) : null;
    if (out) this.checkLength('gather', 'recv', out, send.length * this.size, send);
    await this.collective('gather', [Communicator.describe(send), root], (ch) => algo.gather(ch, send, out, root), o);
    return out;
  }

  /** Scatters equal blocks of the root's `send` (ignored elsewhere); every rank gets its block of `count` elements. */
  async scatter<B extends Buf>(send: B | null, count: number, root = 0, recv?: B, o?: OpOptions): Promise<B> {
    this.root(root, 'scatter');
    if (this.rank === root && (!send || send.length !== count * this.size)) {
      throw new CommUsageError(`scatter: the root's send must have ${count} x ${this.size} elements, found ${send?.length ?? 'none'}`);
    }
    const proto = send ?? recv;
    if (!proto) throw new CommUsageError('scatter: non-root ranks must pass recv (or send) so that the element type is known');
    const out = recv ?? (alloc(dtypeCode(proto), count) as B);
    this.checkLength('scatter', 'recv', out, count, proto);
    await this.collective('scatter', [count, dtypeName(dtypeCode(proto)), root], (ch) => algo.scatter(ch, send, out, root), o);
    return out;
  }

  /** All-to-all of equal blocks: block j of `send` goes to rank j; `recv` block i came from rank i. */
  async alltoall<B extends Buf>(send: B, recv?: B, o?: OpOptions): Promise<B> {
    if (send.length % this.size !== 0) throw new CommUsageError(`alltoall: send has ${send.length} elements, not a multiple of the ${this.size} ranks`);
    const out = recv ?? (alloc(dtypeCode(send), send.length) as B);
    this.checkLength('alltoall', 'recv', out, send.length, send);
    await this.collective('alltoall', [Communicator.describe(send)], (ch) => algo.alltoall(ch, send, out), o);
    return out;
  }

  // ---------------------------------------------------------------------------------------------
  // Non-blocking collectives (MPI-3's MPI_Iallreduce..., torch.distributed's async_op=True). Each
  // starts at once and takes its place in the communicator's order of collectives when called, so
  // several may be in flight, and blocking ones may run between them: every rank must call them in
  // the same order, as the blocking ones. A buffer belongs to the operation until it completes.

  /** Non-blocking `allreduce`: resolves to `buf`, reduced in place. */
  iallreduce<B extends Buf>(buf: B, op: ReduceOp = 'sum', o?: OpOptions): Request<B> {
    return new Request(this.allreduce(buf, op, o));
  }

  /** Non-blocking `broadcast`: resolves to `buf`, holding the root's data on every rank. */
  ibroadcast<B extends Buf>(buf: B, root = 0, o?: OpOptions): Request<B> {
    return new Request(this.broadcast(buf, root, o));
  }

  /** Non-blocking `allgather`: resolves to the gathered array. */
  iallgather<B extends Buf>(send: B, recv?: B, o?: OpOptions): Request<B> {
    return new Request(this.allgather(send, recv, o));
  }

  /** Non-blocking `reduceScatter`: resolves to this rank's block of the reduction. */
  ireduceScatter<B extends Buf>(send: B, recv?: B, op: ReduceOp = 'sum', o?: OpOptions): Request<B> {
    return new Request(this.reduceScatter(send, recv, op, o));
  }

  /** Non-blocking `barrier`: resolves once every rank has called it. */
  ibarrier(o?: OpOptions): Request<void> {
    return new Request(this.barrier(o));
  }

  private checkLength(op: string, what: string, b: Buf, n: number, like: Buf): void {
    if (b.constructor !== like.constructor) throw new CommUsageError(`${op}: ${what} is a ${b.constructor.name}, expected ${like.constructor.name}`);
    if (b.length !== n) throw new CommUsageError(`${op}: ${what} has ${b.length} elements, expected ${n}`);
  }

  /**
   * Splits into sub-communicators, as MPI_Comm_split: ranks passing the same `color` form one,
   * ordered by `key` then by rank. A rank passing null gets null (MPI_UNDEFINED). Collective.
   */
  async split(color: number | null, key = this.rank, o?: OpOptions): Promise<Communicator | null> {
    if (color != null && (!Number.isInteger(color) || color < 0)) throw new CommUsageError(`split: color ${color} must be a non-negative integer or null`);
    const seq = this.splitSeq++;
    const all = await this.allgather(Int32Array.of(color ?? -1, key), undefined, o);
    if (color == null) return null;
    const members: [number, number][] = [];
    for (let r = 0; r < this.size; r++) if (all[2 * r] === color) members.push([all[2 * r + 1]!, r]);
    members.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    return new Communicator(`${this.id}/${seq}.${color}`, members.map(([, r]) => this.group[r]!), this.engine, this.settings);
  }
}
