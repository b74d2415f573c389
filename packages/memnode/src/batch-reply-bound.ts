// A batch is refused before any of its ops runs when its reply could exceed the frame limit (issue 9, finding 10):
// otherwise its ephemeral gets would consume pages (a get removes them) whose reply then fails as a whole with
// FRAME_TOO_LARGE, and the pages would be gone without anyone having received them. The bound weighs a get at
// its pool's page size and every op at the reply framing, as the client's batcher does (batcher.ts), so a batch
// that client cut to the node's limit always passes.

import { ErrorCode, MAX_PAGE_SIZE, ProtocolError, type Batch } from '@tmem/protocol';
import type { PageStore } from './page-store.ts';

/** Reply bytes of one op besides its page: the reply map, id, checksum and binary header. */
const REPLY_OVERHEAD_BYTES = 64;
/** Reply bytes of a batch besides its replies: the map, `t`, `id`, `more` and the array header. */
const BATCH_REPLY_OVERHEAD_BYTES = 32;

/**
 * Throws FRAME_TOO_LARGE, before anything runs, when the reply of `batch` could exceed `maxFrameBytes`. A batch
 * too small to reach the limit even with the largest pages is passed without looking at its ops, so the check
 * costs nothing for ordinary batches.
 */
export function checkBatchReplyBound(batch: Batch, store: PageStore, maxFrameBytes: number): void {
  const worst = BATCH_REPLY_OVERHEAD_BYTES + batch.ops.length * (REPLY_OVERHEAD_BYTES + MAX_PAGE_SIZE);
  if (worst <= maxFrameBytes) return;
  let bound = BATCH_REPLY_OVERHEAD_BYTES;
  for (const op of batch.ops) {
    bound += REPLY_OVERHEAD_BYTES;
    // An unknown pool answers with a short error; only gets of real pools return pages.
    if (op.t === 'get') bound += store.getPool(op.pool)?.pageSize ?? 0;
  }
  if (bound > maxFrameBytes) {
    throw new ProtocolError(
      ErrorCode.FrameTooLarge,
      `the reply to this batch could reach ${bound} bytes, over the frame limit of ${maxFrameBytes}; send fewer gets per batch (nothing was done)`,
      { details: { replyBound: bound, maxFrameBytes } },
    );
  }
}
