/** Options of waitFor. */
export interface WaitForOptions {
  /** @default 10_000 */
  timeoutMs?: number;
  /** @default 20 */
  intervalMs?: number;
  /** Says what was awaited, for the timeout message. */
  what?: string;
}

/**
 * Polls `condition` until it returns a truthy value (or a promise of one) and resolves to that value.
 * Tests await state this way instead of sleeping a guessed time.
 */
export async function waitFor<T>(
  condition: () => T | Promise<T>,
  options: WaitForOptions = {},
): Promise<NonNullable<T>> {
  const deadline = Date.now() + (options.timeoutMs ?? 10_000);
  let lastError: unknown;
  for (;;) {
    try {
      const value = await condition();
      if (value) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${options.what ?? 'a condition'}`, { cause: lastError });
    }
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 20));
  }
}
