// @hpdl/comm benchmark: the OSU micro-benchmarks' loops on our communicators, against (1) the same
// loops over a bare Node.js TCP socket and (2) Open MPI over TCP loopback and over shared memory,
// all measured in this run. Prints OSU-style tables with ratios, then the target lines.
// Run: npm run bench -w @hpdl/comm   (installs Open MPI with apt-get if mpicc is missing)
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MPIRUN_LOCAL_ARGS, MPIRUN_LOCAL_ENV, ensureOpenMpi } from '../../../scripts/openmpi.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const P = JSON.parse(readFileSync(join(here, 'params.json'), 'utf8'));
const cli = join(here, '../dist/cli.js');
const counts = (kind, bytes) => P[kind][bytes > P.small ? 'large' : 'small'];
const log = (s) => process.stderr.write(`# ${s}\n`);
const jsonLines = (text) => text.split('\n').map((l) => l.replace(/^\[\s*\d+\] /, '')).filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));

// ---- Open MPI: install if missing, compile the reference program ----
const mpi = ensureOpenMpi({ compiler: true, log });
const build = join(here, '.build');
mkdirSync(build, { recursive: true });
const osu = join(build, 'osu');
if (mpi) execFileSync('mpicc', ['-O2', '-o', osu, join(here, 'osu.c')], { stdio: 'inherit' });
else log('Open MPI is not available: its columns are left empty');

function runMpi(np, btl, mode, sizes) {
  if (!mpi) return [];
  const kind = mode === 'latency' ? 'latency' : mode === 'bw' ? 'bw' : 'coll';
  const args = [...MPIRUN_LOCAL_ARGS, '-np', String(np), '--mca', 'btl', btl];
  if (btl.includes('tcp')) args.push('--mca', 'btl_tcp_if_include', 'lo');
  const [si, ss] = P[kind].small;
  const [li, ls] = P[kind].large;
  const r = spawnSync('mpirun', [...args, osu, mode, String(P.small), String(si), String(ss), String(li), String(ls), String(P.window), ...sizes.map(String)], {
    encoding: 'utf8',
    env: { ...process.env, ...MPIRUN_LOCAL_ENV },
  });
  if (r.status !== 0) log(`mpirun ${mode} (${btl}) failed: ${r.stderr.split('\n').slice(0, 3).join(' | ')}`);
  return jsonLines(r.stdout);
}

