import { execFile } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const openssl = (...args: string[]) => promisify(execFile)('openssl', args);
const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

export interface TestCa {
  dir: string;
  caFile: string;
  /** Issues a certificate signed by this CA: CN, plus IP subject alternative names for servers. */
  issue(name: string, options: { cn: string; ips?: string[] }): Promise<{ certFile: string; keyFile: string }>;
}

/** A throw-away certificate authority made with openssl at test time. */
export async function makeTestCa(label = 'test-ca'): Promise<TestCa> {
  const dir = await mkdtemp(join(tmpdir(), 'sf2b-ca-'));
  const caFile = join(dir, 'ca.pem');
  const caKey = join(dir, 'ca.key');
  await openssl('req', '-x509', ...EC, '-days', '2', '-subj', `/CN=${label}`, '-keyout', caKey, '-out', caFile,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  return {
    dir,
    caFile,
    async issue(name, { cn, ips = [] }) {
      const keyFile = join(dir, `${name}.key`);
      const certFile = join(dir, `${name}.pem`);
      const csr = join(dir, `${name}.csr`);
      const ext = join(dir, `${name}.ext`);
      await openssl('req', '-new', ...EC, '-subj', `/CN=${cn}`, '-keyout', keyFile, '-out', csr);
      await writeFile(ext, ips.length ? `subjectAltName=${ips.map((ip) => `IP:${ip}`).join(',')}\n` : 'basicConstraints=CA:FALSE\n');
      await openssl('x509', '-req', '-in', csr, '-CA', caFile, '-CAkey', caKey, '-CAcreateserial', '-days', '2', '-extfile', ext, '-out', certFile);
      return { certFile, keyFile };
    },
  };
}
