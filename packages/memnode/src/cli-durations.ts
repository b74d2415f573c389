// Durations on the command line, with their unit: `60s`, `1500ms`, `2m`. A bare number is seconds, the unit
// an operator thinks of for timeouts of this size (the `-ms` flags of coordination timing stay milliseconds).

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000 };

/**
 * Parses `500ms`, `1.5s`, `60s`, `2m` or `60` (seconds) into milliseconds, at least 1. Throws a RangeError that
 * names the accepted forms.
 */
export function parseDuration(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$/i.exec(text);
  const multiplier = UNIT_MS[(match?.[2] ?? 's').toLowerCase()];
  const ms =
    match?.[1] === undefined || multiplier === undefined ? NaN : Math.round(Number(match[1]) * multiplier);
  if (!Number.isSafeInteger(ms) || ms < 1) {
    throw new RangeError(
      `cannot read "${text}" as a duration; write e.g. 500ms, 30s, 2m (a bare number is seconds)`,
    );
  }
  return ms;
}

/** Milliseconds as a person writes them: 60000 -> "60 s", 1500 -> "1.5 s", 250 -> "250 ms". */
export function formatDuration(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${Number((ms / 1000).toFixed(3))} s`;
}
