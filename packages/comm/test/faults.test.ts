import { WebSocket } from 'ws';
import { describe, expect, it } from 'vitest';
import { freePort } from '../src/launcher/launch.js';
import { runJob } from './helpers.js';

function victimKiller(signal: NodeJS.Signals) {
  let killedAt = 0;
  return {
    onLine: (l: string) => {
      const m = /"pid":(\d+),"victim":true/.exec(l);
      if (m) {
        killedAt = Date.now();
        process.kill(Number(m[1]), signal);
      }
    },
    killedAt: () => killedAt,
  };
}

describe('faults', () => {
  it('a rank killed with SIGKILL mid-allreduce makes every other rank fail naming it within 10 s, and the launcher exit non-zero', async () => {
    const k = victimKiller('SIGKILL');
    const r = await runJob('faults.mjs', 4, { env: { FAULT: 'kill' }, onLine: k.onLine });
    expect(r.code).not.toBe(0);
    expect(r.firstFailure?.rank).toBe(3);
    expect(r.err.join('\n')).toMatch(/rank 3 failed first \(killed by SIGKILL\)/);
    for (const rank of [0, 1, 2]) {
      const ops = r.reports.filter((x) => x.rank === rank && x.what);
      expect(ops.map((x) => x.what)).toEqual(['allreduce', 'later barrier']);
      for (const op of ops) {
        expect(op.ok).toBe(false);
        expect(op.error).toBe('PeerLostError');
        expect(op.lostRank).toBe(3);
        expect(op.message).toMatch(/rank 3 was lost/);
      }
      expect(ops[0]!.message).toMatch(/^allreduce #\d+/);
    }
    const lastFailure = Math.max(...r.reports.filter((x) => x.what === 'allreduce').map((x) => x.ms as number));
    expect(lastFailure).toBeLessThan(10_000 + (Date.now() - k.killedAt()));
    expect(Date.now() - k.killedAt()).toBeLessThan(15_000);
  }, 60_000);

  it('a rank that stops answering (SIGSTOP) is declared lost by heartbeats', async () => {
    const k = victimKiller('SIGSTOP');
    const r = await runJob('faults.mjs', 3, { env: { FAULT: 'stop', HPDL_PEER_TIMEOUT_MS: '2000', HPDL_HEARTBEAT_MS: '250' }, onLine: k.onLine, graceMs: 500 });
    for (const rank of [0, 1]) {
      const op = r.reports.find((x) => x.rank === rank && x.what === 'allreduce')!;
      expect(op.ok).toBe(false);
      expect(op.error).toBe('PeerLostError');
      expect(op.lostRank).toBe(2);
      expect(op.message).toMatch(/no message or heartbeat for \d+ ms/);
    }
    expect(r.code).not.toBe(0);
  }, 60_000);

  it('an operation given a timeout fails with an error naming it', async () => {
    const r = await runJob('faults.mjs', 2, { env: { FAULT: 'timeout' } });
    expect(r.code).toBe(0);
    for (const x of r.reports) {
      expect(x.error).toBe('CommTimeoutError');
      expect(x.message).toMatch(/recv from rank \d \(tag 5\) did not complete within 300 ms/);
    }
  }, 30_000);

  it('a send given a timeout fails naming it when the receiver does not read; the message still arrives', async () => {
    const r = await runJob('faults.mjs', 2, { env: { FAULT: 'send-timeout' } });
    expect(r.code).toBe(0);
    const send = r.reports.find((x) => x.rank === 0 && x.what === 'send with timeout')!;
    expect(send.error).toBe('CommTimeoutError');
    expect(send.message).toMatch(/send to rank 1 \(tag 6\) did not complete within 400 ms/);
    expect(send.ms).toBeLessThan(2000); // rank 1 reads again only after 2.5 s
    expect(r.reports.find((x) => x.rank === 1 && x.what === 'receive after the sender gave up')).toMatchObject({ ok: true });
    expect(r.reports.filter((x) => x.what === 'barrier after' && x.ok)).toHaveLength(2);
  }, 30_000);

  it('debug mode reports collectives that disagree instead of hanging, and the job goes on', async () => {
    const r = await runJob('faults.mjs', 3, { env: { FAULT: 'mismatch', HPDL_DEBUG: 'DETAIL' } });
    expect(r.code).toBe(0);
    const mism = r.reports.filter((x) => x.what === 'mismatched collective');
    expect(mism).toHaveLength(3);
    for (const x of mism) {
      expect(x.error).toBe('CollectiveMismatchError');
      expect(x.message).toMatch(/rank 0 called \["allreduce","10 float32","sum"\], but rank 1 called \["broadcast","12 float32",0\]/);
    }
    expect(r.reports.filter((x) => x.what === 'collectives still work' && x.ok)).toHaveLength(3);
  }, 30_000);

  it('connections without the job token and malformed frames are refused with a logged reason; the job goes on', async () => {
    const port = await freePort();
    const attacks: Promise<string>[] = [];
    const attack = (send: (ws: WebSocket) => void) =>
      new Promise<string>((resolve) => {
        const ws = new WebSocket(`ws://127.0.0.1:${port}`);
        ws.on('open', () => send(ws));
        ws.on('close', (code, reason) => resolve(`${code} ${reason.toString()}`));
        ws.on('error', () => resolve('error'));
        setTimeout(() => {
          ws.terminate();
          resolve('still open');
        }, 3000);
      });
    const r = await runJob('faults.mjs', 2, {
      masterPort: port,
      env: { FAULT: 'intruders', HPDL_LOG_LEVEL: 'warn' },
      onLine: (l) => {
        if (!l.includes('"what":"ready"') || attacks.length) return;
        // Garbage, a truncated frame, a frame with a lying length, a forged proof, a text frame.
        attacks.push(attack((ws) => ws.send(Buffer.from([1, 2, 3]))));
        attacks.push(attack((ws) => ws.send(Buffer.from([255, 255, 0, 0, 1]))));
        attacks.push(attack((ws) => ws.send(Buffer.concat([Buffer.from([4, 0, 0, 0]), Buffer.from([0x94, 3, 1, 0xa1, 0x78])]))));
        attacks.push(attack((ws) => ws.send(Buffer.from('hello'))));
        attacks.push(
          attack((ws) => {
            const h = Buffer.from([0x94, 3, 1, 0xa3, 0x61, 0x62, 0x63, 0xa1, 0x6e]); // [Auth, rank 1, 'abc', 'n']
            const len = Buffer.alloc(4);
            len.writeUInt32LE(h.length);
            ws.send(Buffer.concat([len, h]));
          }),
        );
      },
    });
    const outcomes = await Promise.all(attacks);
    expect(outcomes).toHaveLength(5);
    for (const o of outcomes) expect(o).toMatch(/^1008 /);
    expect(r.code).toBe(0);
    expect(r.reports.filter((x) => x.what === 'traffic' && x.ok)).toHaveLength(2);
    const logged = r.err.filter((l) => /rejected a frame from an unauthenticated connection/.test(l));
    expect(logged.length).toBeGreaterThanOrEqual(5);
    expect(r.err.join('\n')).toMatch(/failed to prove the job token/);
  }, 60_000);
});
