import { CommTimeoutError, CommUsageError, PeerLostError } from './errors.js';
import { bytesOf, ctorOf, dtypeName, elementBytes, view, type Buf } from './dtypes.js';
import type { Logger } from './log.js';
import { scratchPool, type ScratchBuffer } from './scratch.js';
import type { Sink } from './transport/connection.js';
import { encodeData, Kind, type DataFrame } from './transport/frame.js';
import type { Mesh } from './transport/mesh.js';

/** A received message. */
export interface Message {
  data: Buf;
  meta: unknown;
}

/** Counts of how large messages met their receives (World.messageStats). */
export interface MessageStats {
  /** Large messages that arrived before their receive and waited unread in the socket. */
  held: number;
  /** Large messages read into memory of ours before their receive, and copied into it later. */
  early: number;
  /** Their bytes. */
  earlyBytes: number;
}

interface Incoming {
  dtype: number;
  bytes: Uint8Array;
  meta: unknown;
  complete: boolean;
  waiter?: Waiter;
  /** Pool memory holding a message that arrived before its receive: returned once copied out. */
  pooled?: ScratchBuffer;
}

interface Waiter {
  into?: Buf;
  group: readonly number[];
  op: string;
  src: number;
  /** Called with the message: a plain receive's waiter resolves with its data alone, sparing a promise hop. */
  resolve(m: Message): void;
  reject(e: Error): void;
  settled?: boolean;
  deadline?: number;
  timeoutMs?: number;
}

interface Slot {
  msgs: Incoming[];
  waiters: Waiter[];
}

/** Bytes of unmatched messages from one peer above which its socket is paused. */
const UNEXPECTED_LIMIT = 256 * 1024 * 1024;

/**
 * Matches arriving messages to posted receives by (communicator, source, tag), in arrival order,
 * and fails everything that depends on a lost rank.
 */
export class Engine implements Sink {
  readonly lost = new Map<number, string>();
  // Per communicator, slots keyed by tag * size + source (numbers: no key string per message).
  private readonly slots = new Map<string, Map<number, Slot>>();
  private readonly unexpected: number[];
  private readonly paused: boolean[];
  readonly stats: MessageStats = { held: 0, early: 0, earlyBytes: 0 };
  mesh!: Mesh;

  constructor(readonly rank: number, readonly size: number, readonly log: Logger) {
    this.unexpected = new Array(size).fill(0);
    this.paused = new Array(size).fill(false);
  }

  private slot(comm: string, src: number, tag: number): Slot {
    let m = this.slots.get(comm);
    if (!m) {
      m = new Map();
      this.slots.set(comm, m);
    }
    const key = tag * this.size + src;
    let s = m.get(key);
    if (!s) {
      s = { msgs: [], waiters: [] };
      m.set(key, s);
    }
    return s;
  }

  private tidySlot(comm: string, src: number, tag: number, s: Slot): void {
    if (s.msgs.length === 0 && s.waiters.length === 0) this.slots.get(comm)?.delete(tag * this.size + src);
  }

  private deliver(w: Waiter, m: Incoming): void {
    let msg: Message;
    try {
      msg = this.toMessage(w, m);
    } catch (e) {
      return this.settle(w, e as Error);
    } finally {
      // Copied into the posted buffer (or refused): the pool memory is free again. Handed over as
      // the message itself (a receive without a buffer), it now belongs to the caller.
      if (m.pooled && w.into) scratchPool.give(m.pooled);
    }
    this.settle(w, null, msg);
  }

  private toMessage(w: Waiter, m: Incoming): Message {
    const n = m.bytes.byteLength / elementBytes(m.dtype);
    if (w.into) {
      const want = w.into;
      if (ctorOf(m.dtype) !== want.constructor) {
        throw new CommUsageError(`${w.op}: received ${dtypeName(m.dtype)} data from rank ${w.src} into a ${want.constructor.name}`);
      }
      if (want.length < n) throw new CommUsageError(`${w.op}: message of ${n} elements from rank ${w.src} does not fit a buffer of ${want.length}`);
      const wb = bytesOf(want);
      if (wb.buffer !== m.bytes.buffer || wb.byteOffset !== m.bytes.byteOffset) wb.set(m.bytes);
      return { data: want.subarray(0, n) as Buf, meta: m.meta };
    }
    return { data: view(m.dtype, m.bytes), meta: m.meta };
  }

  private account(peer: number, delta: number): void {
    this.unexpected[peer]! += delta;
    const c = this.mesh?.conns[peer];
    if (!c) return;
    if (!this.paused[peer] && this.unexpected[peer]! > UNEXPECTED_LIMIT) {
      this.paused[peer] = true;
      c.pause();
    } else if (this.paused[peer] && this.unexpected[peer]! < UNEXPECTED_LIMIT / 2) {
      this.paused[peer] = false;
      c.resume();
    }
  }

