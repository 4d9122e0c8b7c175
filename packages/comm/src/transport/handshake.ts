// The token handshake of a connection, without I/O: frames in, the frame to answer with and the
// verdict out. Both sides prove they know the job token (HMAC over the other side's nonce), so a
// peer of another job, or one guessing, is refused before anything it sends is read as data.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { Kind, type Frame } from './frame.js';

/** HMAC proof that a side knows the job token. */
export function proof(token: string, role: 'c' | 's', nonce: string, rank: number): string {
  return createHmac('sha256', token).update(`${role}|${nonce}|${rank}`).digest('hex');
}

function sameProof(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** What a frame received during the handshake leads to. */
export interface HandshakeStep {
  /** The frame to answer with. */
  send?: Exclude<Frame, { kind: Kind.Data }>;
  /** The peer proved itself: the connection is authenticated. */
  accepted?: boolean;
  /** Why the connection must be refused. */
  reject?: string;
}

/**
 * One side of the handshake. The server (the side that accepted the connection) opens with a
 * challenge; the client answers with its rank, its proof and a nonce of its own; the server checks,
 * answers with its proof, and accepts; the client checks that and accepts.
 */
export class Handshake {
  /** The peer's rank, once it has said it (-1 before). */
  peer = -1;
  private readonly nonce = randomBytes(16).toString('hex');

  constructor(
    readonly side: 'server' | 'client',
    private readonly token: string,
    private readonly rank: number,
    /** For a client: the rank it dialled (-1: any). */
    private readonly expectedPeer = -1,
  ) {}

  /** The server's first frame (null for a client, which waits). */
  opening(): HandshakeStep['send'] | null {
    return this.side === 'server' ? { kind: Kind.Challenge, rank: this.rank, nonce: this.nonce } : null;
  }

  /** The next step for a frame received before authentication. */
  step(f: Frame): HandshakeStep {
    const { token, rank } = this;
    if (this.side === 'client' && f.kind === Kind.Challenge && this.peer < 0) {
      if (this.expectedPeer >= 0 && f.rank !== this.expectedPeer) return { reject: `dialled rank ${this.expectedPeer} but rank ${f.rank} answered` };
      this.peer = f.rank;
      return { send: { kind: Kind.Auth, rank, proof: proof(token, 'c', f.nonce, rank), nonce: this.nonce } };
    }
    if (this.side === 'client' && f.kind === Kind.AuthOk && this.peer >= 0) {
      if (f.rank !== this.peer || !sameProof(f.proof, proof(token, 's', this.nonce, f.rank))) return { reject: 'server failed to prove the job token' };
      return { accepted: true };
    }
    if (this.side === 'server' && f.kind === Kind.Auth) {
      if (!sameProof(f.proof, proof(token, 'c', this.nonce, f.rank))) return { reject: `connection claiming rank ${f.rank} failed to prove the job token` };
      this.peer = f.rank;
      return { send: { kind: Kind.AuthOk, rank, proof: proof(token, 's', f.nonce, rank) }, accepted: true };
    }
    return { reject: `frame of kind ${f.kind} before authentication` };
  }
}
