// Why a node could not start, in one line an operator can act on. Listening errors come from the OS as
// ErrnoExceptions with a stack that says nothing useful to someone who only passed a flag.

/** Where the node tried to listen, for naming it in the message. */
export interface ListenTarget {
  host: string;
  port: number;
}

/**
 * One line (no stack) for an error that stopped a node from starting. Errors of listening name the address and
 * the flag to change; anything else keeps its own message.
 */
export function describeStartupError(error: unknown, target: ListenTarget): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  const where = `${target.host}:${target.port}`;
  switch (code) {
    case 'EADDRINUSE':
      return `cannot listen on ${where}: the port is in use; pick another --port, or --port 0 for a free one`;
    case 'EACCES':
      return `cannot listen on ${where}: permission denied; ports below 1024 need privileges, pick another --port`;
    case 'EADDRNOTAVAIL':
      return `cannot listen on ${where}: ${target.host} is not an address of this machine; check --host`;
    default:
      return (error instanceof Error ? error.message : String(error)).replace(/\s*\n\s*/g, ' ');
  }
}