  /** A whole message; `payload` views a reused read buffer unless `owned`. */
  onData(peer: number, f: DataFrame, payload: Uint8Array, owned = false): void {
    const s = this.slot(f.comm, peer, f.tag);
    const w = s.waiters.shift();
    // Copied unless it goes straight into a posted buffer (a fresh copy is also aligned for view()).
    const bytes = owned || w?.into ? payload : new Uint8Array(payload);
    const m: Incoming = { dtype: f.dtype, bytes, meta: f.meta, complete: true };
    if (w) {
      this.deliver(w, m);
      this.tidySlot(f.comm, peer, f.tag, s);
    } else {
      s.msgs.push(m);
      this.account(peer, payload.byteLength);
    }
  }

  onChunkedBegin(peer: number, f: DataFrame, mayHold: boolean): Uint8Array | null {
    const s = this.slot(f.comm, peer, f.tag);
    const w = s.waiters[0];
    // Nobody waits for anything from this peer: the message may wait in the socket for its receive.
    if (!w && mayHold && !this.waitingFor(peer)) {
      this.tidySlot(f.comm, peer, f.tag, s);
      this.stats.held++;
      return null;
    }
    const n = f.bytes / elementBytes(f.dtype);
    // Write straight into the posted buffer when it fits, sparing a copy of a large message.
    const direct = w?.into && w.into.constructor === ctorOf(f.dtype) && w.into.length >= n;
    const pooled = direct ? undefined : scratchPool.take(f.bytes);
    if (!w) {
      this.stats.early++;
      this.stats.earlyBytes += f.bytes;
    }
    const bytes = pooled ? new Uint8Array(pooled.buffer, 0, f.bytes) : bytesOf(w!.into!).subarray(0, f.bytes);
    const m: Incoming = { dtype: f.dtype, bytes, meta: f.meta, complete: false, pooled };
    if (w) {
      s.waiters.shift();
      m.waiter = w;
    } else this.account(peer, f.bytes);
    s.msgs.push(m);
    return bytes;
  }

  onChunkedEnd(peer: number, f: DataFrame, filled: Uint8Array): void {
    const s = this.slot(f.comm, peer, f.tag);
    const m = s.msgs.find((x) => !x.complete && x.bytes === filled);
    if (!m) return;
    m.complete = true;
    if (m.waiter) {
      s.msgs.splice(s.msgs.indexOf(m), 1);
      this.deliver(m.waiter, m);
      this.tidySlot(f.comm, peer, f.tag, s);
    }
  }

  onLostNotice(from: number, rank: number, reason: string): void {
    this.markLost(rank, `reported by rank ${from}: ${reason}`);
  }

  /** Records a lost rank, tells every other live rank, and fails every operation that needs it. */
  markLost(rank: number, reason: string): void {
    if (this.lost.has(rank) || rank === this.rank) return;
    this.lost.set(rank, reason);
    this.log.error(`rank ${rank} lost: ${reason}`);
    this.mesh?.conns.forEach((c, r) => {
      if (c && !c.closed && r !== rank) c.sendControl({ kind: Kind.Lost, rank, reason });
    });
    for (const [key, s] of this.allSlots()) {
      const keep: Waiter[] = [];
      for (const w of s.waiters) {
        if (w.group.includes(rank)) this.settle(w, new PeerLostError(rank, w.op, reason));
        else keep.push(w);
      }
      s.waiters = keep;
      for (const m of s.msgs) {
        if (m.waiter && m.waiter.group.includes(rank) && !m.complete) {
          this.settle(m.waiter, new PeerLostError(rank, m.waiter.op, reason));
          m.waiter = undefined;
        }
      }
      if (s.waiters.length === 0 && s.msgs.length === 0) key.map.delete(key.key);
    }
  }

  /** Whether any receive from `peer` is posted and not yet matched. */
  private waitingFor(peer: number): boolean {
    for (const map of this.slots.values()) for (const s of map.values()) if (s.waiters.some((w) => w.src === peer)) return true;
    return false;
  }

  /** Every slot, with where it lives (safe to delete while iterating). */
  private *allSlots(): Generator<[{ map: Map<number, Slot>; key: number }, Slot]> {
    for (const map of this.slots.values()) for (const [key, s] of [...map]) yield [{ map, key }, s];
  }

  /** Throws if any rank of a group is lost. */
  checkAlive(group: readonly number[], op: string): void {
    if (this.lost.size === 0) return;
    // In the order ranks were lost: the first is the cause, later ones often its consequence.
    for (const [r, why] of this.lost) if (group.includes(r)) throw new PeerLostError(r, op, why);
  }

  /** Posts a receive from world rank `src`; resolves with the next matching message and its header object. */
  recvMessage(comm: string, group: readonly number[], src: number, tag: number, into: Buf | undefined, op: string, timeoutMs: number): Promise<Message> {
    return new Promise((resolve, reject) => this.post(comm, group, src, tag, into, op, timeoutMs, resolve, reject));
  }

  /** Posts a receive from world rank `src`; resolves with the next matching message's data. */
  recvData(comm: string, group: readonly number[], src: number, tag: number, into: Buf | undefined, op: string, timeoutMs: number): Promise<Buf> {
    return new Promise((resolve, reject) => this.post(comm, group, src, tag, into, op, timeoutMs, (m) => resolve(m.data), reject));
  }

