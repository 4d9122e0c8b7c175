// The collective algorithms in one process: every rank is a Channel of an in-memory network that
// keeps each pair's messages in order and delivers them on a later turn of the event loop, so the
// ranks' steps interleave as over sockets. Every size class (recursive doubling, Rabenseifner,
// rings, trees) is checked against a local reference for p = 1 to 8, without starting processes.
import { describe, expect, it } from 'vitest';
import * as algo from '../src/collectives/algorithms.js';
import type { ReduceOp } from '../src/collectives/ops.js';
import type { Buf } from '../src/dtypes.js';

type Ctor = Float32ArrayConstructor | Float64ArrayConstructor | Int32ArrayConstructor;

/** p ranks' channels over in-memory queues, one per ordered pair. */
function network(p: number): algo.Channel[] {
  const queues = new Map<string, Buf[]>();
  const waiters = new Map<string, { into?: Buf; resolve: (b: Buf) => void }[]>();
  const list = <T>(m: Map<string, T[]>, k: string) => m.get(k) ?? (m.set(k, []), m.get(k)!);
  const fill = (msg: Buf, into?: Buf): Buf => {
    if (!into) return msg;
    if (into.constructor !== msg.constructor || into.length < msg.length) throw new Error(`a message of ${msg.length} does not fit a buffer of ${into.length}`);
    into.set(msg as never);
    return into.subarray(0, msg.length) as Buf;
  };
  return Array.from({ length: p }, (_, rank) => ({
    rank,
    size: p,
    send(dst: number, buf: Buf) {
      const key = `${rank}>${dst}`;
      const copy = buf.slice() as Buf;
      setImmediate(() => {
        const w = list(waiters, key).shift();
        if (w) w.resolve(fill(copy, w.into));
        else list(queues, key).push(copy);
      });
      // Large sends report their completion, small ones are done at once (as the transport's).
      return buf.byteLength > algo.SMALL_BYTES ? Promise.resolve() : undefined;
    },
    recv(src: number, into?: Buf) {
      const key = `${src}>${rank}`;
      const queued = list(queues, key).shift();
      if (queued) return Promise.resolve(fill(queued, into));
      return new Promise<Buf>((resolve) => list(waiters, key).push({ into, resolve }));
    },
  }));
}

const from = (C: Ctor, n: number, f: (i: number) => number): Buf => (C as Float64ArrayConstructor).from({ length: n }, (_, i) => f(i));
const data = (C: Ctor, n: number, rank: number) => from(C, n, (i) => ((rank + 1) * ((i % 7) + 1)) % 13);

function reduced(C: Ctor, n: number, p: number, op: ReduceOp): Buf {
  const all = Array.from({ length: p }, (_, r) => data(C, n, r));
  const out = new C(n);
  for (let i = 0; i < n; i++) {
    let sum = 0;
    let max = -Infinity;
    for (const a of all) {
      sum += a[i]!;
      max = Math.max(max, a[i]!);
    }
    out[i] = op === 'max' ? max : op === 'avg' ? (C === Int32Array ? Math.trunc(sum / p) : sum / p) : sum;
  }
  return out;
}

function close(a: Buf, b: Buf): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (Math.abs(a[i]! - b[i]!) > 1e-5 * Math.max(1, Math.abs(b[i]!))) return false;
  return true;
}

const SIZES = [0, 1, 5, 1000, 40_000, 100_000]; // elements: 4-byte types cross 64 KiB at 16 Ki
const TYPES: Ctor[] = [Float32Array, Float64Array, Int32Array];

