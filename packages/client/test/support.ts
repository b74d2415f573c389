import type { Logger } from '../src/index.ts';

const closers: Array<() => Promise<unknown>> = [];

/** Registers `resource` to be closed by closeAll(); returns it. */
export function track<T extends { close(): Promise<unknown> }>(resource: T): T {
  closers.push(() => resource.close());
  return resource;
}

/** Registers a cleanup step for closeAll(). */
export function defer(close: () => Promise<unknown>): void {
  closers.push(close);
}

/** Closes everything registered, newest first, even when some closes fail; for afterEach. */
export async function closeAll(): Promise<void> {
  const failures: unknown[] = [];
  for (const close of closers.splice(0).reverse()) {
    try {
      await close();
    } catch (error) {
      failures.push(error);
    }
  }
  if (failures.length > 0) throw new AggregateError(failures, 'cleanup failed');
}

/** Polls `condition` until it holds; fails with `what` after `timeoutMs`. Tests await state this way, never sleep. */
export async function waitFor(condition: () => unknown, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** The error `promise` rejects with, captured at once so the rejection never counts as unhandled. */
export function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    (value) => {
      throw new Error(`expected a rejection, got ${String(value)}`);
    },
    (error: unknown) => error,
  );
}

/** A log line captured by recordingLogger. */
export interface LogLine {
  level: 'debug' | 'info' | 'warn' | 'error';
  fields: object;
  message: string | undefined;
}

/** A Logger that keeps every line, for asserting on what the client logs. */
export function recordingLogger(): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const at =
    (level: LogLine['level']) =>
    (fields: object, message?: string): void => {
      lines.push({ level, fields, message });
    };
  return { logger: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') }, lines };
}
