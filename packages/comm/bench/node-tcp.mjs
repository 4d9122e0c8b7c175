// The floor of any Node.js transport: the same ping-pong and windowed-bandwidth loops over a bare
// `net` TCP socket between two processes, length-prefixed messages, nothing else; and `exchange`,
// the data movement of a 2-rank allreduce without its arithmetic.
// Usage: node node-tcp.mjs server PORT | node node-tcp.mjs client PORT MODE BYTES ITERS SKIP WINDOW
import { connect, createServer } from 'node:net';

const [role, portArg, mode, bytesArg, itersArg, skipArg, windowArg] = process.argv.slice(2);
const port = Number(portArg);

/**
 * Calls onMessage for every complete length-prefixed message (bytes counted, not copied), and
 * onStart when a message's length has arrived.
 */
function reader(sock, onMessage, onStart = () => {}) {
  let need = -1; // -1: reading the 4-byte length
  let head = Buffer.alloc(0);
  sock.on('data', (chunk) => {
    let off = 0;
    while (off < chunk.length) {
      if (need < 0) {
        const take = Math.min(4 - head.length, chunk.length - off);
        head = Buffer.concat([head, chunk.subarray(off, off + take)]);
        off += take;
        if (head.length === 4) {
          need = head.readUInt32LE(0);
          head = Buffer.alloc(0);
          if (need === 0) { need = -1; onMessage(); }
          else onStart();
        }
      } else {
        const take = Math.min(need, chunk.length - off);
        need -= take;
        off += take;
        if (need === 0) { need = -1; onMessage(); }
      }
    }
  });
}
const frame = (n) => { const b = Buffer.alloc(4 + n, 1); b.writeUInt32LE(n, 0); return b; };

if (role === 'server') {
  const srv = createServer((sock) => {
    sock.setNoDelay(true);
    let cfg = null;
    let count = 0;
    // The first message is the configuration: "mode bytes window".
    let msg = null;
    reader(
      sock,
      () => {
        if (!cfg) return;
        if (cfg.mode === 'latency') sock.write(msg);
        else if (cfg.mode === 'bw' && ++count % cfg.window === 0) sock.write(frame(4));
      },
      // exchange: both sides send at once; the server starts its half when the client's begins.
      () => cfg?.mode === 'exchange' && sock.write(msg),
    );
    sock.once('data', (d) => {
      const [m, b, w] = d.subarray(4, 4 + d.readUInt32LE(0)).toString().split(' ');
      cfg = { mode: m, bytes: Number(b), window: Number(w) };
      msg = frame(m === 'exchange' ? cfg.bytes / 2 : cfg.bytes);
      sock.write(frame(0));
    });
    sock.on('error', () => {});
    sock.on('close', () => srv.close());
  });
  srv.listen(port, '127.0.0.1', () => process.send?.('ready'));
} else {
  const bytes = Number(bytesArg), iters = Number(itersArg), skip = Number(skipArg), window = Number(windowArg);
  const sock = connect(port, '127.0.0.1');
  sock.setNoDelay(true);
  const cfgText = Buffer.from(`${mode} ${bytes} ${window}`);
  const cfg = Buffer.concat([Buffer.alloc(4), cfgText]);
  cfg.writeUInt32LE(cfgText.length, 0);
  let gotCfg = false;
  let waiter = null;
  sock.once('connect', () => sock.write(cfg));
  let ready;
  const readyP = new Promise((r) => (ready = r));
  reader(sock, () => {
    if (!gotCfg) { gotCfg = true; ready(); return; }
    waiter?.();
  });
  await readyP;
  const next = () => new Promise((r) => (waiter = r));
  const msg = frame(mode === 'exchange' ? bytes / 2 : bytes);
  let t0 = 0;
  for (let i = 0; i < iters + skip; i++) {
    if (i === skip) t0 = performance.now();
    if (mode === 'exchange') {
      // The data movement of a 2-rank allreduce of `bytes` (reduce-scatter, then allgather): two
      // exchanges of half of it, each side sending and receiving at once.
      for (let round = 0; round < 2; round++) {
        const p = next();
        sock.write(msg);
        await p;
      }
      continue;
    }
    const p = next();
    if (mode === 'latency') sock.write(msg);
    else for (let w = 0; w < window; w++) sock.write(msg);
    await p;
  }
  const s = (performance.now() - t0) / 1000;
  const out =
    mode === 'latency' ? { bench: 'latency', bytes, us: (s * 1e6) / (2 * iters) }
    : mode === 'exchange' ? { bench: 'exchange', bytes, us: (s * 1e6) / iters }
    : { bench: 'bw', bytes, mbps: (bytes / 1e6) * iters * window / s };
  console.log(JSON.stringify(out));
  sock.end();
}
