import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import {
  BadPageSizeError,
  ConnectionLostError,
  DataLostError,
  ErrorCode,
  ProtocolError,
  TimeoutError,
  TmemError,
  UnknownPoolError,
  createCodec,
  errorFromWire,
  errorToWire,
  isErrorCode,
  ChecksumError,
  ClusterChangedError,
  UnauthorizedError,
} from '../src/index.ts';
import type { WireError } from '../src/index.ts';

type ErrorClass = abstract new (...args: never[]) => TmemError;

/** The class each code comes back as from the wire. Written out so that a new code must be placed here. */
const expectedClass: Record<ErrorCode, ErrorClass> = {
  MALFORMED_FRAME: ProtocolError,
  TRUNCATED_FRAME: ProtocolError,
  FRAME_TOO_LARGE: ProtocolError,
  FRAME_TOO_COMPLEX: ProtocolError,
  INVALID_FRAME: ProtocolError,
  VERSION_MISMATCH: ProtocolError,
  HANDSHAKE_REQUIRED: ProtocolError,
  UNAUTHORIZED: UnauthorizedError,
  UNKNOWN_POOL: UnknownPoolError,
  CHECKSUM_MISMATCH: ChecksumError,
  BAD_PAGE_SIZE: BadPageSizeError,
  CONNECTION_LOST: ConnectionLostError,
  BAD_ARGUMENT: TmemError,
  TIMEOUT: TmemError,
  CLIENT_CLOSED: TmemError,
  NO_NODES: TmemError,
  SHUTTING_DOWN: TmemError,
  LIMIT_EXCEEDED: TmemError,
  INTERNAL: TmemError,
  CERTIFICATE_REJECTED: TmemError,
  STALE_STATE: TmemError,
  NOT_SERVING: TmemError,
  NO_COORDINATOR: TmemError,
  DATA_LOST: DataLostError,
  CLUSTER_CHANGED: ClusterChangedError,
};

const allCodes = Object.values(ErrorCode);

/** Builds an error of the class that owns `code`, as a node would raise it. */
function localError(code: ErrorCode, options: { details?: Record<string, unknown>; cause?: unknown } = {}) {
  switch (code) {
    case ErrorCode.UnknownPool:
      return new UnknownPoolError('no such pool', options);
    case ErrorCode.DataLost:
      return new DataLostError('every copy lost', options);
    case ErrorCode.BadPageSize:
      return new BadPageSizeError('bad page size', options);
    case ErrorCode.ConnectionLost:
      return new ConnectionLostError('socket closed', options);
    case ErrorCode.Timeout:
      return new TimeoutError(250, options);
    case ErrorCode.ClusterChanged:
      return new ClusterChangedError('cluster restarted', options);
    case ErrorCode.Unauthorized:
      return new UnauthorizedError('not authorised', options);
    default:
      return expectedClass[code] === ProtocolError
        ? new ProtocolError(code, 'bad frame', options)
        : new TmemError(code, 'failed', options);
  }
}

describe('error codes', () => {
  it('the class table covers exactly the known codes', () => {
    expect(Object.keys(expectedClass).sort()).toEqual([...allCodes].sort());
    expect(new Set(allCodes).size).toBe(allCodes.length);
  });

  it('isErrorCode knows every code and nothing else', () => {
    for (const code of allCodes) expect(isErrorCode(code)).toBe(true);
    for (const code of ['', 'internal', 'Internal', 'NOPE', 'MalformedFrame', 'toString', '__proto__']) {
      expect(isErrorCode(code)).toBe(false);
    }
  });
});

describe('UnauthorizedError', () => {
  it('is still a ProtocolError, so callers that branched on that class still do', () => {
    const error = errorFromWire({ code: ErrorCode.Unauthorized, message: 'no', details: { shared: 'u' } });
    expect(error).toBeInstanceOf(UnauthorizedError);
    expect(error).toBeInstanceOf(ProtocolError);
    expect(error.code).toBe(ErrorCode.Unauthorized);
    expect(error.details['shared']).toBe('u');
  });
});

describe('ClusterChangedError', () => {
  it('carries both cluster ids from its details, also across the wire', () => {
    const local = new ClusterChangedError('restarted', { details: { expected: 'old', actual: 'new' } });
    expect([local.expectedClusterId, local.actualClusterId]).toEqual(['old', 'new']);
    const remote = errorFromWire(errorToWire(local));
    expect(remote).toBeInstanceOf(ClusterChangedError);
    expect([
      (remote as ClusterChangedError).expectedClusterId,
      (remote as ClusterChangedError).actualClusterId,
    ]).toEqual(['old', 'new']);
  });
});