// ---- bare Node.js TCP ----
async function runNodeTcp(mode, bytes) {
  const [iters, skip] = counts(mode === 'exchange' ? 'coll' : mode, bytes);
  const port = 20000 + Math.floor(Math.random() * 20000);
  const server = spawn(process.execPath, [join(here, 'node-tcp.mjs'), 'server', String(port)], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  await new Promise((r) => server.once('message', r));
  const out = execFileSync(process.execPath, [join(here, 'node-tcp.mjs'), 'client', String(port), mode, String(bytes), String(iters), String(skip), String(P.window)], { encoding: 'utf8' });
  server.kill();
  return JSON.parse(out);
}

// ---- ours ----
function runOurs(np, bench, extraEnv = {}) {
  const r = spawnSync(process.execPath, [cli, 'launch', '-n', String(np), join(here, 'ours.mjs')], { encoding: 'utf8', env: { ...process.env, BENCH: bench, ...extraEnv } });
  if (r.status !== 0) throw new Error(`our ${bench} benchmark failed at p=${np}:\n${r.stderr}`);
  return jsonLines(r.stdout);
}

const find = (rows, bench, bytes, p) => rows.find((x) => x.bench === bench && x.bytes === bytes && (p == null || x.p === p));
const f = (v, d = 2) => (v == null ? '-' : v.toFixed(d));
const ratio = (a, b) => (a == null || b == null ? null : a / b);
const row = (cells, widths) => console.log(cells.map((c, i) => String(c).padStart(widths[i] ?? 12)).join(''));

log('point to point: ours');
const ours = runOurs(2, 'pt2pt');
log('point to point: bare Node TCP');
const tcp = [];
for (const b of P.latencySizes) tcp.push(await runNodeTcp('latency', b));
for (const b of P.bwSizes) tcp.push(await runNodeTcp('bw', b));
log('point to point: Open MPI');
const mtcp = [...runMpi(2, 'self,tcp', 'latency', P.latencySizes), ...runMpi(2, 'self,tcp', 'bw', P.bwSizes)];
const mshm = [...runMpi(2, 'self,vader', 'latency', P.latencySizes), ...runMpi(2, 'self,vader', 'bw', P.bwSizes)];

console.log('\n# osu_latency (p = 2): one-way latency, us');
const wl = [12, 10, 10, 10, 10, 12, 12, 12];
row(['Size', 'hpdl', 'node-tcp', 'mpi-tcp', 'mpi-shm', 'hpdl/node', 'hpdl/mpitcp', 'hpdl/mpishm'], wl);
for (const b of P.latencySizes) {
  const o = find(ours, 'latency', b)?.us, t = find(tcp, 'latency', b)?.us, m = find(mtcp, 'latency', b)?.us, s = find(mshm, 'latency', b)?.us;
  row([b, f(o), f(t), f(m), f(s), f(ratio(o, t)), f(ratio(o, m)), f(ratio(o, s))], wl);
}
console.log(`\n# osu_bw (p = 2, window ${P.window}): bandwidth, MB/s`);
row(['Size', 'hpdl', 'node-tcp', 'mpi-tcp', 'mpi-shm', 'hpdl/node', 'hpdl/mpitcp', 'hpdl/mpishm'], wl);
for (const b of P.bwSizes) {
  const o = find(ours, 'bw', b)?.mbps, t = find(tcp, 'bw', b)?.mbps, m = find(mtcp, 'bw', b)?.mbps, s = find(mshm, 'bw', b)?.mbps;
  row([b, f(o, 1), f(t, 1), f(m, 1), f(s, 1), f(ratio(o, t)), f(ratio(o, m)), f(ratio(o, s))], wl);
}

const coll = {};
for (const p of [2, 4]) {
  log(`collectives at p = ${p}: ours`);
  coll[p] = { ours: runOurs(p, 'coll') };
  log(`collectives at p = ${p}: Open MPI`);
  coll[p].tcp = ['allreduce', 'bcast', 'allgather'].flatMap((m) => runMpi(p, 'self,tcp', m, P.collSizes));
  coll[p].shm = ['allreduce', 'bcast', 'allgather'].flatMap((m) => runMpi(p, 'self,vader', m, P.collSizes));
}
const busbw = (bench, bytes, us, p) => {
  if (us == null) return null;
  const alg = bytes / (us / 1e6) / 1e9; // GB/s
  return bench === 'allreduce' ? (alg * 2 * (p - 1)) / p : bench === 'allgather' ? (alg * (p - 1)) : alg;
};
for (const bench of ['allreduce', 'bcast', 'allgather']) {
  for (const p of [2, 4]) {
    console.log(`\n# osu_${bench} (p = ${p}, float32): average latency us, and bus bandwidth GB/s`);
    const w = [10, 12, 12, 12, 10, 10, 10, 12, 12];
    row(['Size', 'hpdl', 'mpi-tcp', 'mpi-shm', 'hpdl-bus', 'tcp-bus', 'shm-bus', 'hpdl/mpitcp', 'hpdl/mpishm'], w);
    for (const b of P.collSizes) {
      const o = find(coll[p].ours, bench, b, p)?.us, m = find(coll[p].tcp, bench, b, p)?.us, s = find(coll[p].shm, bench, b, p)?.us;
      const ob = busbw(bench, b, o, p);
      row([b, f(o, 1), f(m, 1), f(s, 1), f(ob), f(busbw(bench, b, m, p)), f(busbw(bench, b, s, p)), f(ratio(ob, busbw(bench, b, m, p))), f(ratio(ob, busbw(bench, b, s, p)))], w);
    }
  }
}

// ---- targets: alternating rounds ----
// This machine's speed drifts within a run (other tenants), by more than the margins of the
// targets: one side measured in a slow minute and the other in a fast one decides the ratio. So
// each target figure is measured again in ROUNDS rounds that alternate ours and the reference,
// and each side's best round is compared (the tables above are single rounds).
const ROUNDS = Number(process.env.HPDL_BENCH_ROUNDS ?? 3);
const MB4 = 4194304;
const MB16 = 16 * 1024 * 1024;
const MB1 = 1048576;
const KB64 = 65536;
const best = { lat: [], latRef: [], bw: [], bwRef: [], ar2: [], ar2Ref: [], ar4: [], ar4Ref: [], ar1m: [], ar1mRef: [], ar1mNode: [], bw64: [], bw64Ref: [] };
for (let r = 0; r < ROUNDS; r++) {
  log(`target round ${r + 1} of ${ROUNDS}`);
  best.lat.push(find(runOurs(2, 'pt2pt', { SIZES: '8' }), 'latency', 8)?.us);
  best.latRef.push((await runNodeTcp('latency', 8)).us);
  best.bw.push(find(runOurs(2, 'pt2pt', { SIZES: String(MB4) }), 'bw', MB4)?.mbps);
  best.bwRef.push((await runNodeTcp('bw', MB4)).mbps);
  best.ar1m.push(busbw('allreduce', MB1, find(runOurs(2, 'coll', { MODES: 'allreduce', SIZES: String(MB1) }), 'allreduce', MB1, 2)?.us, 2));
  best.ar1mRef.push(busbw('allreduce', MB1, find(runMpi(2, 'self,tcp', 'allreduce', [MB1]), 'allreduce', MB1, 2)?.us, 2));
  // Its data movement alone over a bare Node.js socket (two exchanges of 512 KiB, no arithmetic).
  best.ar1mNode.push(busbw('allreduce', MB1, (await runNodeTcp('exchange', MB1)).us, 2));
  best.bw64.push(find(runOurs(2, 'pt2pt', { SIZES: String(KB64) }), 'bw', KB64)?.mbps);
  best.bw64Ref.push(find(runMpi(2, 'self,tcp', 'bw', [KB64]), 'bw', KB64)?.mbps);
  for (const p of [2, 4]) {
    // All allreduce sizes in increasing order, as osu_allreduce runs them (and as the tables did).
    best[`ar${p}`].push(busbw('allreduce', MB16, find(runOurs(p, 'coll', { MODES: 'allreduce' }), 'allreduce', MB16, p)?.us, p));
    best[`ar${p}Ref`].push(busbw('allreduce', MB16, find(runMpi(p, 'self,tcp', 'allreduce', P.collSizes), 'allreduce', MB16, p)?.us, p));
  }
}
const low = (xs) => (xs.some((x) => x == null) ? null : Math.min(...xs));
const high = (xs) => (xs.some((x) => x == null) ? null : Math.max(...xs));
const fmt = (xs, d) => xs.map((x) => f(x, d)).join(' ');
console.log(`\n# targets: best of ${ROUNDS} alternating rounds (each round: ours, then the reference)`);
console.log(`# latency 8 B, us:          hpdl ${fmt(best.lat, 2)} | node-tcp ${fmt(best.latRef, 2)}`);
console.log(`# bandwidth 4 MiB, MB/s:    hpdl ${fmt(best.bw, 0)} | node-tcp ${fmt(best.bwRef, 0)}`);
console.log(`# allreduce 16 MiB p=2, busbw GB/s: hpdl ${fmt(best.ar2, 2)} | mpi-tcp ${fmt(best.ar2Ref, 2)}`);
console.log(`# allreduce 16 MiB p=4, busbw GB/s: hpdl ${fmt(best.ar4, 2)} | mpi-tcp ${fmt(best.ar4Ref, 2)}`);
console.log(`# allreduce 1 MiB p=2, busbw GB/s:  hpdl ${fmt(best.ar1m, 2)} | mpi-tcp ${fmt(best.ar1mRef, 2)} | node-tcp (the same bytes, default reads, no arithmetic) ${fmt(best.ar1mNode, 2)}`);
console.log(`# bandwidth 64 KiB (window ${P.window}), MB/s: hpdl ${fmt(best.bw64, 0)} | mpi-tcp ${fmt(best.bw64Ref, 0)}`);

// Small operations back to back at p = 2, against the same exchange written with our isend + recv
// (ours.mjs alternates the three in rounds and keeps each one's best).
log('small operations at p = 2: ours');
const small = runOurs(2, 'small');
const smallUs = (name) => find(small, `small-${name}`, 8)?.us;
console.log(`# 3,000 back-to-back operations at p = 2, us each: exchange (isend + recv) ${f(smallUs('exchange'))} | allreduce 8 B ${f(smallUs('allreduce'))} | barrier ${f(smallUs('barrier'))}`);

console.log('');
const target = (name, v, op, limit) => console.log(`target ${name} ${v == null ? 'n/a' : v.toFixed(2)} ${op} ${limit.toFixed(2)} ${v == null ? 'MISS' : (op === '<=' ? v <= limit : v >= limit) ? 'ok' : 'MISS'}`);
target('latency-8B-vs-node-tcp', ratio(low(best.lat), low(best.latRef)), '<=', 1.25);
target('bw-4MiB-vs-node-tcp', ratio(high(best.bw), high(best.bwRef)), '>=', 0.8);
target('allreduce-16MiB-p2-vs-mpi-tcp', ratio(high(best.ar2), high(best.ar2Ref)), '>=', 0.7);
// At p = 4 four ranks share two cores: parity within this machine's noise is what TCP allows.
target('allreduce-16MiB-p4-vs-mpi-tcp', ratio(high(best.ar4), high(best.ar4Ref)), '>=', 0.95);
target('allreduce-1MiB-p2-vs-mpi-tcp', ratio(high(best.ar1m), high(best.ar1mRef)), '>=', 0.8);
console.log(`reference allreduce-1MiB-p2-vs-node-tcp-exchange ${f(ratio(high(best.ar1m), high(best.ar1mNode)))} (a bare Node.js socket moving the same bytes with its default reads into fresh buffers)`);
target('bw-64KiB-vs-mpi-tcp', ratio(high(best.bw64), high(best.bw64Ref)), '>=', 0.7);
target('allreduce-8B-p2-vs-exchange', ratio(smallUs('allreduce'), smallUs('exchange')), '<=', 1.3);
target('barrier-p2-vs-exchange', ratio(smallUs('barrier'), smallUs('exchange')), '<=', 1.3);