  /** Matches a receive with the oldest message waiting for it, or leaves it waiting for the next. */
  private post(comm: string, group: readonly number[], src: number, tag: number, into: Buf | undefined, op: string, timeoutMs: number, resolve: (m: Message) => void, reject: (e: Error) => void): void {
    const w: Waiter = { into, group, op, src, resolve, reject };
    try {
      this.checkAlive(group, op);
    } catch (e) {
      return reject(e as Error);
    }
    const s = this.slot(comm, src, tag);
    // The oldest message not yet promised to an earlier receive (messages keep their order).
    const m = s.msgs.find((x) => !x.waiter);
    if (m) this.mesh?.conns[src]?.noteReceive(false, into != null);
    if (m && m.complete) {
      s.msgs.splice(s.msgs.indexOf(m), 1);
      this.account(src, -m.bytes.byteLength);
      this.deliver(w, m);
      this.tidySlot(comm, src, tag, s);
      return;
    }
    if (m) {
      m.waiter = w;
      this.account(src, -m.bytes.byteLength);
    } else {
      s.waiters.push(w);
      this.mesh?.conns[src]?.noteReceive(true, into != null);
    }
    if (Number.isFinite(timeoutMs)) {
      w.deadline = Date.now() + timeoutMs;
      w.timeoutMs = timeoutMs;
      if (!this.sweepTimer) this.armSweep();
    }
  }

  // One periodic sweep over the receives still waiting enforces their timeouts: a timer, or even a
  // set entry, per message cost more than the message on the loopback benchmark.
  private sweepTimer: NodeJS.Timeout | null = null;
  /** Sends still being written that have a deadline (large messages; small ones complete at once). */
  private readonly sending = new Set<{ deadline: number; timeoutMs: number; op: string; reject(e: Error): void }>();
  private armSweep(): void {
    this.sweepTimer = setInterval(() => {
      const now = Date.now();
      let waiting = 0;
      for (const [, s] of this.allSlots()) {
        for (const w of [...s.waiters]) {
          if (w.deadline == null) continue;
          if (now < w.deadline) {
            waiting++;
            continue;
          }
          s.waiters.splice(s.waiters.indexOf(w), 1);
          this.settle(w, new CommTimeoutError(w.op, w.timeoutMs!));
        }
        for (const m of s.msgs) {
          const w = m.waiter;
          if (!w || w.deadline == null) continue;
          if (now < w.deadline) {
            waiting++;
            continue;
          }
          m.waiter = undefined;
          this.settle(w, new CommTimeoutError(w.op, w.timeoutMs!));
        }
      }
      for (const q of this.sending) {
        if (now < q.deadline) {
          waiting++;
          continue;
        }
        this.sending.delete(q);
        q.reject(new CommTimeoutError(q.op, q.timeoutMs));
      }
      if (waiting === 0) {
        clearInterval(this.sweepTimer!);
        this.sweepTimer = null;
      }
    }, 50);
    this.sweepTimer.unref();
  }

  private settle(w: Waiter, e: Error | null, m?: Message): void {
    if (w.settled) return;
    w.settled = true;
    if (e) w.reject(e);
    else w.resolve(m!);
  }

  /** Sends to world rank `dst`; resolves once the buffer may be reused (undefined: it already may). */
  send(comm: string, group: readonly number[], dst: number, tag: number, buf: Buf, dtype: number, meta: unknown, op: string, timeoutMs: number): Promise<void> | undefined {
    this.checkAlive(group, op);
    if (dst === this.rank) {
      // To oneself: a copy, delivered as if it had arrived (its header checked as if it went out).
      if (meta != null) encodeData(comm, tag, dtype, 0, 0, meta);
      const copy = new Uint8Array(bytesOf(buf));
      this.onData(dst, { kind: Kind.Data, comm, tag, dtype, bytes: copy.byteLength, chunks: 0, meta, payload: copy }, copy, true);
      return undefined;
    }
    const c = this.mesh.conns[dst];
    if (!c || c.closed) throw new PeerLostError(dst, op, this.lost.get(dst) ?? 'no connection');
    const started = c.sendData(comm, tag, dtype, bytesOf(buf), meta);
    if (started == null) return undefined; // sent inline: nothing can block any more
    const sending = started.catch((e: Error) => {
      if (e instanceof CommUsageError) throw e;
      throw this.lost.has(dst) ? new PeerLostError(dst, op, this.lost.get(dst)!) : new PeerLostError(dst, op, e.message);
    });
    if (!Number.isFinite(timeoutMs)) return sending;
    // The deadline is enforced by the periodic sweep (a timer per message costs more than the send).
    return new Promise<void>((resolve, reject) => {
      const q = { deadline: Date.now() + timeoutMs, timeoutMs, op, reject };
      this.sending.add(q);
      if (!this.sweepTimer) this.armSweep();
      sending.then(
        () => {
          this.sending.delete(q);
          resolve();
        },
        (e: Error) => {
          this.sending.delete(q);
          reject(e);
        },
      );
    });
  }
}