describe('errorFromWire', () => {
  it.each(allCodes)('maps %s to its class, keeping message and details', (code) => {
    const wire: WireError = {
      code,
      message: `remote says ${code}`,
      details: { pool: 9, nested: { a: [1] } },
    };
    const error = errorFromWire(wire);
    expect(error).toBeInstanceOf(expectedClass[code]);
    expect(error).toBeInstanceOf(TmemError);
    expect(error).toBeInstanceOf(Error);
    // Exactly that class, not a subclass of it (TmemError codes are not secretly ProtocolErrors).
    expect(Object.getPrototypeOf(error)).toBe(expectedClass[code].prototype);
    expect(error.code).toBe(code);
    expect(error.message).toBe(wire.message);
    expect(error.details).toEqual({ pool: 9, nested: { a: [1] }, remote: true });
    expect(error.name).toBe(expectedClass[code].name);
  });

  it('marks errors as remote even when the wire had no details, or claimed otherwise', () => {
    expect(errorFromWire({ code: ErrorCode.NoNodes, message: 'm' }).details).toEqual({ remote: true });
    expect(errorFromWire({ code: ErrorCode.NoNodes, message: 'm', details: undefined }).details).toEqual({
      remote: true,
    });
    expect(
      errorFromWire({ code: ErrorCode.NoNodes, message: 'm', details: { remote: false } }).details,
    ).toEqual({
      remote: true,
    });
  });

  it('does not share the details object with the wire error', () => {
    const details = { pool: 1 };
    const error = errorFromWire({ code: ErrorCode.UnknownPool, message: 'm', details });
    expect(error.details).not.toBe(details);
    expect(details).toEqual({ pool: 1 });
  });

  it('maps unknown codes to INTERNAL TmemErrors', () => {
    for (const code of ['', 'NOPE', 'unknown_pool', 'Internal', 'toString', '__proto__', 'FUTURE_CODE']) {
      const error = errorFromWire({ code, message: 'from a newer node', details: { x: 1 } });
      expect(Object.getPrototypeOf(error)).toBe(TmemError.prototype);
      expect(error.code).toBe(ErrorCode.Internal);
      expect(error.details).toMatchObject({ x: 1, remote: true });
    }
    fc.assert(
      fc.property(
        fc.string().filter((s) => !isErrorCode(s)),
        (code) => {
          const error = errorFromWire({ code, message: 'm' });
          expect(error.code).toBe(ErrorCode.Internal);
          expect(Object.getPrototypeOf(error)).toBe(TmemError.prototype);
        },
      ),
    );
  });
});

describe('errorToWire', () => {
  it.each(allCodes)('%s survives errorToWire then errorFromWire', (code) => {
    const original = localError(code, { details: { limit: 7 } });
    const wire = errorToWire(original);
    expect(wire.code).toBe(code);
    expect(wire.message).toBe(original.message);
    expect(wire.details).toEqual(original.details);
    const back = errorFromWire(wire);
    expect(back).toBeInstanceOf(expectedClass[code]);
    expect(back.code).toBe(code);
    expect(back.message).toBe(original.message);
    expect(back.details).toEqual({ ...original.details, remote: true });
  });

  it.each(allCodes)('%s survives the wire inside an encoded error frame', (code) => {
    const codec = createCodec();
    const original = localError(code, { details: { limit: 7, tags: ['a', 'b'] } });
    const frame = codec.decodeNodeFrame(codec.encode({ t: 'error', id: 5, ...errorToWire(original) }));
    if (frame.t !== 'error') throw new Error(`expected an error frame, got ${frame.t}`);
    const back = errorFromWire(frame);
    expect(back).toBeInstanceOf(expectedClass[code]);
    expect(back.code).toBe(code);
    expect(back.details).toEqual({ ...original.details, remote: true });
  });

  it('puts only code, message and details on the wire, never the cause or stack', () => {
    const error = new UnknownPoolError('no such pool', {
      cause: new Error('db secret'),
      details: { pool: 3 },
    });
    const wire = errorToWire(error);
    expect(Object.keys(wire).sort()).toEqual(['code', 'details', 'message']);
    expect(JSON.stringify(wire)).not.toContain('db secret');
  });

  it('turns anything that is not a TmemError into INTERNAL without leaking its message', () => {
    const secret = 'password=hunter2 at /srv/node/secret.ts:12';
    const duckTyped = { code: ErrorCode.UnknownPool, message: secret, details: { secret } };
    const thrown: unknown[] = [
      new Error(secret),
      new TypeError(secret),
      new RangeError(secret),
      Object.assign(new Error(secret), { code: ErrorCode.UnknownPool }),
      duckTyped,
      secret,
      42,
      null,
      undefined,
      Symbol(secret),
    ];
    for (const error of thrown) {
      const wire = errorToWire(error);
      expect(wire.code).toBe(ErrorCode.Internal);
      expect(wire.details).toBeUndefined();
      expect(JSON.stringify(wire)).not.toContain('hunter2');
      expect(errorFromWire(wire).code).toBe(ErrorCode.Internal);
    }
  });
});

