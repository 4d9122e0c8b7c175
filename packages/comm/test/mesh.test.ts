// The mesh, its connections and their socket reads in one process: three ranks meet on localhost
// over real sockets, each with a sink of the test's own in place of the engine. Small messages,
// chunked ones read straight into the sink's memory, a held message read on when its receive comes,
// a wrong token, and a rank that leaves.
import { createServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Logger } from '../src/log.js';
import type { Sink } from '../src/transport/connection.js';
import type { DataFrame } from '../src/transport/frame.js';
import { Mesh, type MeshOptions } from '../src/transport/mesh.js';

/** What a rank's sink saw, and how it answers chunked messages. */
class Recorder implements Sink {
  got: { from: number; tag: number; bytes: Buffer; chunks: number }[] = [];
  lost: string[] = [];
  /** Hold chunked messages (when allowed) instead of giving memory for them. */
  hold = false;
  /** Memory handed out for chunked messages, by tag. */
  given = new Map<number, Uint8Array>();
  private waiters: (() => void)[] = [];
  onData(peer: number, f: DataFrame, payload: Uint8Array): void {
    this.push({ from: peer, tag: f.tag, bytes: Buffer.from(payload), chunks: 0 });
  }
  onChunkedBegin(_peer: number, f: DataFrame, mayHold: boolean): Uint8Array | null {
    if (this.hold && mayHold) return null;
    const dest = new Uint8Array(f.bytes);
    this.given.set(f.tag, dest);
    return dest;
  }
  onChunkedEnd(peer: number, f: DataFrame, filled: Uint8Array): void {
    expect(filled).toBe(this.given.get(f.tag)); // read into the memory given, not copied after
    this.push({ from: peer, tag: f.tag, bytes: Buffer.from(filled), chunks: f.chunks });
  }
  onLostNotice(from: number, rank: number, reason: string): void {
    this.lost.push(`${from}:${rank}:${reason}`);
  }
  private push(m: Recorder['got'][number]): void {
    this.got.push(m);
    for (const w of this.waiters.splice(0)) w();
  }
  /** Resolves once `n` messages have arrived. */
  async until(n: number): Promise<void> {
    while (this.got.length < n) await new Promise<void>((r) => this.waiters.push(r));
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

const open: Mesh[] = [];
afterEach(() => {
  for (const m of open.splice(0)) m.close();
});

/** A logger that prints errors only (the refusals these tests provoke are warnings). */
function quietLogger(rank: number): Logger {
  const was = process.env.HPDL_LOG_LEVEL;
  process.env.HPDL_LOG_LEVEL = 'error';
  try {
    return new Logger(rank);
  } finally {
    if (was === undefined) delete process.env.HPDL_LOG_LEVEL;
    else process.env.HPDL_LOG_LEVEL = was;
  }
}

function mesh(rank: number, size: number, port: number, o: Partial<MeshOptions> = {}) {
  const log = quietLogger(rank);
  const sink = new Recorder();
  const m = new Mesh(
    {
      rank, size, token: 'job-token', masterAddr: '127.0.0.1', masterPort: port, listenHost: '127.0.0.1', advertiseHost: '127.0.0.1',
      rendezvousTimeoutMs: 10_000, heartbeatMs: 1000, peerTimeoutMs: 30_000, holdMs: 5_000, maxMessageBytes: 2 ** 31 - 1,
      inlineBytes: 1024, chunkBytes: 64 * 1024, highWaterBytes: 16 * 1024 * 1024, log, ...o,
    },
    sink,
    log,
  );
  open.push(m);
  return { m, sink };
}

const payload = (n: number, seed: number) => Buffer.from(new Uint8Array(n).map((_, i) => (i * 7 + seed) & 255));

describe('mesh in one process', () => {
  it('three ranks meet; small and chunked messages arrive whole and in order, chunks read into the given memory', async () => {
    const port = await freePort();
    const ranks = [0, 1, 2].map((r) => mesh(r, 3, port));
    await Promise.all(ranks.map(({ m }) => m.start()));
    for (const { m } of ranks) expect(m.conns.filter((c) => c?.authenticated)).toHaveLength(2);
    const big = payload(200_000, 3); // 4 chunks of at most 64 KiB
    const sent = [
      ranks[2]!.m.conns[0]!.sendData('w', 1, 0, payload(10, 1), null),
      ranks[2]!.m.conns[0]!.sendData('w', 2, 0, big, null),
      ranks[2]!.m.conns[0]!.sendData('w', 3, 0, payload(1000, 2), null),
      ranks[1]!.m.conns[0]!.sendData('w', 4, 0, payload(5, 4), null),
    ];
    await Promise.all(sent);
    const sink0 = ranks[0]!.sink;
    await sink0.until(4);
    const from2 = sink0.got.filter((g) => g.from === 2);
    expect(from2.map((g) => g.tag)).toEqual([1, 2, 3]);
    expect(from2[1]!.chunks).toBe(4);
    expect(from2[1]!.bytes.equals(big)).toBe(true);
    expect(from2[2]!.bytes.equals(payload(1000, 2))).toBe(true);
    expect(sink0.got.find((g) => g.from === 1)!.bytes.equals(payload(5, 4))).toBe(true);
  });

  it('a held message stays in the socket until its receive is posted, then goes into that memory', async () => {
    const port = await freePort();
    const [a, b] = [0, 1].map((r) => mesh(r, 2, port));
    await Promise.all([a!.m.start(), b!.m.start()]);
    a!.sink.hold = true;
    const big = payload(300_000, 9);
    void b!.m.conns[0]!.sendData('w', 7, 0, big, null);
    const conn = a!.m.conns[1]!;
    for (let i = 0; i < 200 && !conn.holds.holding; i++) await new Promise((r) => setTimeout(r, 5));
    expect(conn.holds.holding).toBe(true);
    expect(a!.sink.got).toHaveLength(0);
    a!.sink.hold = false;
    conn.noteReceive(true, true); // the receive is posted now
    await a!.sink.until(1);
    expect(a!.sink.got[0]!.bytes.equals(big)).toBe(true);
    expect(conn.holds.holding).toBe(false);
  });

  it('a rank with the wrong token is refused, and the rendezvous names the rank missing', async () => {
    const port = await freePort();
    const good = mesh(0, 2, port, { rendezvousTimeoutMs: 1500 });
    const bad = mesh(1, 2, port, { token: 'other-token', rendezvousTimeoutMs: 1500 });
    const results = await Promise.allSettled([good.m.start(), bad.m.start()]);
    expect(results[0]).toMatchObject({ status: 'rejected', reason: { message: expect.stringMatching(/rank 0 has no connection to rank\(s\) 1/) } });
    expect(results[1]!.status).toBe('rejected');
  });

  it('a rank that leaves is reported to the others with the reason', async () => {
    const port = await freePort();
    const [a, b] = [0, 1].map((r) => mesh(r, 2, port));
    await Promise.all([a!.m.start(), b!.m.start()]);
    const dead = new Promise<[number, string]>((resolve) => (a!.m.onPeerDead = (rank, reason) => resolve([rank, reason])));
    b!.m.conns[0]!.ws.terminate();
    const [rank, reason] = await dead;
    expect(rank).toBe(1);
    expect(reason).toMatch(/connection closed/);
  });
});
