// The node's TLS material, read from the files the operator names (`--tls-cert`, `--tls-key`, `--tls-ca`)
// and checked before anything listens: a node that started with a key that does not match its certificate
// would fail every handshake instead, and the operator would see only clients that cannot connect.
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ErrorCode, TmemError } from '@tmem/protocol';

/**
 * What a node serves TLS with. With it, the node listens on `wss://` (an https server: a plain `ws://` dial
 * fails its TLS handshake) and dials its peers over `wss://`, verifying their certificates.
 */
export interface NodeTls {
  /** PEM certificate chain the node presents, leaf first. */
  cert: Buffer;
  /** PEM private key of that certificate. */
  key: Buffer;
  /**
   * PEM CA certificates a peer's certificate must chain to when this node dials it.
   * @default Node's bundled root CAs
   */
  ca?: Buffer;
}

/** The file paths, as the flags give them. */
export interface TlsFiles {
  certFile?: string | undefined;
  keyFile?: string | undefined;
  caFile?: string | undefined;
}

function refused(message: string): TmemError {
  return new TmemError(ErrorCode.BadArgument, message);
}

/** The bytes of `path`, or BAD_ARGUMENT naming the flag and the OS's reason (ENOENT, EACCES, EISDIR). */
function readFlagFile(flag: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'error';
    throw refused(`cannot read ${flag} ${path}: ${code}`);
  }
}

/** Parses every certificate of a PEM bundle; throws BAD_ARGUMENT naming the flag when there is none. */
function certificatesIn(flag: string, path: string, pem: Buffer): X509Certificate[] {
  const blocks = pem.toString('latin1').match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g);
  try {
    if (blocks === null) throw new Error('no PEM certificate');
    return blocks.map((block) => new X509Certificate(block));
  } catch {
    throw refused(`${flag} ${path} holds no valid PEM certificate`);
  }
}

/**
 * A CA bundle for verifying nodes (`--tls-ca` of `tmem node` and `tmem status`). Throws BAD_ARGUMENT with a
 * one-line message when the file cannot be read or holds no certificate.
 */
export function loadCaFile(path: string, flag = '--tls-ca'): Buffer {
  const ca = readFlagFile(flag, path);
  certificatesIn(flag, path, ca);
  return ca;
}

/**
 * Reads and checks the node's TLS files: undefined when none is given (the node speaks plain ws://), else the
 * certificate, its key and the optional CA. Throws BAD_ARGUMENT with a one-line message naming the flag when
 * only one of the certificate and key is given, a CA comes without them (a node without TLS dials no wss://
 * peers: a cluster is all-TLS or not), a file cannot be read, is not PEM, or the key is not the certificate's.
 */
export function loadNodeTls(files: TlsFiles): NodeTls | undefined {
  const { certFile, keyFile, caFile } = files;
  if (certFile === undefined && keyFile === undefined) {
    if (caFile !== undefined) {
      throw refused('--tls-ca needs --tls-cert and --tls-key: only a TLS node dials its peers over wss://');
    }
    return undefined;
  }
  if (certFile === undefined) throw refused('--tls-key needs --tls-cert, the certificate of that key');
  if (keyFile === undefined) throw refused('--tls-cert needs --tls-key, the private key of that certificate');
  const cert = readFlagFile('--tls-cert', certFile);
  const key = readFlagFile('--tls-key', keyFile);
  const [leaf] = certificatesIn('--tls-cert', certFile, cert);
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch {
    throw refused(`--tls-key ${keyFile} holds no valid PEM private key (an encrypted key is not supported)`);
  }
  if (leaf === undefined || !leaf.checkPrivateKey(privateKey)) {
    throw refused(`--tls-key ${keyFile} is not the private key of the certificate in --tls-cert ${certFile}`);
  }
  return caFile === undefined ? { cert, key } : { cert, key, ca: loadCaFile(caFile) };
}
