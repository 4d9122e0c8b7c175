// The OSU loops on @hpdl/comm. Run under `hpdl launch`; rank 0 prints JSON lines.
// BENCH=pt2pt (2 ranks: latency, bw) or BENCH=coll (any p: allreduce, bcast, allgather).
import { readFileSync } from 'node:fs';
import { init } from '../dist/index.js';

const P = JSON.parse(readFileSync(new URL('./params.json', import.meta.url), 'utf8'));
// Optional filters (the driver's target rounds): only these sizes, only these collectives.
const only = process.env.SIZES ? process.env.SIZES.split(',').map(Number) : null;
const pick = (sizes) => (only ? sizes.filter((b) => only.includes(b)) : sizes);
const modes = process.env.MODES ? process.env.MODES.split(',') : ['allreduce', 'bcast', 'allgather'];
const w = await init();
const { rank, size } = w;
const counts = (kind, bytes) => P[kind][bytes > P.small ? 'large' : 'small'];
const out = (o) => rank === 0 && console.log(JSON.stringify(o));

if (process.env.BENCH === 'small') {
  // Back-to-back small operations at p = 2 (issue: barriers, loss averaging): an 8-byte allreduce and a
  // barrier against the same exchange written with our isend + recv. Alternated, best of the rounds.
  const ITERS = Number(process.env.ITERS ?? 3000);
  const peer = 1 - rank;
  const mine = new Float64Array(1);
  const theirs = new Float64Array(1);
  const ops = {
    exchange: async () => {
      const got = w.recv(peer, 9, theirs);
      w.isend(mine, peer, 9);
      await got;
      mine[0] += theirs[0];
    },
    allreduce: () => w.allreduce(mine, 'sum'),
    barrier: () => w.barrier(),
  };
  const best = { exchange: Infinity, allreduce: Infinity, barrier: Infinity };
  for (let round = 0; round < 3; round++) {
    for (const [name, f] of Object.entries(ops)) {
      mine[0] = 1e-9;
      for (let i = 0; i < 100; i++) await f();
      await w.barrier();
      const t0 = performance.now();
      for (let i = 0; i < ITERS; i++) await f();
      best[name] = Math.min(best[name], ((performance.now() - t0) * 1000) / ITERS);
    }
  }
  for (const [name, us] of Object.entries(best)) out({ bench: `small-${name}`, p: size, bytes: 8, us });
} else if (process.env.BENCH === 'pt2pt') {
  for (const bytes of pick(P.latencySizes)) {
    const [iters, skip] = counts('latency', bytes);
    const s = new Uint8Array(bytes).fill(1);
    const r = new Uint8Array(bytes);
    let t0 = 0;
    for (let i = 0; i < iters + skip; i++) {
      if (i === skip) t0 = performance.now();
      if (rank === 0) {
        const recv = w.recv(1, 1, r);
        await w.send(s, 1, 1);
        await recv;
      } else {
        await w.recv(0, 1, r);
        await w.send(s, 0, 1);
      }
    }
    out({ bench: 'latency', bytes, us: ((performance.now() - t0) * 1000) / (2 * iters) });
  }
  for (const bytes of pick(P.bwSizes)) {
    const [iters, skip] = counts('bw', bytes);
    const s = new Uint8Array(bytes).fill(1);
    const bufs = Array.from({ length: P.window }, () => new Uint8Array(bytes));
    const ack = new Uint8Array(4);
    let t0 = 0;
    for (let i = 0; i < iters + skip; i++) {
      if (i === skip) t0 = performance.now();
      if (rank === 0) {
        const reqs = bufs.map(() => w.isend(s, 1, 100));
        for (const q of reqs) await q.wait();
        await w.recv(1, 101, ack);
      } else {
        const reqs = bufs.map((b) => w.irecv(0, 100, b));
        for (const q of reqs) await q.wait();
        await w.send(ack, 0, 101);
      }
    }
    out({ bench: 'bw', bytes, mbps: ((bytes / 1e6) * iters * P.window) / ((performance.now() - t0) / 1000) });
  }
} else {
  for (const mode of modes) {
    for (const bytes of pick(P.collSizes)) {
      const [iters, skip] = counts('coll', bytes);
      const n = bytes / 4;
      const buf = new Float32Array(n).fill(1);
      const recv = new Float32Array(n * size);
      let total = 0;
      for (let i = 0; i < iters + skip; i++) {
        await w.barrier();
        const t = performance.now();
        if (mode === 'allreduce') await w.allreduce(buf, 'sum');
        else if (mode === 'bcast') await w.broadcast(buf, 0);
        else await w.allgather(buf, recv);
        if (i >= skip) total += performance.now() - t;
      }
      // As OSU: the slowest rank's average.
      const avg = Float64Array.of((total * 1000) / iters);
      await w.reduce(avg, 0, 'max');
      out({ bench: mode, p: size, bytes, us: avg[0] });
      if (mode === 'allreduce') buf.fill(1);
    }
  }
}
await w.close();
