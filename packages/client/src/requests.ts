import type {
  Accepted,
  DestroyPool,
  EndSession,
  Hit,
  Miss,
  NewPool,
  NodeFrame,
  GetState,
  Ok,
  PageOp,
  PoolCreated,
  Refused,
  StateReply,
  StatsReply,
  StatsRequest,
} from '@tmem/protocol';

/** A frame type with its request id removed: ids are a connection's business, assigned when a frame is sent. */
type WithoutId<T> = T extends unknown ? Omit<T, 'id'> : never;

/** A page op as the pool layer issues it; these are coalesced into batch frames. */
export type PageRequest = WithoutId<PageOp>;
/** A pool or node op; each travels in a frame of its own. */
export type ControlRequest = WithoutId<NewPool | DestroyPool | EndSession | StatsRequest | GetState>;
/** Anything a client asks a node after the handshake. */
export type Request = PageRequest | ControlRequest;
/**
 * What the pool layer asks the router for: every request but the state sync's own getState and the close's
 * endSession (session-end.ts).
 */
export type RoutedRequest = Exclude<Request, { t: 'getState' | 'endSession' }>;

/** The successful replies each request may get; error replies become rejections instead. */
export interface ReplyMap {
  put: Accepted | Refused;
  get: Hit | Miss;
  flushPage: Ok;
  flushObject: Ok;
  newPool: PoolCreated;
  destroyPool: Ok;
  endSession: Ok;
  stats: StatsReply;
  getState: StateReply;
}

/** The reply type of request `R`. */
export type ReplyTo<R extends Request> = ReplyMap[R['t']];

const EXPECTED: { readonly [K in Request['t']]: ReadonlySet<NodeFrame['t']> } = {
  put: new Set(['accepted', 'refused']),
  get: new Set(['hit', 'miss']),
  flushPage: new Set(['ok']),
  flushObject: new Set(['ok']),
  newPool: new Set(['pool']),
  destroyPool: new Set(['ok']),
  endSession: new Set(['ok']),
  stats: new Set(['stats']),
  getState: new Set(['state']),
};

/** True when `t` is a reply the node may give to a request of type `request`; anything else is a node bug. */
export function isExpectedReply(request: Request['t'], t: NodeFrame['t']): boolean {
  return EXPECTED[request].has(t);
}

/** True for the page ops that batch frames carry. */
export function isPageRequest(request: Request): request is PageRequest {
  return (
    request.t === 'put' || request.t === 'get' || request.t === 'flushPage' || request.t === 'flushObject'
  );
}