describe('collective algorithms over an in-memory network', () => {
  it.each([1, 2, 3, 4, 5, 6, 7, 8])('allreduce, reduce-scatter, allgather, broadcast, reduce, gather, scatter, alltoall, barrier at p = %i', async (p) => {
    for (const C of TYPES) {
      for (const n of SIZES) {
        for (const op of ['sum', 'max', 'avg'] as ReduceOp[]) {
          const bufs = Array.from({ length: p }, (_, r) => data(C, n, r));
          await Promise.all(network(p).map((ch, r) => algo.allreduce(ch, bufs[r]!, op)));
          const want = reduced(C, n, p, op);
          bufs.forEach((b, r) => expect(close(b, want), `allreduce ${op} ${C.name} n=${n} rank ${r}`).toBe(true));
        }
        const m = n - (n % p);
        const rs = Array.from({ length: p }, () => new C(m / p));
        await Promise.all(network(p).map((ch, r) => algo.reduceScatter(ch, data(C, m, r), rs[r]!, 'sum')));
        const whole = reduced(C, m, p, 'sum');
        rs.forEach((b, r) => expect(close(b, whole.subarray((r * m) / p, ((r + 1) * m) / p) as Buf), `reduceScatter ${C.name} n=${m} rank ${r}`).toBe(true));

        const k = Math.min(n, 5000);
        const ag = Array.from({ length: p }, () => new C(k * p));
        await Promise.all(network(p).map((ch, r) => algo.allgather(ch, data(C, k, r), ag[r]!)));
        const gathered = new C(k * p);
        for (let r = 0; r < p; r++) gathered.set(data(C, k, r), r * k);
        ag.forEach((b, r) => expect(close(b, gathered), `allgather ${C.name} n=${k} rank ${r}`).toBe(true));

        const root = p - 1;
        const bc = Array.from({ length: p }, (_, r) => (r === root ? data(C, n, 9) : new C(n)));
        await Promise.all(network(p).map((ch, r) => algo.broadcast(ch, bc[r]!, root)));
        bc.forEach((b, r) => expect(close(b, data(C, n, 9)), `broadcast ${C.name} n=${n} rank ${r}`).toBe(true));

        const rd = Array.from({ length: p }, (_, r) => data(C, n, r));
        await Promise.all(network(p).map((ch, r) => algo.reduce(ch, rd[r]!, 0, 'max')));
        expect(close(rd[0]!, reduced(C, n, p, 'max')), `reduce ${C.name} n=${n}`).toBe(true);
        for (let r = 1; r < p; r++) expect(close(rd[r]!, data(C, n, r)), `reduce leaves rank ${r}'s buffer`).toBe(true);
      }
      const k = 7;
      const g = new C(k * p);
      await Promise.all(network(p).map((ch, r) => algo.gather(ch, data(C, k, r), r === 0 ? g : null, 0)));
      const sc = Array.from({ length: p }, () => new C(k));
      await Promise.all(network(p).map((ch, r) => algo.scatter(ch, r === 0 ? g : null, sc[r]!, 0)));
      sc.forEach((b, r) => expect(close(b, data(C, k, r)), `gather then scatter ${C.name} rank ${r}`).toBe(true));
      const a2a = Array.from({ length: p }, () => new C(k * p));
      await Promise.all(network(p).map((ch, r) => algo.alltoall(ch, from(C, k * p, (i) => 100 * r + Math.floor(i / k)), a2a[r]!)));
      a2a.forEach((b, r) => expect(Array.from(b), `alltoall ${C.name} rank ${r}`).toEqual(Array.from({ length: k * p }, (_, i) => 100 * Math.floor(i / k) + r)));
    }
    await Promise.all(network(p).map((ch) => algo.barrier(ch)));
  }, 60_000);

  it('a barrier waits for the last rank to arrive', async () => {
    const p = 5;
    const chans = network(p);
    const done: number[] = [];
    const early = chans.slice(0, p - 1).map((ch, r) => algo.barrier(ch).then(() => done.push(r)));
    await new Promise((r) => setTimeout(r, 20));
    expect(done).toEqual([]);
    await Promise.all([...early, algo.barrier(chans[p - 1]!)]);
    expect(done.sort()).toEqual([0, 1, 2, 3]);
  });
});
