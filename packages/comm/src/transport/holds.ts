import type { DataFrame } from './frame.js';

// Holding a large message that arrived before its receive.
//
// Read now, it would have to go to memory of ours and be copied again when the receive is posted;
// left in the socket for a moment, it is read straight into the posted buffer (MPI's rendezvous
// protocol gets the same by asking the receiver before sending). In collectives the receive
// usually follows within a few milliseconds: a rank leaves the previous call a little late.

/** What holds need from their connection. */
export interface HoldHost {
  /** Stops (true) or restarts (false) reading from the socket because of a hold. */
  stopReading(on: boolean): void;
  /**
   * Reads a released message on: it starts now, into memory the sink gives (it is not held again),
   * and `tail`, the bytes read past its announcement before reading stopped, is fed to the reader.
   */
  readOn(f: DataFrame, tail: Buffer | null): void;
}

export interface HoldOptions {
  /** How long a message may stay unread in the socket (0: never). */
  holdMs: number;
  /** An unread socket says nothing of the peer: a hold ends well before it would look silent. */
  peerTimeoutMs: number;
}

/** The hold of one connection: at most one message at a time. */
export class Holds {
  /** Set once the job has started: during start-up a control frame may follow a held message. */
  enabled = false;
  private held: { f: DataFrame; tail: Buffer | null; timer: NodeJS.Timeout } | null = null;
  /** False after a hold ran out or a receive without a buffer ended one (see noteReceive). */
  private mayHold = true;

  constructor(
    private readonly host: HoldHost,
    private readonly opts: HoldOptions,
  ) {}

  /** A message is held: the reader stops after its announcement. */
  get holding(): boolean {
    return this.held != null;
  }

  /**
   * Whether a large message that just arrived may be held. Only while nothing is being sent to the
   * peer (`senderIdle`): two ranks that each send first and receive after must both keep reading.
   */
  allowed(senderIdle: boolean): boolean {
    return this.enabled && this.mayHold && this.opts.holdMs > 0 && senderIdle;
  }

  /** Leaves the message announced by `f` in the socket until its receive is posted or the hold runs out. */
  hold(f: DataFrame): void {
    if (this.held) throw new Error('a connection holds one message at a time');
    const timer = setTimeout(() => this.release(true), Math.min(this.opts.holdMs, this.opts.peerTimeoutMs / 2));
    this.held = { f, tail: null, timer };
    this.host.stopReading(true);
  }

  /** The reader stopped after the held announcement, with `tail` read past it (null: nothing). */
  keepTail(tail: Buffer | null): void {
    this.held!.tail = tail;
  }

  /**
   * A receive from the peer was posted (`waiting`: nothing it matches has arrived yet). A held
   * message is read on, into that receive's buffer if it is the one. Holds pay only for receives
   * into a buffer of the caller's (one without gets the memory the message was read into, held or
   * not): a receive without one ends them, one with one brings them back, as after a hold ran out.
   */
  noteReceive(waiting: boolean, withBuffer: boolean): void {
    if (withBuffer) this.mayHold = true;
    if (waiting && this.held) {
      if (!withBuffer) this.mayHold = false;
      this.release();
    }
  }

  /**
   * Reads the held message on: into the posted buffer when its receive is now waiting, else into
   * memory of ours as any early message. After a hold that ran out, none until the next receive
   * into a caller's buffer.
   */
  release(timedOut = false): void {
    const h = this.held;
    if (!h) return;
    if (timedOut) this.mayHold = false;
    clearTimeout(h.timer);
    this.held = null;
    this.host.readOn(h.f, h.tail);
    // Reading the tail on may have met, and held, the next large message.
    if (!this.held) this.host.stopReading(false);
  }

  /** The connection died: the held message is dropped unread. */
  drop(): void {
    if (this.held) clearTimeout(this.held.timer);
    this.held = null;
  }
}
