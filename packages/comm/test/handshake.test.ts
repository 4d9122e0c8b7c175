// The token handshake alone, in-process: two sides that share the token accept each other; a wrong
// token, a wrong rank or anything but the handshake before it is refused with the reason.
import { describe, expect, it } from 'vitest';
import { decodeFrame, encodeControl, Kind, type Frame } from '../src/transport/frame.js';
import { Handshake, type HandshakeStep } from '../src/transport/handshake.js';

/** Through the wire format, as the frames travel. */
const wire = (f: NonNullable<HandshakeStep['send']>): Frame => decodeFrame(encodeControl(f), 1 << 20);

function run(server: Handshake, client: Handshake) {
  const challenge = server.opening()!;
  const auth = client.step(wire(challenge));
  if (auth.reject) return { rejectedBy: 'client', why: auth.reject };
  const ok = server.step(wire(auth.send!));
  if (ok.reject) return { rejectedBy: 'server', why: ok.reject };
  const done = client.step(wire(ok.send!));
  if (done.reject) return { rejectedBy: 'client', why: done.reject };
  return { server: ok.accepted, client: done.accepted, serverSees: server.peer, clientSees: client.peer };
}

describe('handshake', () => {
  it('two sides with the same token accept each other and learn the ranks', () => {
    expect(run(new Handshake('server', 'secret', 0), new Handshake('client', 'secret', 3, 0))).toEqual({ server: true, client: true, serverSees: 3, clientSees: 0 });
    expect(new Handshake('client', 'secret', 3).opening()).toBeNull();
  });

  it('refuses another token on either side, a rank that was not dialled, and data before it', () => {
    expect(run(new Handshake('server', 'secret', 0), new Handshake('client', 'guess', 3, 0))).toEqual({ rejectedBy: 'server', why: 'connection claiming rank 3 failed to prove the job token' });
    // A server that does not know the token cannot pass itself off as rank 0 either.
    const client = new Handshake('client', 'secret', 3, 0);
    const impostor = new Handshake('server', 'other', 0);
    const auth = client.step(wire(impostor.opening()!));
    const forged = { kind: Kind.AuthOk, rank: 0, proof: 'ab'.repeat(32) } as const;
    expect(client.step(wire(forged))).toEqual({ reject: 'server failed to prove the job token' });
    expect(auth.send?.kind).toBe(Kind.Auth);
    expect(run(new Handshake('server', 'secret', 2), new Handshake('client', 'secret', 3, 0))).toEqual({ rejectedBy: 'client', why: 'dialled rank 0 but rank 2 answered' });
    expect(new Handshake('server', 'secret', 0).step({ kind: Kind.Bye })).toEqual({ reject: `frame of kind ${Kind.Bye} before authentication` });
    const data = decodeFrame(encodeControl({ kind: Kind.Lost, rank: 1, reason: 'x' }), 1 << 20);
    expect(new Handshake('client', 'secret', 1).step(data).reject).toMatch(/before authentication/);
  });
});