describe('error construction', () => {
  it('keeps the cause on every class', () => {
    const cause = new Error('lower level');
    const errors: TmemError[] = [
      new TmemError(ErrorCode.BadArgument, 'm', { cause }),
      new ProtocolError(ErrorCode.MalformedFrame, 'm', { cause }),
      new UnknownPoolError('m', { cause }),
      new BadPageSizeError('m', { cause }),
      new ConnectionLostError('m', { cause }),
      new TimeoutError(10, { cause }),
    ];
    for (const error of errors) expect(error.cause).toBe(cause);
    // Any value may be a cause, including falsy ones other than undefined.
    expect(new TmemError(ErrorCode.Internal, 'm', { cause: 0 }).cause).toBe(0);
    expect(new TmemError(ErrorCode.Internal, 'm', { cause: null }).cause).toBe(null);
  });

  it('has no cause property when none was given', () => {
    expect('cause' in new TmemError(ErrorCode.Internal, 'm')).toBe(false);
    expect('cause' in new ProtocolError(ErrorCode.InvalidFrame, 'm', { details: { a: 1 } })).toBe(false);
    expect('cause' in new TimeoutError(5)).toBe(false);
  });

  it('defaults details to an empty object', () => {
    expect(new TmemError(ErrorCode.Internal, 'm').details).toEqual({});
    expect(new UnknownPoolError('m').details).toEqual({});
    expect(new ConnectionLostError('m').details).toEqual({});
  });

  it('gives each class its name and code', () => {
    const cases: [TmemError, string, ErrorCode][] = [
      [new TmemError(ErrorCode.NoNodes, 'm'), 'TmemError', ErrorCode.NoNodes],
      [new ProtocolError(ErrorCode.VersionMismatch, 'm'), 'ProtocolError', ErrorCode.VersionMismatch],
      [new UnknownPoolError('m'), 'UnknownPoolError', ErrorCode.UnknownPool],
      [new BadPageSizeError('m'), 'BadPageSizeError', ErrorCode.BadPageSize],
      [new ConnectionLostError('m'), 'ConnectionLostError', ErrorCode.ConnectionLost],
      [new TimeoutError(1), 'TimeoutError', ErrorCode.Timeout],
    ];
    for (const [error, name, code] of cases) {
      expect(error.name).toBe(name);
      expect(error.code).toBe(code);
      expect(error).toBeInstanceOf(TmemError);
      expect(error).toBeInstanceOf(Error);
      expect(typeof error.stack).toBe('string');
    }
  });

  it('TimeoutError carries timeoutMs as a field and in details', () => {
    const error = new TimeoutError(1500);
    expect(error.timeoutMs).toBe(1500);
    expect(error.code).toBe(ErrorCode.Timeout);
    expect(error.details).toEqual({ timeoutMs: 1500 });

    const withDetails = new TimeoutError(200, { details: { op: 'get', node: 'n1' } });
    expect(withDetails.timeoutMs).toBe(200);
    expect(withDetails.details).toEqual({ op: 'get', node: 'n1', timeoutMs: 200 });

    // The field and the details never disagree, even if the caller's details name a timeout too.
    const conflicting = new TimeoutError(300, { details: { timeoutMs: 1 } });
    expect(conflicting.timeoutMs).toBe(300);
    expect(conflicting.details.timeoutMs).toBe(300);

    // Across the wire it comes back as a TIMEOUT TmemError whose details still name the timeout.
    const back = errorFromWire(errorToWire(error));
    expect(back.code).toBe(ErrorCode.Timeout);
    expect(back.details.timeoutMs).toBe(1500);
  });
});
