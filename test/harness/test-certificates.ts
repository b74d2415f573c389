// TLS material for tests, generated at test time with the system's openssl (a dependency every CI image has,
// where an npm certificate generator would be one more package to trust): a CA and a node certificate it
// signs, for 127.0.0.1 and localhost, written to a fresh temporary directory.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A CA and one node certificate it signed, as files (for the CLI) and bytes (for clients). */
export interface TestCertificates {
  /** The directory holding the files; removed by remove(). */
  dir: string;
  caFile: string;
  certFile: string;
  keyFile: string;
  /** The CA's certificate, PEM. */
  ca: Buffer;
  /** Deletes the directory. */
  remove(): void;
}

function openssl(args: readonly string[], cwd: string): void {
  // Quiet on success; on failure the thrown error carries openssl's stderr.
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/**
 * Generates a CA named `name` and a node certificate it signs for IP 127.0.0.1 and DNS localhost (P-256 keys,
 * valid for a day). Two calls make two unrelated CAs: a node certificate from one does not verify against the
 * other.
 */
export function createTestCertificates(name = 'tmem-test'): TestCertificates {
  const dir = mkdtempSync(join(tmpdir(), `${name}-tls-`));
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl(
    ['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '1', '-subj', `/CN=${name} CA`],
    dir,
  );
  openssl(['req', ...ec, '-keyout', 'node.key', '-out', 'node.csr', '-subj', `/CN=${name} node`], dir);
  // The SAN is what clients check the host against; a CN alone is ignored by Node.
  writeFileSync(join(dir, 'node.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  openssl(
    [
      'x509',
      '-req',
      '-in',
      'node.csr',
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      'node.pem',
      '-days',
      '1',
      '-extfile',
      'node.ext',
    ],
    dir,
  );
  const caFile = join(dir, 'ca.pem');
  return {
    dir,
    caFile,
    certFile: join(dir, 'node.pem'),
    keyFile: join(dir, 'node.key'),
    ca: readFileSync(caFile),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** The `tmem node` flags that serve TLS with `certs` and verify peers against its CA. */
export function tlsNodeArgs(certs: TestCertificates): string[] {
  return ['--tls-cert', certs.certFile, '--tls-key', certs.keyFile, '--tls-ca', certs.caFile];
}
