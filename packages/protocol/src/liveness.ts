// Liveness of one WebSocket: a stalled TCP connection (a peer cut off by a firewall, a host gone without a FIN)
// stays "open" until the kernel gives up retransmitting, minutes later, with the retransmission timer backed
// off to tens of seconds. Pings with a pong deadline notice it within seconds, so the owner can close the
// socket and dial again on a fresh connection, which recovers as soon as the network does.

/** The part of a `ws` WebSocket the watcher needs; `ws` answers every ping with a pong by itself. */
export interface LivenessSocket {
  ping(): void;
  terminate(): void;
  on(event: 'pong', listener: () => void): unknown;
  off(event: 'pong', listener: () => void): unknown;
}

/** Options of watchLiveness. */
export interface LivenessOptions {
  /** How often a ping is sent, in milliseconds. */
  pingIntervalMs: number;
  /**
   * How long the first unanswered ping may stay unanswered, in milliseconds; then the socket is terminated.
   * Counted from that ping, so the connection is declared dead between pongTimeoutMs and
   * pongTimeoutMs + pingIntervalMs after it last answered.
   */
  pongTimeoutMs: number;
  /** Called once, just before the socket is terminated for want of a pong, with the silence in milliseconds. */
  onDead?: (silentMs: number) => void;
}

/** A running watcher. */
export interface LivenessWatcher {
  /** Stops pinging (the socket closed or is being closed deliberately). Idempotent. */
  stop(): void;
}

/** Checks the option values once, so a bad configuration fails at start, not at the first timer. */
function checkDuration(name: string, value: number): void {
  if (!Number.isFinite(value) || value < 1) {
    throw new RangeError(`${name} must be a positive number of milliseconds, got ${value}`);
  }
}

/**
 * Pings an open socket every pingIntervalMs; if a ping goes unanswered for pongTimeoutMs, calls onDead and
 * terminates the socket (its 'close' event follows, which is where the owner redials). Start it once the
 * socket is open; stop it when the socket closes. Its timers never keep the process alive by themselves.
 */
export function watchLiveness(socket: LivenessSocket, options: LivenessOptions): LivenessWatcher {
  checkDuration('pingIntervalMs', options.pingIntervalMs);
  checkDuration('pongTimeoutMs', options.pongTimeoutMs);
  let lastPongAt = Date.now();
  let deadline: NodeJS.Timeout | undefined;
  let stopped = false;

  const onPong = (): void => {
    lastPongAt = Date.now();
    if (deadline !== undefined) clearTimeout(deadline);
    deadline = undefined;
  };

  function stop(): void {
    if (stopped) return;
    stopped = true;
    clearInterval(pinger);
    if (deadline !== undefined) clearTimeout(deadline);
    socket.off('pong', onPong);
  }

  function dead(): void {
    if (stopped) return;
    const silentMs = Date.now() - lastPongAt;
    stop();
    options.onDead?.(silentMs);
    socket.terminate();
  }

  const pinger = setInterval(() => {
    // One deadline per silence: later pings while it runs must not push it back.
    if (deadline === undefined) {
      deadline = setTimeout(dead, options.pongTimeoutMs);
      deadline.unref();
    }
    try {
      socket.ping();
    } catch {
      // The socket is already closing; its 'close' event stops this watcher.
    }
  }, options.pingIntervalMs);
  pinger.unref();
  socket.on('pong', onPong);
  return { stop };
}
