// The TLS flags of `tmem node` and `tmem status`, kept beside each other so their names and help agree.
import type { Command } from 'commander';
import { loadNodeTls, type NodeTls } from './tls-files.ts';

/** The TLS flags as commander parses them: file paths. */
export interface TlsFlags {
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
}

/** The help text of `--tls-ca`, the same for a node and for `tmem status`. */
export const TLS_CA_HELP =
  "PEM CA certificates a node's certificate must chain to when dialling it over wss:// (default: Node's bundled root CAs)";

/** Adds `--tls-cert`, `--tls-key` and `--tls-ca` to `tmem node`. */
export function addTlsFlags(command: Command): Command {
  return command
    .option(
      '--tls-cert <file>',
      'PEM certificate chain to serve wss:// with (needs --tls-key); every node of the cluster then needs one (default: plain ws://)',
    )
    .option('--tls-key <file>', 'PEM private key of --tls-cert (unencrypted)')
    .option('--tls-ca <file>', `${TLS_CA_HELP}; needs --tls-cert`);
}

/**
 * The node's TLS material from its flags, or undefined without them. Throws BAD_ARGUMENT with a one-line
 * message for a half pair, an unreadable or invalid file, or a key that is not the certificate's.
 */
export function tlsFromFlags(flags: TlsFlags): NodeTls | undefined {
  return loadNodeTls({ certFile: flags.tlsCert, keyFile: flags.tlsKey, caFile: flags.tlsCa });
}
